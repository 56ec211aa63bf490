"""The LIDC source on three real LIDC-IDRI patients (../shared/fixtures/lidc_idri).

What the reader gives is checked against what this file computes itself from the XML
with a separate, minimal parse: readers' rated nodules, their inclusion contours, marks
joined when their boxes overlap on a slice, signs by the documented default rules.
"""
import collections
import os
import pathlib
import statistics
import xml.etree.ElementTree as ET

import pydicom
import pytest

from cisl_jax import signs
from cisl_jax.data import tfds_builder
from cisl_jax.data.sources import lidc


def _find(el, name):
  return [c for c in el if c.tag.endswith('}' + name) or c.tag == name]


def _val(el, name):
  found = _find(el, name)
  return found[0].text.strip() if found and found[0].text else ''


def _marks(xml_path):
  """[(reader, ratings, {sop: (box, contours)})] of the rated nodules of one XML."""
  out = []
  for session in _find(ET.parse(xml_path).getroot(), 'readingSession'):
    reader = _val(session, 'servicingRadiologistID')
    for nodule in _find(session, 'unblindedReadNodule'):
      chars = _find(nodule, 'characteristics')
      if not chars or not _val(chars[0], 'texture'):
        continue  # < 3 mm: one point, no ratings
      ratings = {k: int(_val(chars[0], k)) for k in
                 ('texture', 'lobulation', 'spiculation', 'calcification', 'internalStructure')}
      slices = {}
      for roi in _find(nodule, 'roi'):
        pts = [(int(_val(e, 'xCoord')), int(_val(e, 'yCoord'))) for e in _find(roi, 'edgeMap')]
        if _val(roi, 'inclusion') != 'TRUE' or len(pts) < 2:
          continue
        xs, ys = zip(*pts)
        box = (min(xs), min(ys), max(xs) + 1, max(ys) + 1)
        old, n = slices.get(_val(roi, 'imageSOP_UID'), (box, 0))
        slices[_val(roi, 'imageSOP_UID')] = (
            (min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]), max(old[3], box[3])),
            n + 1)
      if slices:
        out.append((reader, ratings, slices))
  return out


def _overlap(a, b):
  return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _signs(ratings):
  med = lambda k: statistics.median(r[k] for r in ratings)
  most = lambda k, codes: sum(r[k] in codes for r in ratings) * 2 > len(ratings)
  rules = {'GGO': med('texture') <= 2, 'lobulation': med('lobulation') >= 4,
           'calcification': most('calcification', range(1, 6)),
           'CV': most('internalStructure', (4,)), 'spiculation': med('spiculation') >= 4}
  return [s for s, yes in rules.items() if yes]


def expected(root, min_readers):
  """(sign records {(patient, file name, sign, box)}, absent contours per patient)."""
  files = {}
  for path in pathlib.Path(root).rglob('*.dcm'):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    files[str(ds.SOPInstanceUID)] = (str(ds.PatientID), path.name)
  records, absent = set(), collections.Counter()
  for xml_path in pathlib.Path(root).rglob('*.xml'):
    patient = xml_path.relative_to(root).parts[0]
    marks = _marks(xml_path)
    absent[patient] += sum(n for _, _, sl in marks for sop, (_, n) in sl.items()
                           if sop not in files)
    todo, seen = list(range(len(marks))), set()
    while todo:  # connected components of "boxes overlap on a shared slice"
      start = todo.pop()
      if start in seen:
        continue
      group, stack = [], [start]
      while stack:
        i = stack.pop()
        if i in seen:
          continue
        seen.add(i)
        group.append(marks[i])
        stack += [j for j in range(len(marks)) if j not in seen and any(
            _overlap(marks[i][2][s][0], marks[j][2][s][0])
            for s in marks[i][2].keys() & marks[j][2].keys())]
      if len({r for r, _, _ in group}) < min_readers:
        continue
      boxes = {}
      for _, _, sl in group:
        for sop, (b, _) in sl.items():
          o = boxes.get(sop, b)
          boxes[sop] = (min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]), max(o[3], b[3]))
      for sign in _signs([r for _, r, _ in group]):
        records |= {(*files[sop], sign, box) for sop, box in boxes.items() if sop in files}
  return records, absent


def _signed(records):
  return {(r.patient_id, os.path.basename(r.path), r.sign, (r.x0, r.y0, r.x1, r.y1))
          for r in records if r.sign}


@pytest.mark.parametrize('min_readers', [1, 2, 3])
def test_signs_and_boxes_match_an_independent_parse(lidc_fixture, min_readers):
  records, skipped, counts = lidc.load(lidc_fixture, thresholds={'min_readers': min_readers})
  want, absent = expected(lidc_fixture, min_readers)
  assert not skipped and _signed(records) == want
  assert counts['sign_boxes'] == {s: sum(w[2] == s for w in want) for s in lidc.SIGNS}
  assert sum(absent.values()) == 0  # every contoured slice is in the fixture
  by_patient = {(p, s) for p, _, s, _ in want}
  # What the issue reports of the whole series: 0001 spiculation, 0002 GGO (2 readers),
  # 0003 GGO from a nodule that one reader alone marked.
  assert by_patient == {1: {('LIDC-IDRI-0001', 'spiculation'), ('LIDC-IDRI-0002', 'GGO'),
                            ('LIDC-IDRI-0003', 'GGO')},
                        2: {('LIDC-IDRI-0001', 'spiculation'), ('LIDC-IDRI-0002', 'GGO')},
                        3: {('LIDC-IDRI-0001', 'spiculation')}}[min_readers]
  # Patients without a sign nodule under min_readers stay, with background slices.
  assert counts['patients'] == 3
  assert {r.patient_id for r in records if r.sign is None and r.x1 == 0} == {
      'LIDC-IDRI-0001', 'LIDC-IDRI-0002', 'LIDC-IDRI-0003'}


def test_a_third_of_the_slices_removed(lidc_fixture, tmp_path):
  copy = tmp_path / 'lidc_partial'
  removed = set()
  for folder in sorted({p.parent for p in lidc_fixture.rglob('*.dcm')}):
    dst = copy / folder.relative_to(lidc_fixture)
    dst.mkdir(parents=True)
    for n, path in enumerate(sorted(folder.iterdir())):
      if path.suffix == '.dcm' and n % 3 == 1:
        removed.add((folder.relative_to(lidc_fixture).parts[0], path.name))
        continue
      (dst / path.name).symlink_to(path)
  records, skipped, counts = lidc.load(copy)  # no error, no skip_bad
  want, absent = expected(copy, 1)
  full, _ = expected(lidc_fixture, 1)
  assert not skipped and _signed(records) == want
  assert want == {w for w in full if w[:2] not in removed} and len(want) < len(full)
  assert counts['contours_on_absent_slices'] == dict(absent) and sum(absent.values()) > 0
  # Every nodule keeps its signs (ratings, readers): the counts equal the whole fixture's.
  whole = lidc.load(lidc_fixture)[2]
  assert counts['sign_nodules'] == whole['sign_nodules']
  assert counts['nodules_by_readers'] == whole['nodules_by_readers']
  assert counts['sign_boxes']['GGO'] < whole['sign_boxes']['GGO']
  # And it builds: patches of both signs, every patient in a fold.
  cfg = tfds_builder.default_config()
  cfg.require_classes = 'none'
  collected = tfds_builder.collect('lidc', str(copy), cfg)
  labels = {p.label for p in collected.patches}
  assert {signs.code('GGO'), signs.code('spiculation'), signs.NORMAL} <= labels
  assert len(collected.folds) == 3
  assert collected.source_summary['contours_on_absent_slices'] == dict(absent)
