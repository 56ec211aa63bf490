"""The `manifest` source: slices and boxes listed in a CSV or JSON file, or VOC boxes.

This is how a user brings LISS or any other boxed CT data.

CSV (`manifest.csv`), one row per box, header required:

    patient_id,path,sign,x0,y0,x1,y1
    P001,P001/slice_012.dcm,GGO,201,233,240,262
    P001,P001/slice_020.dcm,,,,,

- `path`: the slice file, relative to the manifest's folder (or absolute): DICOM,
  16-bit PNG (HU = stored + `png_hu_offset`) or NPY in HU (see `cisl_jax.data.slices`).
- `sign`: a sign name (`GGO`, `lobulation`, `calcification`, `CV`, `spiculation`, `PI`,
  `BMP`, `AB`, `OP`; case-insensitive, long names accepted). Empty sign and empty box:
  a slice without signs, which still gives background (normal) patches.
- box: pixel columns x0 <= x < x1 and rows y0 <= y < y1 (half-open; PASCAL-VOC
  xmin,ymin,xmax,ymax read with xmax/ymax exclusive). Several boxes on one slice are
  several rows.
JSON: a list of objects with the same keys (or {"slices": [...]}).

Folder: a folder holding `manifest.csv` / `manifest.json` is read as above. Otherwise
the folder is scanned for slices `<root>/<patient_id>/.../<name>.{dcm,png,npy}`, each
with an optional PASCAL-VOC `<name>.xml` beside it (`<object><name>..</name><bndbox>`);
slices without one are sign-free. VOC object names are mapped to signs by
`voc_sign`: '' keeps the names (they must be sign names), 'GGO' maps every name to
GGO, 'A:GGO,B:CV' maps per name (e.g. the Lung-PET-CT-Dx fixture, whose label 'A' is a
tumour type, not a sign: `--config.manifest.voc_sign=GGO`).

Every bad input is reported with the file (and row) and what to fix: missing or
unreadable files, non-CT or multi-frame DICOM, a box outside the slice, a zero-area or
inverted box, an unknown sign (with the nearest name), duplicate rows, a patient
with no slices. Without `skip_bad` all such problems are raised together in one
`ManifestError`; with it they are returned as skipped (input, reason) pairs.
"""
import csv
import json
import os
import xml.etree.ElementTree as ET

import ml_collections

from cisl_jax import signs
from cisl_jax.data import slices
from cisl_jax.data.records import BoxedSlice

REQUIRED_COLUMNS = ('patient_id', 'path', 'sign', 'x0', 'y0', 'x1', 'y1')
_BOX = ('x0', 'y0', 'x1', 'y1')
_MAX_LISTED = 20


class ManifestError(ValueError):
  """Bad manifest input; the message lists every bad file / row and the fix."""


def default_config() -> ml_collections.ConfigDict:
  """Options of the manifest source (fields documented inline)."""
  c = ml_collections.ConfigDict()
  c.voc_sign = ''  # VOC name -> sign: '' names are signs; 'GGO' all; 'A:GGO,B:CV' per name
  c.png_hu_offset = float(slices.DEFAULT_PNG_HU_OFFSET)  # HU = 16-bit PNG value + this
  return c


def _voc_mapper(voc_sign: str):
  """A function mapping a VOC object name to a sign name (or raising ValueError)."""
  voc_sign = (voc_sign or '').strip()
  if not voc_sign:
    def keep(name):
      try:
        return signs.canonical(name)
      except ValueError as e:
        raise ValueError(f'{e} Map VOC names to signs with --config.manifest.voc_sign '
                         '(e.g. =GGO or =A:GGO,B:CV).') from None
    return keep
  if ':' not in voc_sign:
    target = signs.canonical(voc_sign)
    return lambda name: target
  table = {}
  for item in voc_sign.split(','):
    name, _, sign = item.partition(':')
    table[name.strip()] = signs.canonical(sign)

  def mapper(name):
    if name in table:
      return table[name]
    raise ValueError(f'VOC name {name!r} is not in voc_sign {voc_sign!r}; add it '
                     f'(e.g. {name}:GGO).')
  return mapper


def _read_table(path: str) -> list[tuple[str, dict]]:
  """(where, row) pairs of a CSV or JSON manifest; `where` names file and row."""
  if path.lower().endswith('.json'):
    try:
      with open(path) as f:
        data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ManifestError(f'{path}: unreadable JSON ({e}).') from e
    if isinstance(data, dict):
      data = data.get('slices')
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
      raise ManifestError(f'{path}: expected a list of objects with keys '
                          f'{", ".join(REQUIRED_COLUMNS)} (or {{"slices": [...]}}).')
    rows = [(f'{path}: item {i}', {k: '' if v is None else str(v) for k, v in r.items()})
            for i, r in enumerate(data)]
    present = set().union(*(r.keys() for _, r in rows)) if rows else set()
  else:
    if os.path.isfile(path) and os.path.getsize(path) == 0:
      raise ManifestError(f'{path}: empty file (0 bytes); write the header '
                          f'{",".join(REQUIRED_COLUMNS)} and one row per box.')
    try:
      with open(path, newline='') as f:
        reader = csv.DictReader(f)
        present = set(reader.fieldnames or ())
        # Named by the file's line (the header is line 1), as an editor shows it.
        rows = [(f'{path}: line {reader.line_num}',
                 {k: (v or '').strip() for k, v in r.items() if k}) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
      raise ManifestError(f'{path}: unreadable CSV ({e}).') from e
  missing = [c for c in REQUIRED_COLUMNS if c not in present]
  if missing:
    raise ManifestError(f'{path}: missing column(s) {", ".join(missing)}; the header must '
                        f'be {",".join(REQUIRED_COLUMNS)}.')
  if not rows:
    raise ManifestError(f'{path}: no rows; list at least one slice.')
  return rows


def _parse_row(row: dict, base: str) -> BoxedSlice:
  """One manifest row to a record (shape checks only; the slice is checked later)."""
  pid = row.get('patient_id', '').strip()
  rel = row.get('path', '').strip()
  if not pid:
    raise ValueError('empty patient_id; give every row its patient.')
  if not rel:
    raise ValueError(f'patient {pid!r} has no slices (empty path); list its slice files '
                     'or remove the row.')
  path = os.path.normpath(os.path.join(base, rel))
  sign = row.get('sign', '').strip()
  coords = [row.get(k, '').strip() for k in _BOX]
  if not sign:
    if any(coords):
      raise ValueError('a box without a sign; fill in the sign or clear x0,y0,x1,y1.')
    return BoxedSlice(pid, path, None, 0, 0, 0, 0)
  sign = signs.canonical(sign)
  if not all(coords):
    raise ValueError(f'sign {sign} without a complete box; give x0,y0,x1,y1.')
  try:
    x0, y0, x1, y1 = (int(float(c)) if float(c).is_integer() else None for c in coords)
  except ValueError:
    raise ValueError(f'box {",".join(coords)} is not numeric; give pixel integers.') from None
  if None in (x0, y0, x1, y1):
    raise ValueError(f'box {",".join(coords)} is not in whole pixels; give integers.')
  if x1 <= x0 or y1 <= y0:
    what = 'zero-area' if (x1 == x0 or y1 == y0) else 'inverted'
    raise ValueError(f'{what} box ({x0},{y0},{x1},{y1}); need x0 < x1 and y0 < y1 '
                     '(x1, y1 exclusive).')
  return BoxedSlice(pid, path, sign, x0, y0, x1, y1)


def _voc_rows(root: str, voc_sign: str) -> list[tuple[str, BoxedSlice | Exception]]:
  """Records of a folder of slices with PASCAL-VOC .xml files beside them."""
  mapper = _voc_mapper(voc_sign)
  out = []
  patients = sorted(d for d in os.listdir(root)
                    if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
  if not patients:
    raise ManifestError(f'{root}: no manifest.csv/manifest.json and no patient folders; '
                        'see cisl_jax/data/sources/manifest.py for the layouts.')
  for pid in patients:
    files = []
    for dirpath, _, names in os.walk(os.path.join(root, pid)):
      files += [os.path.join(dirpath, n) for n in names if slices.is_slice_file(n)]
    if not files:
      out.append((os.path.join(root, pid), ValueError(
          f'patient {pid!r} has no slices (.dcm, .png or .npy files); add them or remove '
          'the folder.')))
      continue
    for path in sorted(files):
      xml = os.path.splitext(path)[0] + '.xml'
      if not os.path.isfile(xml):
        out.append((path, BoxedSlice(pid, path, None, 0, 0, 0, 0)))
        continue
      try:
        objects = ET.parse(xml).getroot().findall('object')
      except ET.ParseError as e:
        out.append((xml, ValueError(f'unreadable VOC XML ({e}); fix or remove it.')))
        continue
      if not objects:
        out.append((path, BoxedSlice(pid, path, None, 0, 0, 0, 0)))
      for k, obj in enumerate(objects):
        where = f'{xml}: object {k}'
        try:
          name = (obj.findtext('name') or '').strip()
          bb = obj.find('bndbox')
          if bb is None:
            raise ValueError('object without <bndbox>; give xmin,ymin,xmax,ymax.')
          row = {'patient_id': pid, 'path': path, 'sign': mapper(name),
                 **{k2: (bb.findtext(t) or '').strip()
                    for k2, t in zip(_BOX, ('xmin', 'ymin', 'xmax', 'ymax'))}}
          out.append((where, _parse_row(row, '')))
        except ValueError as e:
          out.append((where, e))
  return out


def _find_manifest(input_path: str) -> str | None:
  if os.path.isfile(input_path):
    return input_path
  for name in ('manifest.csv', 'manifest.json'):
    if os.path.isfile(os.path.join(input_path, name)):
      return os.path.join(input_path, name)
  return None


def load(input_path: str, *, skip_bad: bool = False, voc_sign: str = '',
         png_hu_offset: float = slices.DEFAULT_PNG_HU_OFFSET,
         check_slices: bool = True) -> tuple[list[BoxedSlice], list[tuple[str, str]]]:
  """Reads a manifest (file or folder) into boxed slices.

  Args:
    input_path: a manifest .csv/.json, a folder holding one, or a VOC folder.
    skip_bad: return bad inputs as skipped instead of raising.
    voc_sign: VOC name mapping (module docstring).
    png_hu_offset: HU offset of 16-bit PNG slices.
    check_slices: read every slice once to refuse unreadable / non-CT files and boxes
      outside the slice here, before any dataset is written.
  Returns:
    (records, skipped) with skipped as (file or row, reason) pairs.
  """
  input_path = os.fspath(input_path)
  if not os.path.exists(input_path):
    raise ManifestError(f'{input_path}: no such manifest or folder; pass --input=PATH.')
  manifest = _find_manifest(input_path)
  parsed: list[tuple[str, BoxedSlice | Exception]] = []
  if manifest is None:
    parsed = _voc_rows(input_path, voc_sign)
  else:
    base = os.path.dirname(os.path.abspath(manifest))
    for where, row in _read_table(manifest):
      try:
        parsed.append((where, _parse_row(row, base)))
      except ValueError as e:
        parsed.append((where, e))

  bad: list[tuple[str, str]] = [(w, str(r)) for w, r in parsed if isinstance(r, Exception)]
  good = [(w, r) for w, r in parsed if not isinstance(r, Exception)]

  # Duplicates: the same box listed twice, or one slice under two patients.
  seen, owner, kept = {}, {}, []
  for where, r in good:
    key = (r.patient_id, r.path, r.sign, r.x0, r.y0, r.x1, r.y1)
    if key in seen:
      bad.append((where, f'duplicate of {seen[key]}; remove one of the two.'))
      continue
    if owner.setdefault(r.path, r.patient_id) != r.patient_id:
      bad.append((where, f'slice {r.path} is listed under patients {owner[r.path]!r} and '
                         f'{r.patient_id!r}; a slice belongs to one patient.'))
      continue
    seen[key] = where
    kept.append((where, r))

  # Slices: readable CT, boxes inside.
  if check_slices:
    shapes = {}
    ok = []
    for where, r in kept:
      if r.path not in shapes:
        try:
          shapes[r.path] = slices.read_slice(r.path, png_hu_offset=png_hu_offset).shape
        except ValueError as e:
          shapes[r.path] = e
      shape = shapes[r.path]
      if isinstance(shape, Exception):
        bad.append((where, str(shape)))
        continue
      rows_, cols_ = shape
      if r.sign is not None and not (r.x1 <= cols_ and r.y1 <= rows_ and r.x0 >= 0
                                     and r.y0 >= 0):
        bad.append((where, f'box ({r.x0},{r.y0},{r.x1},{r.y1}) lies outside the '
                           f'{cols_}x{rows_} slice {r.path}; fix the coordinates '
                           '(x = column, y = row).'))
        continue
      ok.append((where, r))
    kept = ok

  if bad and not skip_bad:
    listed = '\n'.join(f'  {w}: {why}' for w, why in bad[:_MAX_LISTED])
    more = f'\n  ... and {len(bad) - _MAX_LISTED} more' if len(bad) > _MAX_LISTED else ''
    raise ManifestError(f'{len(bad)} bad input(s) in {input_path}; fix them or pass '
                        f'--skip_bad to skip them (they are listed in the dataset card):'
                        f'\n{listed}{more}')
  records = [r for _, r in kept]
  if not records:
    raise ManifestError(f'{input_path}: no usable slices'
                        + (f' ({len(bad)} skipped as bad)' if bad else '') + '.')
  return records, bad
