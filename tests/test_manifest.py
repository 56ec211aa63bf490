"""Tests of the manifest source: CSV, JSON, VOC folders, and every bad input."""
import json
import shutil

import numpy as np
import pydicom
import pytest

from cisl_jax.data.sources import liss
from cisl_jax.data.sources import manifest

HEADER = 'patient_id,path,sign,x0,y0,x1,y1\n'


def _slice(tmp_path, name='s.npy', size=128):
  """A plausible CT slice in HU: air around a soft-tissue body (the intensity check)."""
  hu = np.full((size, size), -1000.0, np.float32)
  hu[size // 4:3 * size // 4, size // 4:3 * size // 4] = 40.0
  np.save(tmp_path / name, hu)
  return name


def _csv(tmp_path, *rows):
  path = tmp_path / 'manifest.csv'
  path.write_text(HEADER + ''.join(r + '\n' for r in rows))
  return path


def test_csv_rows_and_box_free_slices(tmp_path):
  _slice(tmp_path, 'a.npy')
  _slice(tmp_path, 'b.npy')
  path = _csv(tmp_path, 'P1,a.npy,ggo,10,20,30,40', 'P1,a.npy,Cavity,0,0,5,5', 'P2,b.npy,,,,,')
  records, skipped = manifest.load(path)
  assert not skipped
  assert [(r.patient_id, r.sign) for r in records] == [('P1', 'GGO'), ('P1', 'CV'), ('P2', None)]
  assert (records[0].x0, records[0].y0, records[0].x1, records[0].y1) == (10, 20, 30, 40)
  assert records[0].path == str(tmp_path / 'a.npy')


def test_json_and_folder_lookup(tmp_path):
  _slice(tmp_path, 'a.npy')
  (tmp_path / 'manifest.json').write_text(json.dumps([
      {'patient_id': 'P1', 'path': 'a.npy', 'sign': 'PI', 'x0': 1, 'y0': 2, 'x1': 3, 'y1': 4}]))
  records, _ = manifest.load(tmp_path)  # the folder's manifest.json
  assert records[0].sign == 'PI' and records[0].x1 == 3


def test_voc_folder_fixture(fixture_dir):
  records, skipped = manifest.load(fixture_dir, voc_sign='GGO')
  assert not skipped
  boxes = [r for r in records if r.sign]
  assert len(boxes) == len(list(fixture_dir.glob('*/*.xml'))) == 8
  assert len({r.path for r in records}) == len(list(fixture_dir.glob('*/*.dcm'))) == 14
  assert {r.patient_id for r in records} == {'A0001', 'A0002'}
  assert all(r.sign == 'GGO' for r in boxes)
  a = next(r for r in boxes if r.path.endswith('A0001/013.dcm'))
  assert (a.x0, a.y0, a.x1, a.y1) == (301, 329, 351, 372)


def test_voc_per_name_mapping_and_unknown_name(fixture_dir):
  records, _ = manifest.load(fixture_dir, voc_sign='A:CV')
  assert {r.sign for r in records if r.sign} == {'CV'}
  with pytest.raises(manifest.ManifestError, match=r"013\.xml: object 0: unknown sign 'A'.*"
                     r"voc_sign"):
    manifest.load(fixture_dir)


def _fixture_copy(tmp_path, fixture_dir, edit):
  ds = pydicom.dcmread(fixture_dir / 'A0002' / '012.dcm')
  edit(ds)
  ds.save_as(tmp_path / 'x.dcm')
  return 'x.dcm'


def _truncated(tmp_path, fixture_dir):
  data = (fixture_dir / 'A0002' / '012.dcm').read_bytes()
  (tmp_path / 'x.dcm').write_bytes(data[:len(data) // 3])
  return 'x.dcm'


def _mr(ds):
  ds.Modality = 'MR'


def _frames(ds):
  ds.NumberOfFrames = 2


# (row text or a function writing the bad file, words the error must hold).
BAD = {
    'missing file': ('P2,nope.npy,GGO,1,1,9,9', 'no such file'),
    'corrupt file': (lambda t, f: _truncated(t, f), 'x.dcm: pixel data cannot be decoded'),
    'non-CT DICOM': (lambda t, f: _fixture_copy(t, f, _mr), "Modality is 'MR'"),
    'multi-frame DICOM': (lambda t, f: _fixture_copy(t, f, _frames), '2 frame'),
    'box outside slice': ('P2,b.npy,GGO,100,100,140,120', 'outside the 128x128 slice'),
    'zero-area box': ('P2,b.npy,GGO,10,10,10,20', 'zero-area box'),
    'inverted box': ('P2,b.npy,GGO,30,10,20,20', 'inverted box'),
    'unknown sign': ('P2,b.npy,GG0,1,1,9,9', "unknown sign 'GG0'.*Did you mean 'GGO'"),
    'duplicate row': ('P1,a.npy,GGO,1,1,9,9', 'duplicate of .*line 2'),
    'patient without slices': ('P3,,,,,,', "patient 'P3' has no slices"),
    'box without sign': ('P2,b.npy,,1,1,9,9', 'box without a sign'),
    'slice under two patients': ('P2,a.npy,CV,1,1,9,9', 'listed under patients'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_is_named_and_skippable(tmp_path, fixture_dir, case):
  _slice(tmp_path, 'a.npy')
  _slice(tmp_path, 'b.npy')
  bad, match = BAD[case]
  if callable(bad):
    bad = f'P2,{bad(tmp_path, fixture_dir)},GGO,1,1,9,9'
  path = _csv(tmp_path, 'P1,a.npy,GGO,1,1,9,9', bad)
  with pytest.raises(manifest.ManifestError, match=match) as e:
    manifest.load(path)
  assert 'line 3' in str(e.value) and str(path) in str(e.value)
  records, skipped = manifest.load(path, skip_bad=True)
  assert len(records) == 1 and records[0].path.endswith('a.npy')
  assert len(skipped) == 1 and skipped[0][0].endswith('line 3')


def test_all_errors_listed_together(tmp_path):
  _slice(tmp_path, 'a.npy')
  path = _csv(tmp_path, 'P1,a.npy,GGO,1,1,9,9', 'P1,a.npy,XYZ,1,1,9,9', 'P1,a.npy,GGO,5,5,5,9')
  with pytest.raises(manifest.ManifestError, match='2 bad input') as e:
    manifest.load(path)
  assert 'line 3' in str(e.value) and 'line 4' in str(e.value)


def test_missing_column_and_empty_patient_folder(tmp_path, fixture_dir):
  (tmp_path / 'manifest.csv').write_text('patient_id,path,sign\nP1,a.npy,GGO\n')
  with pytest.raises(manifest.ManifestError, match='missing column.*x0'):
    manifest.load(tmp_path / 'manifest.csv')
  root = tmp_path / 'voc'
  shutil.copytree(fixture_dir / 'A0001', root / 'A0001')
  (root / 'EMPTY').mkdir()
  with pytest.raises(manifest.ManifestError, match="EMPTY.*patient 'EMPTY' has no slices"):
    manifest.load(root, voc_sign='GGO')
  records, skipped = manifest.load(root, voc_sign='GGO', skip_bad=True)
  assert len(records) == 7 and skipped[0][0].endswith('EMPTY')  # 4 boxes, 3 box-free


def test_liss_manual_dir(tmp_path):
  with pytest.raises(manifest.ManifestError, match='manifest.csv'):
    liss.load(tmp_path)
  _slice(tmp_path, 'a.npy')
  _csv(tmp_path, 'L1,a.npy,Spiculation,1,1,9,9')
  records, _ = liss.load(tmp_path)
  assert records[0].sign == 'spiculation'


def test_empty_csv_says_empty_file(tmp_path):
  path = tmp_path / 'manifest.csv'
  path.write_text('')
  with pytest.raises(manifest.ManifestError, match=r'manifest.csv: empty file \(0 bytes\)'):
    manifest.load(path)
