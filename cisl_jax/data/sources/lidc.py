"""LIDC-IDRI source: radiologists' nodule readings turned into boxed imaging signs.

Input is a LIDC-IDRI folder as downloaded from TCIA: per CT series, its DICOM slices
(`*.dcm`) and one radiologist XML (`LidcReadMessage`, namespace http://www.nih.gov;
files without the namespace are read too). XMLs kept in a separate tree under the same
root (TCIA's `tcia-lidc-xml`) also work: a contour whose slice is not in the XML's own
folder is looked up among every DICOM file under the root.

What is read, per XML:
- each `readingSession` is one reader; each `unblindedReadNodule` of it with filled
  `characteristics` is one mark. Marks without ratings are the readers' nodules under
  3 mm (one point, no characteristics; also the few with all ratings 0 or blank) and
  are skipped, as are `nonNodule` points: they give no sign. Their slices are not used
  for background either.
- each `roi` of a mark: `imageSOP_UID` names the slice (matched to the DICOM
  SOPInstanceUID; `imageZposition` is not used), `edgeMap` xCoord (column) / yCoord
  (row) points its contour. Only `inclusion` TRUE contours make the box (FALSE ones
  outline holes inside the nodule); one-point contours are stray clicks and dropped
  (as pylidc does). A mark's box on a slice is the min/max of its contour points,
  half-open: [min x, max x + 1) x [min y, max y + 1).
- marks of one nodule: the readers mark the same nodule separately, so marks of one
  series whose boxes overlap on a shared slice (IoU > `min_iou`) are joined (union-find
  over all marks). A nodule's box on a slice is the union (or the coordinate median,
  `box_merge`) of its marks' boxes there.

Sign mapping (LIDC rating scales; thresholds in `default_thresholds()`): over the marks
of one nodule (one rating set per mark, i.e. per reader),
- GGO: median texture <= 2 (1 non-solid / ground glass, 2 non-solid/mixed; 3 part
  solid, 4 solid/mixed, 5 solid).
- lobulation: median lobulation >= 4 (1 none ... 5 marked).
- spiculation: median spiculation >= 4 (1 none ... 5 marked).
- calcification: strictly more than half of the marks rate calcification 1-5
  (popcorn, laminated, solid, non-central, central; 6 = absent).
- CV (cavity): strictly more than half rate internalStructure 4 (air; 1 soft tissue,
  2 fluid, 3 fat).
With an even number of readers the median is the mean of the middle two (texture 2 and
3 gives 2.5: not GGO). A nodule may carry several signs: one record per sign per slice,
with the same box. A nodule with none gives no record at all, and its slices are not
listed as background (so that no "normal" patch is cut on a nodule). PI, BMP, AB and OP
are not rated in LIDC and never occur.

Background: `background_slices_per_series` slices per series that no reader marked at
all (no nodule of any size, no non-nodule) are listed as box-free records (sign None,
box 0,0,0,0), picked evenly from the middle half of the series by z, where the lungs are
widest. Background patches cut on slices that do hold a sign nodule could still touch
a sign-free or small nodule of the same slice: the record format has no way to mark it.

Patient id: the DICOM PatientID (LIDC-IDRI-xxxx). Bad input (malformed XML, a rating
that is not a number, a contour on a SOP UID with no DICOM file, a contour off the
slice, an unreadable DICOM header) raises `LidcError` naming the file; with
`skip_bad=True` the file (or the one reader's mark) is skipped and listed instead.
Chest radiograph readings (`IdriReadMessage`) and other XML are listed as skipped.
"""
from collections.abc import Iterable, Mapping, Sequence
import dataclasses
import os
import xml.etree.ElementTree as ET

from absl import logging
import ml_collections
import numpy as np
import pydicom

from cisl_jax.data.records import BoxedSlice

# The characteristics the sign mapping reads (the other four do not give signs).
RATED = ('texture', 'lobulation', 'spiculation', 'calcification', 'internalStructure')
_HEADER_TAGS = ['SOPInstanceUID', 'PatientID', 'SeriesInstanceUID', 'Modality', 'Rows',
                'Columns', 'ImagePositionPatient', 'InstanceNumber']


class LidcError(ValueError):
  """Bad LIDC input; the message names the file and what to do."""


def default_thresholds() -> ml_collections.ConfigDict:
  """The LIDC ratings -> sign mapping and grouping settings (see module docstring)."""
  c = ml_collections.ConfigDict()
  c.ggo_max_texture = 2.0  # GGO when the median texture rating is <= this (1-2 non-solid).
  c.lobulation_min = 4.0  # lobulation when the median lobulation rating is >= this (1-5).
  c.spiculation_min = 4.0  # spiculation when the median spiculation rating is >= this (1-5).
  c.calcified_codes = (1, 2, 3, 4, 5)  # calcification ratings meaning present (6 = absent).
  c.cavity_codes = (4,)  # internalStructure ratings meaning a cavity (4 = air).
  c.majority = 0.5  # calcification / CV need strictly more than this share of the marks.
  c.min_readers = 1  # drop nodules marked by fewer readers (3 gives LIDC's usual consensus).
  c.min_iou = 0.0  # marks join one nodule when boxes on a shared slice have IoU above this.
  c.box_merge = 'union'  # nodule box on a slice from its marks' boxes: 'union' or 'median'.
  c.slices_per_nodule = 0  # 0: every marked slice; k: the k slices with the largest box.
  c.background_slices_per_series = 4  # unmarked slices per series listed for background.
  return c


def signs_from_ratings(ratings: Sequence[Mapping[str, int]],
                       thresholds: ml_collections.ConfigDict | None = None) -> list[str]:
  """Signs of one nodule from its marks' ratings (one dict of RATED per mark).

  The one place where LIDC ratings become sign names; the order follows SIGNS.
  """
  t = default_thresholds() if thresholds is None else thresholds
  if not ratings:
    return []
  median = {k: float(np.median([r[k] for r in ratings])) for k in RATED}

  def most(key, codes):
    return np.mean([r[key] in tuple(codes) for r in ratings]) > t.majority

  signs = []
  if median['texture'] <= t.ggo_max_texture:
    signs.append('GGO')
  if median['lobulation'] >= t.lobulation_min:
    signs.append('lobulation')
  if most('calcification', t.calcified_codes):
    signs.append('calcification')
  if most('internalStructure', t.cavity_codes):
    signs.append('CV')
  if median['spiculation'] >= t.spiculation_min:
    signs.append('spiculation')
  return signs


@dataclasses.dataclass(frozen=True)
class _Slice:
  """The header fields of one DICOM slice that the reader needs."""
  path: str
  patient_id: str
  series_uid: str
  modality: str
  rows: int
  cols: int
  z: float


@dataclasses.dataclass
class _Mark:
  """One reader's mark of one nodule: ratings and a box per slice (by SOP UID)."""
  xml: str
  reader: str
  nodule_id: str
  ratings: dict[str, int]
  boxes: dict[str, tuple[int, int, int, int]]
  series_uid: str = ''


class _Skipper:
  """Raises LidcError, or with skip_bad records (file, reason) and goes on."""

  def __init__(self, skip_bad: bool):
    self.skip_bad = skip_bad
    self.skipped: list[tuple[str, str]] = []

  def bad(self, path: str, reason: str) -> None:
    if not self.skip_bad:
      raise LidcError(f'{path}: {reason}; fix or remove it, or pass --skip_bad to skip it.')
    logging.warning('lidc: skipping %s: %s', path, reason)
    self.skipped.append((path, reason))

  def note(self, path: str, reason: str) -> None:
    self.skipped.append((path, reason))


class _SliceIndex:
  """SOP Instance UID -> slice header, read per folder and, when needed, the whole root."""

  def __init__(self, root: str, skipper: _Skipper):
    self._root = root
    self._skipper = skipper
    self._done_dirs: set[str] = set()
    self._all = False
    self.by_sop: dict[str, _Slice] = {}

  def index_dir(self, folder: str) -> None:
    """Reads the headers of the `*.dcm` files of one folder (once)."""
    if folder in self._done_dirs or not os.path.isdir(folder):
      return
    self._done_dirs.add(folder)
    for name in sorted(os.listdir(folder)):
      path = os.path.join(folder, name)
      if name.lower().endswith('.dcm') and os.path.isfile(path):
        self._read_header(path)

  def _read_header(self, path: str) -> None:
    try:
      ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
      sop = str(ds.SOPInstanceUID)
      position = ds.get('ImagePositionPatient')
      z = float(position[2]) if position else float(ds.get('InstanceNumber', 0) or 0)
      # LIDC's PatientID is LIDC-IDRI-xxxx; without one, the top folder under the root is.
      patient = str(ds.get('PatientID', '') or '').strip() or os.path.relpath(
          path, self._root).split(os.sep)[0]
      info = _Slice(path=path, patient_id=patient,
                    series_uid=str(ds.get('SeriesInstanceUID', '')),
                    modality=str(ds.get('Modality', '')), rows=int(ds.get('Rows', 0) or 0),
                    cols=int(ds.get('Columns', 0) or 0), z=z)
    except Exception as e:  # pydicom raises many kinds on corrupt headers
      self._skipper.bad(path, f'unreadable DICOM header ({type(e).__name__}: {e})')
      return
    self.by_sop[sop] = info

  def lookup(self, sop: str, near: str) -> _Slice | None:
    """The slice with this SOP UID, looking beside the XML first, then under the root."""
    if sop not in self.by_sop:
      self.index_dir(near)
    if sop not in self.by_sop and not self._all:
      self._all = True
      for folder, _, files in sorted(os.walk(self._root)):
        if any(f.lower().endswith('.dcm') for f in files):
          self.index_dir(folder)
    return self.by_sop.get(sop)

  def by_series(self) -> dict[str, list[_Slice]]:
    """The CT slices of each series."""
    out: dict[str, list[_Slice]] = {}
    for s in self.by_sop.values():
      if s.modality == 'CT':
        out.setdefault(s.series_uid, []).append(s)
    return out


def _local(tag: str) -> str:
  return tag.rsplit('}', 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
  return next((c for c in el if _local(c.tag) == name), None)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
  return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, name: str) -> str:
  child = _child(el, name)
  return (child.text or '').strip() if child is not None else ''


def _parse_ratings(chars: ET.Element | None, where: str) -> dict[str, int] | None:
  """RATED ratings of a mark, or None for an unrated (small) nodule."""
  if chars is None or not len(chars):
    return None
  texts = {k: _text(chars, k) for k in RATED}
  if any(v in ('', '0') for v in texts.values()):
    return None  # LIDC's few small nodules with an empty or all-zero characteristics block
  ratings = {}
  for k, v in texts.items():
    try:
      ratings[k] = int(float(v))
    except ValueError:
      raise LidcError(f'{where}: characteristic {k} is {v!r}, not a rating number') from None
  return ratings


def _parse_roi(roi: ET.Element, where: str) -> tuple[str, tuple[int, int, int, int]] | None:
  """(SOP UID, box) of one inclusion contour, None for exclusion or one-point contours."""
  if _text(roi, 'inclusion').upper() == 'FALSE':
    return None
  sop = _text(roi, 'imageSOP_UID')
  if not sop:
    raise LidcError(f'{where}: roi without imageSOP_UID')
  try:
    points = [(int(float(_text(e, 'xCoord'))), int(float(_text(e, 'yCoord'))))
              for e in _children(roi, 'edgeMap')]
  except ValueError:
    raise LidcError(f'{where}: edgeMap with a non-numeric xCoord/yCoord on {sop}') from None
  if len(points) <= 1:
    return None
  xs, ys = zip(*points)
  return sop, (min(xs), min(ys), max(xs) + 1, max(ys) + 1)


def _union(a, b):
  return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclasses.dataclass
class _Reading:
  """What one CT reading XML gives: rated marks, every marked slice, its series."""
  marks: list[_Mark]
  marked_sops: set[str]
  series_uid: str


def _parse_xml(path: str, skipper: _Skipper) -> _Reading | None:
  """The rated marks of one reading XML; None when it is no CT reading."""
  try:
    root = ET.parse(path).getroot()
  except (ET.ParseError, OSError) as e:
    skipper.bad(path, f'malformed XML ({e})')
    return None
  kind = _local(root.tag)
  if kind != 'LidcReadMessage':
    what = ('a chest radiograph reading' if kind == 'IdriReadMessage' else
            f'not a LIDC reading (root element {kind})')
    skipper.note(path, f'{what}: ignored')
    return None
  header = _child(root, 'ResponseHeader')
  series_uid = ''
  if header is not None:
    series_uid = _text(header, 'SeriesInstanceUid') or _text(header, 'SeriesInstanceUID')
  # Every slice any reader marked (nodules of any size, non-nodules): never background.
  marked_sops = {(el.text or '').strip() for el in root.iter()
                 if _local(el.tag) == 'imageSOP_UID'}
  marks = []
  for n, session in enumerate(_children(root, 'readingSession')):
    reader = _text(session, 'servicingRadiologistID') or f'reader {n + 1}'
    for nodule in _children(session, 'unblindedReadNodule'):
      nodule_id = _text(nodule, 'noduleID')
      where = f'reader {reader}, nodule {nodule_id!r}'
      try:
        ratings = _parse_ratings(_child(nodule, 'characteristics'), where)
        if ratings is None:
          continue  # a nodule under 3 mm: no ratings, no sign
        boxes = {}
        for roi in _children(nodule, 'roi'):
          parsed = _parse_roi(roi, where)
          if parsed:
            sop, box = parsed
            boxes[sop] = _union(boxes[sop], box) if sop in boxes else box
      except LidcError as e:
        skipper.bad(path, str(e))
        continue
      if boxes:
        marks.append(_Mark(path, reader, nodule_id, ratings, boxes))
  return _Reading(marks, marked_sops, series_uid)


def _resolve(marks: list[_Mark], index: _SliceIndex, skipper: _Skipper) -> list[_Mark]:
  """Checks each mark's slices against the DICOM headers and sets its series."""
  kept = []
  for m in marks:
    where = f'reader {m.reader}, nodule {m.nodule_id!r}'
    problem = None
    series = set()
    for sop, (x0, y0, x1, y1) in m.boxes.items():
      s = index.lookup(sop, os.path.dirname(m.xml))
      if s is None:
        problem = (f'{where}: contour on SOP Instance UID {sop}, but no DICOM file under the '
                   'root has it (slice missing from the download?)')
      elif s.modality != 'CT':
        problem = f'{where}: contour on {s.path}, whose Modality is {s.modality!r}, not CT'
      elif x0 < 0 or y0 < 0 or x1 > s.cols or y1 > s.rows:
        problem = (f'{where}: contour box {(x0, y0, x1, y1)} lies off the {s.cols}x{s.rows} '
                   f'slice {s.path}')
      else:
        series.add(s.series_uid)
      if problem:
        break
    if problem is None and len(series) > 1:
      problem = f'{where}: contours on slices of {len(series)} different series'
    if problem:
      skipper.bad(m.xml, problem)
      continue
    m.series_uid = series.pop()
    kept.append(m)
  return kept


def _iou(a, b) -> float:
  w = min(a[2], b[2]) - max(a[0], b[0])
  h = min(a[3], b[3]) - max(a[1], b[1])
  if w <= 0 or h <= 0:
    return 0.0
  inter = w * h
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
  return inter / (area(a) + area(b) - inter)


def group_marks(marks: Sequence[_Mark], min_iou: float = 0.0) -> list[list[int]]:
  """Indices of marks that outline one nodule: union-find over overlapping boxes."""
  parent = list(range(len(marks)))

  def find(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  by_series: dict[str, list[int]] = {}  # only marks of one series can meet
  for i, m in enumerate(marks):
    by_series.setdefault(m.series_uid, []).append(i)
  for members in by_series.values():
    for n, i in enumerate(members):
      for j in members[n + 1:]:
        shared = marks[i].boxes.keys() & marks[j].boxes.keys()
        if any(_iou(marks[i].boxes[s], marks[j].boxes[s]) > min_iou for s in shared):
          parent[find(i)] = find(j)
  groups: dict[int, list[int]] = {}
  for i in range(len(marks)):
    groups.setdefault(find(i), []).append(i)
  return sorted(groups.values())


def _nodule_boxes(marks: Iterable[_Mark], merge: str) -> dict[str, tuple[int, ...]]:
  """A nodule's box per slice (SOP UID) from its marks' boxes there."""
  per_slice: dict[str, list] = {}
  for m in marks:
    for sop, box in m.boxes.items():
      per_slice.setdefault(sop, []).append(box)
  if merge == 'union':
    out = {}
    for sop, boxes in per_slice.items():
      b = boxes[0]
      for other in boxes[1:]:
        b = _union(b, other)
      out[sop] = b
    return out
  if merge == 'median':
    return {sop: tuple(int(round(v)) for v in np.median(np.asarray(b), axis=0))
            for sop, b in per_slice.items()}
  raise LidcError(f"thresholds.box_merge is {merge!r}; use 'union' or 'median'.")


def _background(series: list[_Slice], marked: set[str], k: int) -> list[_Slice]:
  """k unmarked slices spread over the middle half (by z) of one series."""
  slices = sorted(series, key=lambda s: (s.z, s.path))
  if k <= 0 or not slices:
    return []
  lo, hi = len(slices) // 4, len(slices) - len(slices) // 4
  candidates = [s for s in slices[lo:hi] if s.path not in marked]
  if not candidates:
    return []
  picks = np.unique(np.linspace(0, len(candidates) - 1, min(k, len(candidates))).round())
  return [candidates[int(i)] for i in picks]


def _check_thresholds(thresholds) -> ml_collections.ConfigDict:
  t = default_thresholds()
  if thresholds is None:
    return t
  given = dict(thresholds.items()) if hasattr(thresholds, 'items') else None
  if given is None:
    raise LidcError(f'thresholds must be a ConfigDict or dict, got {type(thresholds).__name__}')
  unknown = sorted(set(given) - set(t.keys()))
  if unknown:
    raise LidcError(f'unknown LIDC threshold(s) {unknown}; known: {sorted(t.keys())}')
  t.update(given)
  return t


def load(root: str | os.PathLike, *, skip_bad: bool = False,
         thresholds: ml_collections.ConfigDict | Mapping | None = None
         ) -> tuple[list[BoxedSlice], list[tuple[str, str]]]:
  """Reads a LIDC-IDRI folder into boxed sign slices (see the module docstring).

  Args:
    root: the downloaded LIDC-IDRI folder (or any folder holding series and XMLs).
    skip_bad: skip bad files / marks and list them, instead of raising LidcError.
    thresholds: overrides of `default_thresholds()`.

  Returns:
    (records sorted by patient, slice, sign, box; skipped (file, reason) pairs).
  """
  root = os.path.abspath(os.fspath(root))
  t = _check_thresholds(thresholds)
  if not os.path.isdir(root):
    raise LidcError(f'{root}: no such folder; pass the downloaded LIDC-IDRI folder.')
  skipper = _Skipper(skip_bad)
  index = _SliceIndex(root, skipper)
  xmls = sorted(os.path.join(d, f) for d, _, files in os.walk(root)
                for f in files if f.lower().endswith('.xml'))
  if not xmls:
    raise LidcError(f'{root}: no radiologist XML files found; LIDC-IDRI series hold one '
                    'LidcReadMessage XML beside their DICOM slices.')
  marks, marked_sops, read_series = [], set(), set()
  for path in xmls:
    reading = _parse_xml(path, skipper)
    if reading is None:
      continue
    index.index_dir(os.path.dirname(path))  # the series beside it, marked or not
    resolved = _resolve(reading.marks, index, skipper)
    marks.extend(resolved)
    marked_sops |= reading.marked_sops
    read_series |= {m.series_uid for m in resolved} | {reading.series_uid}
  marked = {index.by_sop[s].path for s in marked_sops if s in index.by_sop}

  records = set()
  num_nodules = num_signed = 0
  for group in group_marks(marks, t.min_iou):
    members = [marks[i] for i in group]
    if len(members) < t.min_readers:
      continue
    num_nodules += 1
    signs = signs_from_ratings([m.ratings for m in members], t)
    if not signs:
      continue
    num_signed += 1
    boxes = _nodule_boxes(members, t.box_merge)
    sops = sorted(boxes, key=lambda s: (index.by_sop[s].z, s))
    if t.slices_per_nodule > 0:
      area = lambda s: (boxes[s][2] - boxes[s][0]) * (boxes[s][3] - boxes[s][1])
      sops = sorted(sops, key=area, reverse=True)[:t.slices_per_nodule]
    for sop in sops:
      s = index.by_sop[sop]
      for sign in signs:
        records.add(BoxedSlice(s.patient_id, s.path, sign, *boxes[sop]))
  # Background only from series that were read: an unread series may hide nodules.
  ct_series = index.by_series()
  for series_uid in sorted(ct_series.keys() & read_series):
    for s in _background(ct_series[series_uid], marked, t.background_slices_per_series):
      records.add(BoxedSlice(s.patient_id, s.path, None, 0, 0, 0, 0))
  logging.info('lidc: %d rated marks -> %d nodules, %d with a sign; %d records, %d skipped',
               len(marks), num_nodules, num_signed, len(records), len(skipper.skipped))
  key = lambda r: (r.patient_id, r.path, r.sign or '', r.x0, r.y0, r.x1, r.y1)
  return sorted(records, key=key), skipper.skipped

