"""LIDC-IDRI source: radiologists' nodule readings turned into boxed imaging signs.

Input is a LIDC-IDRI folder as downloaded from TCIA, whole or in part: per CT series, its
DICOM slices (`*.dcm`) and one radiologist XML (`LidcReadMessage`, namespace
http://www.nih.gov; files without the namespace are read too). XMLs kept in a separate
tree under the same root (TCIA's `tcia-lidc-xml`) work too: contours find their slices by
SOP Instance UID among every DICOM file under the root. What an XML holds is read by
`lidc_xml.py`, the DICOM headers by `lidc_index.py`.

Nodules: the readers mark the same nodule separately, so rated marks of one series whose
boxes overlap on a shared slice (IoU > `min_iou`) are joined (union-find over all marks,
on every slice they name, present or not). A nodule's readers are the distinct readers of
its marks; `min_readers` keeps those marked by at least that many (1: every nodule;
LUNA16 keeps those of >= 3 of the 4 readers). Its box on a slice is the union (or the
coordinate median, `box_merge`) of its marks' boxes there.

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
with the same box. PI, BMP, AB and OP are not rated in LIDC and never occur.

Partial series (part of a download, or only the slices near the nodules): a contour on a
slice that is not in the folder is dropped, counted per patient
(`contours_on_absent_slices`) and warned about once per series; the nodule keeps its
ratings, readers and present contours. This is not an error.

Background: `background_slices_per_series` slices of each read CT series are listed as
box-free records (see `lidc_index.background`: unmarked slices of the middle half first),
so every patient with slices gives normal patches. Every point any reader placed on a
listed slice (nodules of any size, < 3 mm points, non-nodules, unrated marks) becomes a
sign-free box grown by `mark_margin` pixels, which background patches keep off.

Mixed series: CR/DX radiograph series and their `IdriReadMessage` XML are not read and
are counted as not CT; localiser / scout images give no records and are counted; a second
CT series of a patient is read as a series of its own (its nodules never join the first
series' nodules) under the same patient, so both stay in one fold; a CT series without a
reading XML gives nothing (unread: it may hide nodules) and is counted; a second copy of
one reading (same series, same readers) is read once.

Patient id: the DICOM PatientID (LIDC-IDRI-xxxx). Bad input (malformed XML, a rating
that is not a number, a contour off its slice, on a non-CT or localiser image or on
another series, an unreadable DICOM header) raises `LidcError` naming the file; with
`skip_bad=True` the file (or the one reader's mark) is skipped and listed instead.
"""
from collections.abc import Iterable, Mapping, Sequence
import collections
import os

from absl import logging
import ml_collections
import numpy as np

from cisl_jax.data.records import BoxedSlice
from cisl_jax.data.sources import lidc_index
from cisl_jax.data.sources import lidc_xml

RATED = lidc_xml.RATED
SIGNS = ('GGO', 'lobulation', 'calcification', 'CV', 'spiculation')  # those LIDC rates


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
  c.min_readers = 1  # drop nodules marked by fewer readers (LUNA16 keeps those of >= 3 of 4).
  c.min_iou = 0.0  # marks join one nodule when boxes on a shared slice have IoU above this.
  c.box_merge = 'union'  # nodule box on a slice from its marks' boxes: 'union' or 'median'.
  c.slices_per_nodule = 0  # 0: every marked slice; k: the k slices with the largest box.
  c.background_slices_per_series = 4  # slices per series listed for background patches.
  c.mark_margin = 16  # px kept between background patches and every reader mark.
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


def _iou(a, b) -> float:
  w = min(a[2], b[2]) - max(a[0], b[0])
  h = min(a[3], b[3]) - max(a[1], b[1])
  if w <= 0 or h <= 0:
    return 0.0
  inter = w * h
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
  return inter / (area(a) + area(b) - inter)


def group_marks(marks: Sequence[lidc_xml.Mark], min_iou: float = 0.0) -> list[list[int]]:
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


def _nodule_boxes(marks: Iterable[lidc_xml.Mark], merge: str) -> dict[str, tuple[int, ...]]:
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
        b = lidc_xml.union(b, other)
      out[sop] = b
    return out
  if merge == 'median':
    return {sop: tuple(int(round(v)) for v in np.median(np.asarray(b), axis=0))
            for sop, b in per_slice.items()}
  raise LidcError(f"thresholds.box_merge is {merge!r}; use 'union' or 'median'.")


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


def _readings(xmls: list[str], skipper: _Skipper) -> tuple[list[lidc_xml.Reading], list[str]]:
  """The CT readings of the XML files, once per (series, readers); radiograph readings."""
  readings, radiographs, seen = [], [], {}
  for path in xmls:
    try:
      kind, reading = lidc_xml.parse(path)
    except lidc_xml.XmlError as e:
      skipper.bad(path, str(e))
      continue
    if reading is None:
      if kind == 'IdriReadMessage':
        radiographs.append(path)  # a chest radiograph (CR/DX) reading: not CT
      else:
        skipper.note(path, f'not a LIDC reading (root element {kind}): ignored')
      continue
    for reason in reading.bad:
      skipper.bad(path, reason)
    key = (reading.series_uid, reading.readers)
    if reading.series_uid and key in seen:
      skipper.note(path, f'the same reading as {seen[key]} (series {reading.series_uid}, '
                   'same readers): read once')
      continue
    seen[key] = path
    readings.append(reading)
  return readings, radiographs


def _place(reading: lidc_xml.Reading, index: lidc_index.SliceIndex, skipper: _Skipper,
           root: str) -> tuple[list[lidc_xml.Mark], str, str, int]:
  """Checks a reading's marks against the slices: (kept marks, series, patient, absent).

  `absent` counts the kept marks' contours on slices that are not in the folder; their
  boxes stay in the marks (for grouping) but give no record.
  """
  present = [index.by_sop[s] for s in reading.spots if s in index.by_sop]
  series = reading.series_uid or (present[0].series_uid if present else reading.path)
  slices = index.series.get(series) or present
  patient = (slices[0].patient_id if slices
             else os.path.relpath(reading.path, root).split(os.sep)[0])
  kept, absent = [], 0
  for m in reading.marks:
    problem, missing = None, 0
    for sop, (x0, y0, x1, y1) in m.boxes.items():
      s = index.by_sop.get(sop)
      if s is None:
        missing += m.contours[sop]
      elif s.modality != 'CT':
        problem = f'{m.where}: contour on {s.path}, whose Modality is {s.modality!r}, not CT'
      elif s.localiser:
        problem = f'{m.where}: contour on {s.path}, a localiser (scout) image, not axial CT'
      elif s.series_uid != series:
        problem = (f'{m.where}: contour on {s.path} of series {s.series_uid}, but the XML '
                   f'reads series {series}')
      elif x0 < 0 or y0 < 0 or x1 > s.cols or y1 > s.rows:
        problem = (f'{m.where}: contour box {(x0, y0, x1, y1)} lies off the {s.cols}x{s.rows} '
                   f'slice {s.path}')
      if problem:
        break
    if problem:
      skipper.bad(reading.path, problem)
      continue
    m.series_uid = series
    kept.append(m)
    absent += missing
  return kept, series, patient, absent


def _avoid_boxes(slice_: lidc_index.Slice, spots: list, margin: int) -> list[BoxedSlice]:
  """Sign-free records that keep background patches `margin` px off each reader spot."""
  out = []
  for x0, y0, x1, y1 in spots:
    box = (max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, slice_.cols),
           min(y1 + margin, slice_.rows))
    if box[2] > box[0] and box[3] > box[1]:
      out.append(BoxedSlice(slice_.patient_id, slice_.path, None, *box))
  return out


def load(root: str | os.PathLike, *, skip_bad: bool = False,
         thresholds: ml_collections.ConfigDict | Mapping | None = None
         ) -> tuple[list[BoxedSlice], list[tuple[str, str]], dict]:
  """Reads a LIDC-IDRI folder into boxed sign slices (see the module docstring).

  Args:
    root: the downloaded LIDC-IDRI folder (or any folder holding series and XMLs).
    skip_bad: skip bad files / marks and list them, instead of raising LidcError.
    thresholds: overrides of `default_thresholds()`.

  Returns:
    (records sorted by patient, slice, sign, box; skipped (file, reason) pairs; the
    summary for the dataset card: patients, nodules by readers, signs, absent contours,
    what was not CT).
  """
  root = os.path.abspath(os.fspath(root))
  t = _check_thresholds(thresholds)
  if not os.path.isdir(root):
    raise LidcError(f'{root}: no such folder; pass the downloaded LIDC-IDRI folder.')
  skipper = _Skipper(skip_bad)
  xmls = sorted(os.path.join(d, f) for d, _, files in os.walk(root)
                for f in files if f.lower().endswith('.xml'))
  if not xmls:
    raise LidcError(f'{root}: no radiologist XML files found; LIDC-IDRI series hold one '
                    'LidcReadMessage XML beside their DICOM slices.')
  index = lidc_index.SliceIndex(root, skipper.bad)
  readings, radiographs = _readings(xmls, skipper)
  marks, read_series, absent = [], set(), collections.Counter()
  spots: dict[str, list] = collections.defaultdict(list)  # slice path -> reader spots
  for reading in readings:
    kept, series, patient, missing = _place(reading, index, skipper, root)
    if missing and series not in read_series:
      logging.warning('lidc: %s (series %s): %d contours lie on slices not in the folder; '
                      'dropped (a partial series?), the nodules keep their ratings and '
                      'present contours.', patient, series, missing)
    marks.extend(kept)
    read_series.add(series)
    absent[patient] += missing
    for sop, boxes in reading.spots.items():
      if sop in index.by_sop:
        spots[index.by_sop[sop].path].extend(boxes)

  records, summary = _nodule_records(marks, index, t)
  signed = {r.path for r in records}
  listed = {}
  for series in sorted(read_series):  # an unread series may hide nodules: never background
    for s in lidc_index.background(index.usable(series), set(spots), signed,
                                   t.background_slices_per_series):
      records.add(BoxedSlice(s.patient_id, s.path, None, 0, 0, 0, 0))
      listed[s.path] = s
  for r in list(records):
    listed.setdefault(r.path, index.by_path[r.path])
  for path, s in listed.items():
    records.update(_avoid_boxes(s, spots.get(path, []), t.mark_margin))

  usable_series = {s.series_uid for s in index.by_sop.values() if s.usable}
  summary.update({
      'patients': len({r.patient_id for r in records}),
      'ct_series_read': len(read_series & usable_series),
      'ct_series_unread': len(usable_series - read_series),
      'not_ct': {'radiograph_readings': len(radiographs),
                 'series_by_modality': index.not_ct_series(),
                 'localiser_images': len(index.localisers())},
      'contours_on_absent_slices': dict(sorted(absent.items())),
      'background_slices': len({p for p in listed if p not in signed}),
      'mark_margin': t.mark_margin,
  })
  logging.info('lidc: %d rated marks -> %d nodules, %d records, %d skipped', len(marks),
               sum(summary['nodules_by_readers'].values()), len(records), len(skipper.skipped))
  key = lambda r: (r.patient_id, r.path, r.sign or '', r.x0, r.y0, r.x1, r.y1)
  return sorted(records, key=key), skipper.skipped, summary


def _nodule_records(marks: list[lidc_xml.Mark], index: lidc_index.SliceIndex,
                    t: ml_collections.ConfigDict) -> tuple[set[BoxedSlice], dict]:
  """Sign records of the nodules marked by >= min_readers readers, and their counts."""
  records = set()
  by_readers = collections.Counter()
  by_min = collections.defaultdict(collections.Counter)  # k -> sign -> nodules of >= k readers
  sign_nodules, no_slice = collections.Counter(), 0
  for group in group_marks(marks, t.min_iou):
    members = [marks[i] for i in group]
    readers = len({m.reader for m in members})
    by_readers[readers] += 1
    signs = signs_from_ratings([m.ratings for m in members], t)
    for k in range(1, readers + 1):
      by_min[k].update(signs)
    if readers < t.min_readers or not signs:
      continue
    sign_nodules.update(signs)
    boxes = {sop: b for sop, b in _nodule_boxes(members, t.box_merge).items()
             if sop in index.by_sop}
    if not boxes:
      no_slice += 1  # every slice it was drawn on is absent
      continue
    sops = sorted(boxes, key=lambda s: (index.by_sop[s].z, s))
    if t.slices_per_nodule > 0:
      area = lambda s: (boxes[s][2] - boxes[s][0]) * (boxes[s][3] - boxes[s][1])
      sops = sorted(sops, key=area, reverse=True)[:t.slices_per_nodule]
    for sop in sops:
      s = index.by_sop[sop]
      records.update(BoxedSlice(s.patient_id, s.path, sign, *boxes[sop]) for sign in signs)
  most = max([4, *by_readers])
  count = lambda c: {s: c.get(s, 0) for s in SIGNS}
  return records, {
      'min_readers': t.min_readers,
      'nodules_by_readers': {str(k): by_readers.get(k, 0) for k in range(1, most + 1)},
      'nodules_kept': sum(n for k, n in by_readers.items() if k >= t.min_readers),
      'sign_nodules': count(sign_nodules),
      'sign_boxes': count(collections.Counter(r.sign for r in records)),
      'sign_nodules_without_present_slices': no_slice,
      'sign_nodules_by_min_readers': {str(k): count(by_min[k]) for k in range(1, most + 1)},
  }


def summary_lines(summary: Mapping) -> list[str]:
  """The short build summary `make_dataset --source=lidc` prints before the card's path."""
  s = summary
  readers = ', '.join(f'{k}: {n}' for k, n in s['nodules_by_readers'].items())
  signs = ', '.join(f'{k} {n} ({s["sign_boxes"][k]} boxes)'
                    for k, n in s['sign_nodules'].items() if n) or 'none'
  absent = s['contours_on_absent_slices']
  not_ct = s['not_ct']
  return [
      f'lidc: {s["patients"]} patients, {s["ct_series_read"]} CT series read '
      f'({s["ct_series_unread"]} without a reading XML, not used); not CT: '
      f'{not_ct["radiograph_readings"]} radiograph readings, '
      f'{sum(not_ct["series_by_modality"].values())} series, '
      f'{not_ct["localiser_images"]} localiser images',
      f'lidc: nodules by number of readers: {readers}; '
      f'min_readers={s["min_readers"]} keeps {s["nodules_kept"]}',
      f'lidc: sign nodules: {signs}',
      f'lidc: contours on absent slices: {sum(absent.values())}'
      + (' (' + ', '.join(f'{p} {n}' for p, n in absent.items()) + ')' if absent else ''),
  ]
