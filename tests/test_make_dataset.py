"""End-to-end test of launch/make_dataset.py on the real Lung-PET-CT-Dx fixture."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configs import make_dataset as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def _run(*args):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, str(ROOT / 'launch' / 'make_dataset.py'), *args],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_config_variants():
  quick, paper = config_lib.get_config(), config_lib.get_config('paper')
  assert quick.num_folds == paper.num_folds == 3
  assert paper.patches.backgrounds_per_slice > quick.patches.backgrounds_per_slice
  with pytest.raises(ValueError, match='variant'):
    config_lib.get_config('huge')


def test_fixture_counts_match_input(tmp_path, fixture_dir):
  data = tmp_path / 'data'
  out = _run('--source=manifest', f'--input={fixture_dir}', f'--data_dir={data}',
             '--config.manifest.voc_sign=GGO', '--config.num_folds=2')
  assert out.returncode == 0, out.stderr[-3000:]
  card_path = out.stdout.strip().splitlines()[-1]
  assert card_path == str(data / 'cisl_patches' / 'manifest' / '1.0.0' / 'dataset_card.json')
  card = json.loads(pathlib.Path(card_path).read_text())
  assert card['num_patients'] == len([d for d in fixture_dir.iterdir() if d.is_dir()])
  assert card['num_slices'] == len(list(fixture_dir.glob('*/*.dcm')))
  boxes = len(list(fixture_dir.glob('*/*.xml')))
  assert card['input_boxes_per_sign']['GGO'] == boxes
  assert card['boxes_with_patches_per_sign']['GGO'] == boxes  # none dropped
  assert card['dropped_boxes']['count'] == 0 and card['skipped']['count'] == 0
  per_fold = [f['per_class']['GGO'] for f in card['folds'].values()]
  assert sum(per_fold) == card['patches_per_class']['GGO'] and all(per_fold)
  # Every patch leads back to its DICOM slice: path and SOP Instance UID.
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  import pydicom  # pylint: disable=g-import-not-at-top
  arrays = input_pipeline.load_split(str(data), 'manifest', [0, 1])
  for path, uid in set(zip(arrays['slice_path'], arrays['sop_uid'])):
    assert pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == uid
  # What the user must know is on the terminal, before the card's path.
  assert 'WARNING: 8 of 9 signs have no patches' in out.stderr
  # and TFDS's own "Downloading and preparing dataset" line is not (nothing is downloaded).
  assert 'Downloading and preparing' not in out.stdout + out.stderr

  # A finished build is not rebuilt under the runs trained on it (it used to be).
  again = _run('--source=manifest', f'--input={fixture_dir}', f'--data_dir={data}',
               '--config.manifest.voc_sign=GGO', '--config.num_folds=2')
  assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == card_path
  assert 'already built; not rebuilding (pass --overwrite' in again.stderr
  assert json.loads(pathlib.Path(card_path).read_text()) == card


def test_bad_input_exits_with_named_file(tmp_path, fixture_dir):
  # Without a VOC mapping the fixture's label 'A' is not a sign: a clear error, no dataset.
  data = tmp_path / 'data'
  out = _run('--source=manifest', f'--input={fixture_dir}', f'--data_dir={data}',
             '--config.num_folds=2')
  assert out.returncode != 0
  assert '013.xml' in out.stderr and 'voc_sign' in out.stderr
  assert 'Traceback' not in out.stderr
  assert not (data / 'cisl_patches').exists()


def test_too_few_patients_for_the_folds_ends_with_the_fix(tmp_path, fixture_dir):
  # The fixture holds 2 patients: 5 folds cannot be filled. The message, not a traceback.
  data = tmp_path / 'data'
  out = _run('--source=manifest', f'--input={fixture_dir}', f'--data_dir={data}',
             '--config.manifest.voc_sign=GGO', '--config.num_folds=5')
  assert out.returncode == 1
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('make_dataset: 2 patient(s) cannot fill 5 folds')
  assert '--config.num_folds=2' in last and 'Traceback' not in out.stderr
  assert not (data / 'cisl_patches').exists()


def test_real_lidc_builds_and_ends_with_its_summary(tmp_path, lidc_fixture):
  from cisl_jax.data.sources import lidc  # pylint: disable=g-import-not-at-top
  data = tmp_path / 'data'
  # Three patients cannot fill every class in 3 folds: the only flag needed.
  out = _run('--source=lidc', f'--input={lidc_fixture}', f'--data_dir={data}',
             '--config.require_classes=none')
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.strip().splitlines()
  card = json.loads(pathlib.Path(lines[-1]).read_text())
  assert card['lidc'] == json.loads(json.dumps(lidc.load(lidc_fixture)[2]))
  assert lines[-5:-1] == lidc.summary_lines(card['lidc'])
  assert lines[-4].startswith('lidc: nodules by number of readers: 1: ')
  assert card['num_patients'] == card['lidc']['patients'] == 3
  for sign, n in card['lidc']['sign_boxes'].items():
    assert card['input_boxes_per_sign'][sign] == card['boxes_with_patches_per_sign'][sign] == n
  assert card['patches_per_class']['normal'] > 0 and card['skipped']['count'] == 0
