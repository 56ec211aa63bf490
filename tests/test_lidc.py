"""The LIDC-IDRI source on a small LIDC-format folder that the tests write themselves.

Two patients as TCIA lays them out (patient / study / series / *.dcm beside the readers'
XML). Patient 1 (namespaced XML, 5 slices of 64x64, four readers):
  slice 0: nodule A, readers 1-3, texture 1,2,3 (median 2: GGO), spiculation 4,5,3
           (median 4: spiculation); reader 3 also draws an exclusion contour and, on
           slice 1, a one-point stray contour, both ignored.
  slice 1: nodule A, readers 1-2.
  slice 2: nodule C, reader 4, no sign (texture 5, nothing else).
  slice 3: nodule B, readers 1-2, calcification 3,4 and internal structure 4,4
           (calcification + CV); nodule E, reader 3, at A's place but on this slice
           only: a nodule of its own (texture 1: GGO).
  slice 4: a small nodule (one point, no ratings) of reader 4.
  Background: every slice is marked, so the two without a sign record (2 and 4) are
  listed; their background patches keep off the marks there.
  Beside it, a chest radiograph series (CR DICOM and its IdriReadMessage XML): not CT.
Patient 2 (XML without namespace, 8 slices): nodule D on slice 3, lobulation 5; a small
nodule on slice 2, a non-nodule on slice 4; background: slice 5, the only unmarked one of
the middle half (slices 2-5), then the unmarked slices nearest the middle: 1, 6 and 0.
"""
import os
import pathlib

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
import pytest

from cisl_jax.data import dicom
from cisl_jax.data.sources import lidc
from cisl_jax.data.sources import lidc_xml

NEUTRAL = dict(subtlety=3, internalStructure=1, calcification=6, sphericity=3, margin=3,
               lobulation=1, spiculation=1, texture=5, malignancy=3)


def rect(x0, y0, x1, y1):
  """Contour points of a rectangle outline; its box is (x0, y0, x1 + 1, y1 + 1)."""
  return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]


def write_ct(path, patient, study, series, sop, z, size, modality='CT', image_type=None):
  """One real DICOM slice (CT unless told): lung-like air with a soft-tissue square."""
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
  meta.MediaStorageSOPInstanceUID = sop
  meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
  ds = pydicom.Dataset()
  ds.file_meta = meta
  ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, sop
  ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
  ds.Modality = modality
  if image_type:
    ds.ImageType = image_type
  ds.Rows = ds.Columns = size
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
  ds.ImagePositionPatient = [0.0, 0.0, z]
  ds.InstanceNumber = int(z)
  ds.PixelSpacing = [0.7, 0.7]
  pixels = np.full((size, size), 200, np.int16)  # -824 HU
  pixels[size // 4:size // 2, size // 4:size // 2] = 1064  # +40 HU
  ds.PixelData = pixels.tobytes()
  ds.save_as(path, enforce_file_format=True)


def roi_xml(sop, points, inclusion=True):
  edges = ''.join(f'<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>'
                  for x, y in points)
  return (f'<roi><imageZposition>0.0</imageZposition><imageSOP_UID>{sop}</imageSOP_UID>'
          f'<inclusion>{"TRUE" if inclusion else "FALSE"}</inclusion>{edges}</roi>')


def nodule_xml(nodule_id, ratings, rois):
  chars = ''
  if ratings is not None:
    chars = '<characteristics>' + ''.join(
        f'<{k}>{v}</{k}>' for k, v in {**NEUTRAL, **ratings}.items()) + '</characteristics>'
  return (f'<unblindedReadNodule><noduleID>{nodule_id}</noduleID>{chars}'
          + ''.join(rois) + '</unblindedReadNodule>')


def reading_xml(series, sessions, namespace=True):
  """A LidcReadMessage; sessions: one list of nodule / non-nodule XML strings per reader."""
  ns = ' xmlns="http://www.nih.gov"' if namespace else ''
  body = ''.join(
      f'<readingSession><annotationVersion>3.12</annotationVersion>'
      f'<servicingRadiologistID>{100 + i}</servicingRadiologistID>{"".join(items)}'
      '</readingSession>' for i, items in enumerate(sessions))
  return (f'<?xml version="1.0" encoding="UTF-8"?>\n<LidcReadMessage uid="1.2"{ns}>'
          f'<ResponseHeader><Version>1.8.1</Version><SeriesInstanceUid>{series}'
          f'</SeriesInstanceUid><StudyInstanceUID>1.2.3</StudyInstanceUID></ResponseHeader>'
          f'{body}</LidcReadMessage>')


def write_series(root, n, num_slices, size):
  """Writes patient n's series; returns (series folder, SOP UIDs by slice index)."""
  patient = f'LIDC-IDRI-{n:04d}'
  folder = root / patient / f'01-01-2000-{n}' / f'3000{n}.000000-NA'
  folder.mkdir(parents=True)
  series = f'1.2.826.0.1.{n}'
  sops = [f'{series}.{k + 1}' for k in range(num_slices)]
  for k, sop in enumerate(sops):
    write_ct(folder / f'1-{k + 1:03d}.dcm', patient, f'1.2.3.{n}', series, sop, 2.5 * k, size)
  return folder, series, sops


def write_lidc(root: pathlib.Path) -> dict:
  """Writes the two patients of the module docstring; returns their folders and UIDs."""
  f1, s1, u1 = write_series(root, 1, 5, 64)
  readers = [
      [nodule_xml('A', dict(texture=1, spiculation=4, lobulation=1),
                  [roi_xml(u1[0], rect(10, 10, 20, 20)), roi_xml(u1[1], rect(11, 11, 18, 18))]),
       nodule_xml('B', dict(texture=5, calcification=3, internalStructure=4),
                  [roi_xml(u1[3], rect(40, 40, 50, 48))])],
      [nodule_xml('A', dict(texture=2, spiculation=5, lobulation=2),
                  [roi_xml(u1[0], rect(12, 11, 22, 21)), roi_xml(u1[1], rect(12, 12, 20, 19))]),
       nodule_xml('B', dict(texture=5, calcification=4, internalStructure=4),
                  [roi_xml(u1[3], rect(42, 41, 52, 50))])],
      [nodule_xml('A', dict(texture=3, spiculation=3, lobulation=5),
                  [roi_xml(u1[0], rect(11, 8, 19, 19)),
                   roi_xml(u1[0], rect(5, 5, 30, 30), inclusion=False),
                   roi_xml(u1[1], [(50, 50)])]),
       nodule_xml('E', dict(texture=1), [roi_xml(u1[3], rect(10, 10, 20, 20))])],
      [nodule_xml('C', {}, [roi_xml(u1[2], rect(30, 30, 40, 40))]),
       nodule_xml('small', None, [roi_xml(u1[4], [(5, 5)])])],
  ]
  (f1 / '069.xml').write_text(reading_xml(s1, readers))
  # A chest radiograph reading in another series folder of patient 1: ignored.
  cxr = root / 'LIDC-IDRI-0001' / '01-01-2000-1' / '3001.000000-NA'
  cxr.mkdir()
  for k in range(2):  # frontal and lateral radiographs
    write_ct(cxr / f'1-{k + 1:03d}.dcm', 'LIDC-IDRI-0001', '1.2.3.1', '1.2.826.0.9', f'1.2.9.{k}',
             0.0, 64, modality='CR')
  (cxr / '071.xml').write_text('<?xml version="1.0"?><IdriReadMessage xmlns='
                               '"http://www.nih.gov/idri"><ResponseHeader/></IdriReadMessage>')

  f2, s2, u2 = write_series(root, 2, 8, 128)
  non_nodule = (f'<nonNodule><nonNoduleID>n1</nonNoduleID><imageZposition>10</imageZposition>'
                f'<imageSOP_UID>{u2[4]}</imageSOP_UID><locus><xCoord>60</xCoord>'
                '<yCoord>60</yCoord></locus></nonNodule>')
  readers2 = [
      [nodule_xml('D', dict(lobulation=5), [roi_xml(u2[3], rect(20, 25, 30, 35))]), non_nodule],
      [nodule_xml('tiny', None, [roi_xml(u2[2], [(90, 90)])])],
  ]
  (f2 / '158.xml').write_text(reading_xml(s2, readers2, namespace=False))
  return dict(folders=(f1, f2), sops=(u1, u2), xml=(f1 / '069.xml', f2 / '158.xml'))


@pytest.fixture
def lidc_root(tmp_path):
  root = tmp_path / 'LIDC-IDRI'
  info = write_lidc(root)
  return root, info


def is_mark(r):
  """A sign-free record with a box: a reader mark that background patches keep off."""
  return r.sign is None and r.x1 > r.x0


def summary(records, root):
  """Records but marks as (patient, slice file name, sign, box) for comparison."""
  out = set()
  for r in records:
    if is_mark(r):
      continue
    rel = pathlib.Path(r.path).relative_to(root.resolve())
    out.add((r.patient_id, rel.name, r.sign, (r.x0, r.y0, r.x1, r.y1)))
  return out


P1, P2 = 'LIDC-IDRI-0001', 'LIDC-IDRI-0002'
A0, A1 = (10, 8, 23, 22), (11, 11, 21, 20)  # union of readers' boxes (stray point dropped)
B3, E3, C2, D3 = (40, 40, 53, 51), (10, 10, 21, 21), (30, 30, 41, 41), (20, 25, 31, 36)
EXPECTED = {
    (P1, '1-001.dcm', 'GGO', A0), (P1, '1-001.dcm', 'spiculation', A0),
    (P1, '1-002.dcm', 'GGO', A1), (P1, '1-002.dcm', 'spiculation', A1),
    (P1, '1-004.dcm', 'calcification', B3), (P1, '1-004.dcm', 'CV', B3),
    (P1, '1-004.dcm', 'GGO', E3),
    (P2, '1-004.dcm', 'lobulation', D3),
    (P1, '1-003.dcm', None, (0, 0, 0, 0)), (P1, '1-005.dcm', None, (0, 0, 0, 0)),
    (P2, '1-006.dcm', None, (0, 0, 0, 0)), (P2, '1-002.dcm', None, (0, 0, 0, 0)),
    (P2, '1-007.dcm', None, (0, 0, 0, 0)), (P2, '1-001.dcm', None, (0, 0, 0, 0)),
}


def test_reads_signs_boxes_groups_and_background(lidc_root):
  root, _ = lidc_root
  records, skipped, counts = lidc.load(root)
  assert summary(records, root) == EXPECTED
  assert not skipped  # nothing was bad; the radiographs are counted as not CT
  assert counts['not_ct'] == {'radiograph_readings': 1, 'series_by_modality': {'CR': 1},
                              'localiser_images': 0}
  # Records point at real CT slices that the DICOM reader accepts.
  hu = dicom.read_hu(records[0].path)
  assert hu.shape == (64, 64) and hu.min() == pytest.approx(-824)
  assert records == sorted(records, key=lambda r: (r.patient_id, r.path, r.sign or '', r.x0))


def test_min_readers_keeps_consensus_nodules(lidc_root):
  root, _ = lidc_root
  records, _, _ = lidc.load(root, thresholds={'min_readers': 2})
  signed = {(p, s, sign, b) for p, s, sign, b in summary(records, root) if sign}
  # E, C and D were marked by one reader each.
  assert signed == {e for e in EXPECTED if e[2] and e[3] not in (E3, D3)}


def test_thresholds_change_the_mapping(lidc_root):
  root, _ = lidc_root
  records, _, _ = lidc.load(root, thresholds={'ggo_max_texture': 1})
  got = summary(records, root)
  assert (P1, '1-001.dcm', 'GGO', A0) not in got  # A's median texture is 2
  assert (P1, '1-004.dcm', 'GGO', E3) in got  # E's is 1


def test_one_slice_per_nodule_and_median_boxes(lidc_root):
  root, _ = lidc_root
  records, _, _ = lidc.load(root, thresholds={'slices_per_nodule': 1, 'box_merge': 'median'})
  got = summary(records, root)
  # Median of (10,10,21,21), (12,11,23,22), (11,8,20,20) on slice 0, the largest.
  assert (P1, '1-001.dcm', 'GGO', (11, 10, 21, 21)) in got
  assert not any(p == P1 and s == '1-002.dcm' and sign for p, s, sign, _ in got)


def test_grouping_needs_overlap_on_a_shared_slice():
  box = (10, 10, 20, 20)
  mark = lambda reader, boxes, series='S': lidc_xml.Mark('x', reader, 'n', {}, boxes, {},
                                                        series)
  marks = [mark('r1', {'s1': box}),
           mark('r2', {'s1': (15, 15, 25, 25), 's2': box}),
           mark('r3', {'s3': box}),  # same place, other slice
           mark('r3', {'s1': (25, 10, 35, 15)}),  # only touches
           mark('r4', {'s1': box}, 'T')]  # another series
  assert lidc.group_marks(marks) == [[0, 1], [2], [3], [4]]
  # IoU of marks 0 and 1 is 25 / 175: a stricter threshold splits them.
  assert lidc.group_marks(marks, min_iou=0.2) == [[0], [1], [2], [3], [4]]


def ratings(**kw):
  base = dict(texture=5, lobulation=1, spiculation=1, calcification=6, internalStructure=1)
  return {**base, **kw}


@pytest.mark.parametrize('marks,expected', [
    ([ratings(texture=2)], ['GGO']),
    ([ratings(texture=3)], []),
    ([ratings(texture=2), ratings(texture=3)], []),  # median 2.5
    ([ratings(texture=1), ratings(texture=2), ratings(texture=5)], ['GGO']),
    ([ratings(lobulation=4)], ['lobulation']),
    ([ratings(lobulation=3), ratings(lobulation=4), ratings(lobulation=5)], ['lobulation']),
    ([ratings(lobulation=3), ratings(lobulation=4)], []),  # median 3.5
    ([ratings(spiculation=4)], ['spiculation']),
    ([ratings(spiculation=5), ratings(spiculation=2), ratings(spiculation=1)], []),
    ([ratings(calcification=1), ratings(calcification=5), ratings()], ['calcification']),
    ([ratings(calcification=3), ratings()], []),  # half is not most
    ([ratings(calcification=6)] * 3, []),
    ([ratings(internalStructure=4)] * 2 + [ratings(internalStructure=2)], ['CV']),
    ([ratings(internalStructure=4), ratings(internalStructure=1)], []),
    ([ratings(internalStructure=3)], []),  # fat is no cavity
    ([ratings(texture=1, lobulation=5, spiculation=5, calcification=2, internalStructure=4)],
     ['GGO', 'lobulation', 'calcification', 'CV', 'spiculation']),
    ([ratings()], []),
    ([], []),
])
def test_sign_rules(marks, expected):
  assert lidc.signs_from_ratings(marks) == expected


def test_default_thresholds_are_commented_config():
  t = lidc.default_thresholds()
  source = pathlib.Path(lidc.__file__).read_text()
  for key in t.keys():
    line = next(l for l in source.splitlines() if f'c.{key} =' in l)
    assert '#' in line, key


def test_malformed_xml_names_the_file_and_skips(lidc_root):
  root, info = lidc_root
  info['xml'][1].write_text('<LidcReadMessage><readingSession>')
  with pytest.raises(lidc.LidcError, match=r'158\.xml: malformed XML'):
    lidc.load(root)
  records, skipped, _ = lidc.load(root, skip_bad=True)
  assert any(p.endswith('158.xml') and 'malformed' in why for p, why in skipped)
  got = summary(records, root)
  assert {e for e in EXPECTED if e[0] == P1} <= got
  assert not any(p == P2 for p, _, _, _ in got)


def test_partial_series_drops_absent_contours_and_keeps_nodules(lidc_root, caplog):
  root, info = lidc_root
  os.remove(info['folders'][0] / '1-002.dcm')  # slice 1 of patient 1: nodule A, 2 readers
  os.remove(info['folders'][1] / '1-004.dcm')  # slice 3 of patient 2: nodule D, its only one
  with caplog.at_level('WARNING'):
    records, skipped, counts = lidc.load(root)  # no error, no skip_bad
  assert not skipped
  got = summary(records, root)
  # A keeps its ratings (three readers: GGO and spiculation) and its present slice.
  assert {e for e in EXPECTED if e[0] == P1 and e[1] != '1-002.dcm'} <= got
  assert not any(p == P1 and s == '1-002.dcm' for p, s, _, _ in got)
  # Patient 2 lost its only sign slice but stays, with background slices.
  assert {(p, sign) for p, _, sign, _ in got if p == P2} == {(P2, None)}
  assert counts['contours_on_absent_slices'] == {P1: 2, P2: 1}  # the stray point is none
  assert counts['nodules_by_readers'] == {'1': 3, '2': 1, '3': 1, '4': 0}  # D still counted
  assert counts['sign_nodules']['lobulation'] == 1 and counts['sign_boxes']['lobulation'] == 0
  assert counts['sign_nodules_without_present_slices'] == 1
  warned = [r.getMessage() for r in caplog.records if 'not in the folder' in r.getMessage()]
  assert len(warned) == 2 and any('2 contours' in w and P1 in w for w in warned)


def test_reader_counts_and_signs_by_min_readers(lidc_root):
  root, _ = lidc_root
  _, _, counts = lidc.load(root, thresholds={'min_readers': 2})
  # A: 3 readers, B: 2, C, D and E: 1 each.
  assert counts['nodules_by_readers'] == {'1': 3, '2': 1, '3': 1, '4': 0}
  assert counts['min_readers'] == 2 and counts['nodules_kept'] == 2
  assert counts['sign_nodules'] == {'GGO': 1, 'lobulation': 0, 'calcification': 1, 'CV': 1,
                                    'spiculation': 1}
  by_min = counts['sign_nodules_by_min_readers']
  assert by_min['1'] == {'GGO': 2, 'lobulation': 1, 'calcification': 1, 'CV': 1,
                         'spiculation': 1}
  assert by_min['3'] == {'GGO': 1, 'lobulation': 0, 'calcification': 0, 'CV': 0,
                         'spiculation': 1}
  assert counts['patients'] == 2 and counts['contours_on_absent_slices'] == {P1: 0, P2: 0}


def test_background_keeps_off_every_reader_mark(lidc_root):
  root, _ = lidc_root
  records, _, counts = lidc.load(root, thresholds={'mark_margin': 3})
  marks = {(pathlib.Path(r.path).name, r.patient_id, (r.x0, r.y0, r.x1, r.y1))
           for r in records if is_mark(r)}
  # Slice 4 of patient 1 (a background slice): the small nodule's point at (5, 5).
  assert ('1-005.dcm', P1, (2, 2, 9, 9)) in marks
  # Slice 2 (background): nodule C without a sign, grown by 3 px.
  assert ('1-003.dcm', P1, (27, 27, 44, 44)) in marks
  # Slice 0 (signs): reader 3's exclusion contour too, clipped to the slice.
  assert ('1-001.dcm', P1, (2, 2, 34, 34)) in marks
  # Slice 1: reader 3's one-point stray contour at (50, 50).
  assert ('1-002.dcm', P1, (47, 47, 54, 54)) in marks
  # Unmarked background slices carry none; patient 2's sign-free marked slices (the small
  # nodule, the non-nodule) are not listed: it has enough unmarked ones.
  assert {name for name, p, _ in marks if p == P2} == {'1-004.dcm'}
  assert counts['mark_margin'] == 3 and counts['background_slices'] == 6


def test_contour_off_the_slice(lidc_root):
  root, info = lidc_root
  text = info['xml'][0].read_text().replace('<xCoord>52</xCoord>', '<xCoord>64</xCoord>')
  info['xml'][0].write_text(text)
  with pytest.raises(lidc.LidcError, match=r'069\.xml: .*lies off the 64x64 slice'):
    lidc.load(root)


def test_bad_rating_and_unreadable_dicom(lidc_root):
  root, info = lidc_root
  text = info['xml'][1].read_text().replace('<lobulation>5</lobulation>',
                                            '<lobulation>high</lobulation>')
  info['xml'][1].write_text(text)
  with pytest.raises(lidc.LidcError, match=r"158\.xml: .*lobulation is 'high'"):
    lidc.load(root)
  (info['folders'][0] / '1-099.dcm').write_bytes(b'not a scan at all')
  with pytest.raises(lidc.LidcError, match=r'1-099\.dcm: unreadable DICOM header'):
    lidc.load(root)
  _, skipped, _ = lidc.load(root, skip_bad=True)
  assert {pathlib.Path(p).name for p, _ in skipped} == {'1-099.dcm', '158.xml'}


def test_refuses_empty_folder_and_unknown_threshold(tmp_path, lidc_root):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(lidc.LidcError, match='no radiologist XML'):
    lidc.load(empty)
  with pytest.raises(lidc.LidcError, match='no such folder'):
    lidc.load(tmp_path / 'absent')
  with pytest.raises(lidc.LidcError, match=r"unknown LIDC threshold.*'ggo'"):
    lidc.load(lidc_root[0], thresholds={'ggo': 2})


def test_xml_separate_from_the_dicom_tree(lidc_root):
  root, info = lidc_root
  # TCIA also ships the XMLs in their own tree: contours are found under the root.
  xml_dir = root / 'tcia-lidc-xml' / '157'
  xml_dir.mkdir(parents=True)
  for path in info['xml']:
    path.rename(xml_dir / path.name)
  records, _, _ = lidc.load(root)
  assert summary(records, root) == EXPECTED


def test_mixed_series_localiser_second_series_and_duplicate_reading(lidc_root):
  root, info = lidc_root
  f2, (u1, u2) = info['folders'][1], info['sops']
  # A scout image in patient 2's CT series: never a record, counted.
  write_ct(f2 / '1-000.dcm', P2, '1.2.3.2', '1.2.826.0.1.2', '1.2.826.0.1.2.99', 8.0, 128,
           image_type=['ORIGINAL', 'PRIMARY', 'LOCALIZER'])
  # A second CT series of patient 1 with its own reading: a nodule at A's place there is
  # a nodule of its own (series never join), under the same patient.
  second = root / P1 / '01-01-2000-1' / '3002.000000-NA'
  second.mkdir()
  sops = [f'1.2.826.0.7.{k}' for k in range(6)]
  for k, sop in enumerate(sops):
    write_ct(second / f'2-{k + 1:03d}.dcm', P1, '1.2.3.1', '1.2.826.0.7', sop, 2.5 * k, 64)
  nodule = nodule_xml('S', dict(texture=1), [roi_xml(sops[2], rect(10, 10, 20, 20))])
  (second / '090.xml').write_text(reading_xml('1.2.826.0.7', [[nodule]]))
  # A third CT series of patient 2 without any reading: unread, gives nothing.
  unread = root / P2 / '01-01-2000-2' / '3003.000000-NA'
  unread.mkdir()
  write_ct(unread / '3-001.dcm', P2, '1.2.3.2', '1.2.826.0.8', '1.2.826.0.8.1', 0.0, 128)
  # A second copy of patient 2's reading (TCIA's separate XML tree): read once.
  copy = root / 'tcia-lidc-xml' / '157'
  copy.mkdir(parents=True)
  copy.joinpath('158.xml').write_text(info['xml'][1].read_text())

  records, skipped, counts = lidc.load(root)
  got = summary(records, root)
  assert (P1, '2-003.dcm', 'GGO', (10, 10, 21, 21)) in got
  assert got - {e for e in got if e[1].startswith('2-')} == EXPECTED
  assert {e[1] for e in got if e[1].startswith('2-') and e[2] is None} == {
      '2-002.dcm', '2-004.dcm', '2-005.dcm', '2-001.dcm'}  # middle half first
  assert not any(name in ('1-000.dcm', '3-001.dcm') for _, name, _, _ in got)
  assert counts['not_ct']['localiser_images'] == 1
  assert counts['ct_series_read'] == 3 and counts['ct_series_unread'] == 1
  assert counts['nodules_by_readers']['1'] == 4  # C, D, E and the second series' S
  assert [pathlib.Path(p).parts[-2:] for p, _ in skipped] == [('157', '158.xml')]
  assert 'same reading' in skipped[0][1]
