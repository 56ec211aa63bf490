"""predict: boxes mode equals evaluate, maps and detections, DICOM outputs, bad inputs."""
import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys
import warnings

import highdicom as hd
import ml_collections
import numpy as np
import pydicom
import pytest

import predict_helpers as helpers
from cisl_jax import input_pipeline
from cisl_jax.data import dicom
from cisl_jax.data import patches as patches_lib
from cisl_jax.predict import maps as maps_lib
from cisl_jax.predict import model as model_lib
from cisl_jax.predict import run as run_lib
from cisl_jax.train import classifier

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'fixtures'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return helpers.build_and_train(tmp_path_factory.mktemp('predict'))


def config(**kw):
  c = helpers.load_config('predict')
  c.update(kw)
  return c


def read_csv(out):
  with open(out / 'predictions.csv', newline='') as f:
    return list(csv.DictReader(f))


def nothing_left(out: pathlib.Path):
  assert not out.exists()
  assert not [p for p in out.parent.iterdir() if p.name.startswith(f'.{out.name}.tmp-')]


def test_boxes_mode_gives_what_evaluate_gives(trained, tmp_path):
  manifest, data_dir, workdir = trained
  held = input_pipeline.load_split(str(data_dir), 'manifest', 0)
  c = helpers.load_config('evaluate')
  c.update(dict(data_dir=str(data_dir), source='manifest', num_folds=2, fold=0,
                classifier_workdir=str(workdir)))
  classifier.evaluate(c, str(tmp_path / 'eval'))  # what launch/evaluate.py runs
  evaluated = np.load(tmp_path / 'eval' / 'predictions.npz')['probs']  # in held's order
  assert len(evaluated) == len(held['label'])
  # The restored model through the same jitted step and batches: bit for bit.
  model = model_lib.restore(str(workdir))
  np.testing.assert_array_equal(model.probs(held['image']), evaluated)
  out = tmp_path / 'out'
  run_lib.predict(config(combine='mean'), str(workdir), str(manifest), str(out))
  rows = read_csv(out)
  assert {r['kind'] for r in rows} == {'box'} and len(rows) == 8  # 4 patients x 2 boxes
  names = [k for k in rows[0] if k.startswith('p_')]
  rules = patches_lib.default_config()
  checked = set()
  for r in rows:
    patient = pathlib.Path(r['file']).parent.name
    box = tuple(int(r[k]) for k in ('x0', 'y0', 'x1', 'y1'))
    same = ((held['patient_id'] == patient) & (held['kind'] != 'background')
            & np.all(held['box'] == box, axis=1))
    if not same.any():
      continue  # a fold-1 patient: evaluate did not see it
    # The same patches as the dataset's, bit for bit, of the same kinds (TFDS stores a
    # fold shuffled: find each crop among the box's dataset patches).
    img = patches_lib.window(dicom.read_hu(r['file']), rules.hu_level, rules.hu_width)
    crops = patches_lib.box_crops(img, box, rules)
    assert len(crops) == same.sum()
    order = []
    for crop, kind in crops:
      (i,) = [i for i in np.flatnonzero(same) if np.array_equal(crop, held['image'][i, ..., 0])]
      assert held['kind'][i] == kind
      order.append(i)
    got = np.array([float(r[n]) for n in names], np.float32)
    np.testing.assert_array_equal(got, evaluated[order].mean(0))
    assert r['sign'] == names[int(np.argmax(got))][2:] and r['given_sign'] in ('GGO', 'OP')
    checked.add(crops[0][1])
  assert checked == {'centred', 'window'}  # a small box and a large one were compared
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['num_boxes'] == 8 and summary['num_mapped'] == 0


def test_combine_rules(tmp_path, trained):
  from cisl_jax.predict import boxes as boxes_lib
  p = np.array([[.2, .8], [.6, .4], [.1, .9]], np.float32)
  kinds = ['window', 'window', 'scaled']
  np.testing.assert_allclose(boxes_lib.combine(p, kinds, 'mean'), [.3, .7], rtol=1e-6)
  np.testing.assert_array_equal(boxes_lib.combine(p, kinds, 'max'), p[[1, 2], [0, 1]])
  np.testing.assert_array_equal(boxes_lib.combine(p, kinds, 'scaled'), p[2])
  with pytest.raises(ValueError, match='config.combine'):
    run_lib.predict(config(combine='median'), str(trained[2]), 'x', str(tmp_path / 'o'))


def test_map_and_detection_coordinates_at_the_slice_edge():
  rows = cols = 160
  img = np.zeros((rows, cols), np.float32)
  img[40:60, 140:] = 1.0  # a bright strip touching the right edge
  field = np.ones((rows, cols), bool)
  fake = lambda w: (w.reshape(len(w), -1).max(1) > 0.5).astype(np.float32)[:, None]
  g = maps_lib.grid(img.shape, field, 64, 8)
  assert len(g.ys) == len(g.xs) == 13 and g.run.all()
  maps = maps_lib.probability_maps(img, field, fake, 64, 8)
  assert maps.shape == (1, rows, cols)
  # Windows x in {80, 88, 96} reach column 140 (centres 112..128), so from the midpoint
  # 108 to the edge; windows y in 0..56 reach rows 40..59 (centres 32..88): rows 0..91.
  (d,) = maps_lib.detections(maps, ['GGO'], 0.5)
  assert d.box == (108, 0, 160, 92) and d.peak == d.mean == 1.0 and d.sign == 'GGO'
  # Outside the field the map is zero, and so are the windows there (not run).
  field[:, :100] = False
  maps = maps_lib.probability_maps(img, field, fake, 64, 8)
  assert maps[0, :, :100].max() == 0 and maps[0, 50, 150] == 1.0
  assert not maps_lib.grid(img.shape, field, 64, 8).run[:, :8].any()


def test_box_at_the_slice_edge_is_cut_inside_it(trained, tmp_path):
  manifest, _, workdir = trained
  slice_path = manifest.parent / 'P0' / 's1.dcm'
  out = tmp_path / 'edge'
  run_lib.predict(config(box='150,0,160,12'), str(workdir), str(slice_path), str(out))
  (row,) = read_csv(out)
  assert (row['x0'], row['y0'], row['x1'], row['y1']) == ('150', '0', '160', '12')
  img = patches_lib.window(helpers.chest(1), -600, 1500)
  (crop, kind), = patches_lib.box_crops(img, (150, 0, 160, 12), patches_lib.default_config())
  assert kind == 'centred' and np.array_equal(crop, img[0:64, 96:160])
  with pytest.raises(ValueError, match='inside the 160x160 slice'):
    run_lib.predict(config(box='150,0,161,12'), str(workdir), str(slice_path),
                    str(tmp_path / 'off'))
  nothing_left(tmp_path / 'off')


def test_map_mode_on_a_series_writes_csv_png_and_a_segmentation(trained, tmp_path):
  manifest, _, workdir = trained
  series = manifest.parent / 'P1'
  out = tmp_path / 'series'
  summary = run_lib.predict(config(stride=16, threshold=0.05, save_maps=True), str(workdir),
                            str(series), str(out))
  assert summary['num_mapped'] == 2 and len(summary['mapped_signs']) == 9
  saved = sorted((out / run_lib.MAPS_DIR).iterdir())
  with np.load(saved[0]) as a:
    assert str(a['slice_file']) == str(series / 's1.dcm')
    assert maps_lib.SliceMaps.from_arrays(a).full().shape == (9, 160, 160)
  pngs = sorted((out / 'png').iterdir())
  assert len(pngs) == 2 and all(p.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' for p in pngs)
  rows = read_csv(out)
  assert rows and {r['kind'] for r in rows} == {'detection'}
  for r in rows:
    x0, y0, x1, y1 = (int(r[k]) for k in ('x0', 'y0', 'x1', 'y1'))
    assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 160
    assert float(r['probability']) >= float(r['mean_probability']) >= 0.05
  (seg_file,) = summary['segmentations']
  seg = hd.seg.segread(out / seg_file)
  sources = [pydicom.dcmread(series / f's{n}.dcm') for n in (1, 2)]
  assert seg.SOPClassUID == pydicom.uid.SegmentationStorage
  assert seg.SegmentationType == 'FRACTIONAL' and seg.number_of_segments == 9
  assert seg.get_segment_description(1).segment_label == 'GGO'
  refs = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
          for i in s.ReferencedInstanceSequence}
  assert refs == {s.SOPInstanceUID for s in sources}
  assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
  pixels = seg.get_volume(combine_segments=False, rescale_fractional=True).array
  assert pixels.shape[-1] == 9 and pixels.shape[1:3] == (160, 160)
  assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.max() > 0


def test_binary_workdir_maps_its_sign(trained, tmp_path):
  manifest, data_dir, _ = trained
  c = helpers.load_config('train_classifier')
  c.update(dict(data_dir=str(data_dir), source='manifest', num_folds=2, fold=0, width=0.125,
                batch_size=8, num_steps=1, checkpoint_every=1, log_every=1, task='binary',
                sign='GGO'))
  classifier.train_and_evaluate(c, str(tmp_path / 'binary_GGO'))
  out = tmp_path / 'out'
  summary = run_lib.predict(config(stride=32, dicom=True), str(tmp_path / 'binary_GGO'),
                            str(manifest.parent / 'P2' / 's1.dcm'), str(out))
  assert summary['mapped_signs'] == ['GGO'] and summary['task'] == 'binary'
  seg = hd.seg.segread(out / summary['segmentations'][0])
  assert seg.number_of_segments == 1


def _edit_config(src, dst, **fields):
  shutil.copytree(src, dst)
  raw = json.loads((dst / 'config.json').read_text())
  raw.update(fields)
  (dst / 'config.json').write_text(json.dumps(raw))
  return dst


def test_bad_workdirs_name_the_folder_and_the_fix(trained, tmp_path):
  manifest, _, workdir = trained
  slice_path = str(manifest.parent / 'P0' / 's1.dcm')
  out = tmp_path / 'out'
  bare = tmp_path / 'bare'
  bare.mkdir()
  shutil.copy(workdir / 'config.json', bare / 'config.json')
  cases = [
      (tmp_path / 'missing', 'no such folder'),
      (bare, 'no finished checkpoint; train the classifier first'),
      (_edit_config(workdir, tmp_path / 'task', task='binary'), r'10 classes in the '
       r"checkpoint but task='binary' \(2 classes\)"),
      (_edit_config(workdir, tmp_path / 'width', width=0.25), 'first-layer channels in the '
       r'checkpoint but width=0.25 \(8\)'),
  ]
  gan = tmp_path / 'gan'
  gan.mkdir()
  (gan / 'config.json').write_text(json.dumps({'gan': {}, 'num_steps': 3}))
  cases.append((gan, 'is a train_gan.py run .*, not a classifier run'))
  for wd, message in cases:
    with pytest.raises(ValueError, match=message) as info:
      run_lib.predict(config(), str(wd), slice_path, str(out))
    assert str(wd.name) in str(info.value)
    nothing_left(out)


def test_bad_slices_name_the_file_and_the_fix(trained, tmp_path):
  _, _, workdir = trained
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / 'notes.dcm').write_text('not an image')
  helpers.write_ct(bad / 'mr.dcm', helpers.chest(0), modality='MR')
  helpers.write_ct(bad / 'multi.dcm', helpers.chest(0), frames=2)
  body = helpers.chest(0)
  body[body < -500] = 40.0
  body[:, :8] = -1000.0  # air only outside the body, at the border: no lung field
  helpers.write_ct(bad / 'nolung.dcm', body)
  out = tmp_path / 'out'
  cases = [('notes.dcm', 'not a DICOM file'), ('mr.dcm', "Modality is 'MR', not CT"),
           ('multi.dcm', r'2 frame\(s\).*one single-channel 2-D frame'),
           ('nolung.dcm', 'the lung mask is empty.*--config.skip_bad')]
  for name, message in cases:
    with pytest.raises(ValueError, match=message) as info:
      run_lib.predict(config(), str(workdir), str(bad / name), str(out))
    assert str(bad / name) in str(info.value)
    nothing_left(out)
  # A folder of them: the first bad file stops the run; skip_bad lists them instead.
  with pytest.raises(ValueError, match='mr.dcm'):
    run_lib.predict(config(), str(workdir), str(bad), str(out))
  nothing_left(out)
  helpers.write_ct(bad / 'good.dcm', helpers.chest(3))
  summary = run_lib.predict(config(skip_bad=True, stride=32), str(workdir), str(bad), str(out))
  assert summary['num_mapped'] == 1 and len(summary['skipped']) == 4
  # An --out that already holds results is refused before anything runs.
  with pytest.raises(ValueError, match='already exists and is not an empty folder'):
    run_lib.predict(config(), str(workdir), str(bad / 'good.dcm'), str(out))


def test_launcher_on_a_slice_and_a_bad_input(trained, tmp_path):
  manifest, _, workdir = trained
  cmd = [sys.executable, str(helpers.ROOT / 'launch' / 'predict.py'),
         f'--classifier_workdir={workdir}', '--config.stride=32']
  env = {**os.environ, 'PYTHONPATH': str(helpers.ROOT)}
  ok = subprocess.run(cmd + [f'--input={manifest.parent / "P3" / "s2.dcm"}',
                             f'--out={tmp_path / "ok"}'], env=env, capture_output=True,
                      text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert 'wrote' in ok.stdout and (tmp_path / 'ok' / 'predictions.csv').is_file()
  (tmp_path / 'x.txt').write_text('hello')
  bad = subprocess.run(cmd + [f'--input={tmp_path / "x.txt"}', f'--out={tmp_path / "bad"}'],
                       env=env, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith(f'predict: {tmp_path / "x.txt"}')
  nothing_left(tmp_path / 'bad')


@pytest.mark.skipif(not (FIXTURES / 'lung_pet_ct_dx').is_dir(),
                    reason='../shared/fixtures/lung_pet_ct_dx is absent')
def test_real_fixture_slices(trained, tmp_path):
  root = FIXTURES / 'lung_pet_ct_dx' / 'A0001'
  out = tmp_path / 'real'
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    summary = run_lib.predict(config(stride=32), str(trained[2]), str(root / '013.dcm'),
                              str(out))
  assert summary['num_mapped'] == 1
  # The scan's one-component PatientName is copied as it is, without a warning.
  assert not [w for w in caught if 'person name' in str(w.message)]
  ds = pydicom.dcmread(root / '013.dcm')
  seg = hd.seg.segread(out / summary['segmentations'][0])
  refs = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
          for i in s.ReferencedInstanceSequence}
  assert refs == {ds.SOPInstanceUID}
  # The series' first slice lies above the lungs: a real empty lung mask.
  with pytest.raises(ValueError, match='001.dcm: the lung mask is empty'):
    run_lib.predict(config(), str(trained[2]), str(root / '001.dcm'), str(tmp_path / 'top'))
  nothing_left(tmp_path / 'top')


def test_froc_counts_found_signs_and_false_positives():
  from cisl_jax.predict import froc
  det = lambda sign, box: maps_lib.Detection(sign, 0.9, 0.8, box)
  slices = [
      # a GGO box found (overlapping GGO detection), a CV detection elsewhere: 1 FP
      ([('GGO', (10, 10, 30, 30))], [det('GGO', (25, 25, 60, 60)), det('CV', (0, 0, 5, 5))]),
      # an OP box with only a GGO detection on it: OP missed, the GGO one is an FP
      ([('OP', (0, 0, 100, 100))], [det('GGO', (40, 40, 50, 50))]),
      # a sign-free slice with nothing: no FP, still counted per slice
      ([], []),
      # touching edges do not overlap (half-open boxes)
      ([('CV', (10, 10, 20, 20))], [det('CV', (20, 10, 30, 20))]),
  ]
  pt = froc.score(slices, 0.5)
  assert (pt.found, pt.boxes, pt.false_positives) == (1, 3, 3)
  assert pt.sensitivity == 1 / 3 and pt.fp_per_slice == 3 / 4
  assert pt.per_sign == {'GGO': [1, 1], 'OP': [0, 1], 'CV': [0, 1]}


def test_saved_maps_round_trip_and_sweep():
  from cisl_jax.predict import froc
  img = np.zeros((128, 128), np.float32)
  img[20:40, 20:40] = 1.0
  field = np.zeros((128, 128), bool)
  field[8:120, 8:120] = True
  mean = lambda w: np.stack([w.reshape(len(w), -1).mean(1)] * 2, 1) * [1.0, 0.5]
  g = maps_lib.grid(img.shape, field, 64, 16)
  m = maps_lib.SliceMaps(field, g, mean(maps_lib.windows(img, g)).astype(np.float32))
  back = maps_lib.SliceMaps.from_arrays(m.arrays())
  np.testing.assert_array_equal(back.full(), m.full())
  assert back.full().shape == (2, 128, 128)
  points = froc.sweep([([('GGO', (20, 20, 40, 40))], back)], ['GGO', 'CV'], [0.01, 0.5])
  assert points[0].found == 1 and points[0].false_positives == 1  # CV region at 0.01
  assert points[1].found == 0 and points[1].false_positives == 0


def test_segmentation_of_an_anonymised_slice_without_type2_attributes(tmp_path):
  from cisl_jax.predict import dicom_out  # pylint: disable=g-import-not-at-top
  path = helpers.write_ct(tmp_path / 's.dcm', np.full((32, 32), -800.0, np.float32))
  ds = pydicom.dcmread(path)
  for k in ('PatientBirthDate', 'PatientSex', 'AccessionNumber', 'StudyID'):
    delattr(ds, k)
  seg = dicom_out.segmentation([ds], np.full((1, 2, 32, 32), 0.5, np.float32), ['GGO', 'CV'],
                               series_number=7, description='test')
  assert seg.PatientBirthDate == '' and seg.PatientID == ds.PatientID
  assert 'PatientBirthDate' not in ds  # the caller's dataset is left as it was


def test_patch_rules_find_the_card_of_a_relative_data_dir_from_elsewhere(tmp_path, monkeypatch):
  # The demo records data_dir='data' (relative to the repository); predict run from
  # another folder must still read that dataset's patch rules, not fall back silently.
  card_dir = pathlib.Path(input_pipeline.dataset_dir(str(tmp_path / 'repo' / 'data'), 'phantom'))
  card_dir.mkdir(parents=True)
  rules = {'size': 64, 'hu_min': -1234.0, 'hu_max': 150.0}
  (card_dir / 'dataset_card.json').write_text(json.dumps({'config': {'patches': rules}}))
  workdir = tmp_path / 'repo' / 'workdir' / 'quick' / 'fold0' / 'ten_finetune'
  workdir.mkdir(parents=True)
  model = model_lib.Classifier(str(workdir), ml_collections.ConfigDict(
      {'data_dir': 'data', 'source': 'phantom'}), 1, [], [], 8, None, None, None, None)
  monkeypatch.chdir(tmp_path)
  got = run_lib.patch_rules(config(), model)
  assert got.hu_min == -1234.0
