"""Tests of the cisl_patches TFDS builder: features, folds, card, atomic builds."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cisl_jax import input_pipeline
from cisl_jax import signs
from cisl_jax.data import card as card_lib
from cisl_jax.data import tfds_builder

SIGNS_USED = ('GGO', 'CV', 'OP')


def _ct_slice(size=256, seed=0):
  yy, xx = np.mgrid[:size, :size] / size
  hu = np.full((size, size), -1000.0, np.float32)
  hu[((xx - .5) / .48) ** 2 + ((yy - .5) / .42) ** 2 < 1] = 40.0
  for cx in (.28, .72):
    hu[((xx - cx) / .2) ** 2 + ((yy - .5) / .35) ** 2 < 1] = -850.0
  return hu + np.random.default_rng(seed).normal(0, 10, hu.shape).astype(np.float32)


def write_manifest(root, num_patients=9, extra_rows=()):
  """NPY slices: each patient one slice with a sign box and one box-free slice."""
  root.mkdir(parents=True, exist_ok=True)
  rows = ['patient_id,path,sign,x0,y0,x1,y1']
  for i in range(num_patients):
    for j in range(2):
      name = f'p{i}_{j}.npy'
      np.save(root / name, _ct_slice(seed=10 * i + j))
      if j == 0:
        sign = SIGNS_USED[i % len(SIGNS_USED)]
        box = '50,100,70,120' if sign != 'OP' else '30,80,110,130'  # OP: a large box
        rows.append(f'P{i},{name},{sign},{box}')
      else:
        rows.append(f'P{i},{name},,,,,')
  rows += list(extra_rows)
  (root / 'manifest.csv').write_text('\n'.join(rows) + '\n')
  return root / 'manifest.csv'


def _cfg(**kw):
  cfg = tfds_builder.default_config()
  cfg.patches.backgrounds_per_slice = 2
  cfg.examples_per_class = 2
  cfg.update(kw)
  return cfg


def test_build_features_folds_and_card(tmp_path):
  manifest = write_manifest(tmp_path / 'src')
  card_path = tfds_builder.build_dataset('manifest', str(manifest), str(tmp_path / 'data'), _cfg())
  assert card_path == str(tmp_path / 'data/cisl_patches/manifest/1.0.0/dataset_card.json')
  assert os.listdir(tmp_path / 'data') == ['cisl_patches']  # no temp folders left
  card = json.loads(open(card_path).read())
  assert card['num_patients'] == 9 and card['num_slices'] == 18
  assert card['input_boxes_per_sign']['GGO'] == 3 and card['input_boxes_per_sign']['OP'] == 3
  assert os.path.isfile(os.path.join(os.path.dirname(card_path), card_lib.GRID_NAME))

  arrays = input_pipeline.load_split(str(tmp_path / 'data'), 'manifest', [0, 1, 2])
  n = len(arrays['label'])
  assert arrays['image'].shape == (n, 64, 64, 1) and arrays['image'].dtype == np.float32
  assert -1 <= arrays['image'].min() and arrays['image'].max() <= 1
  assert arrays['slice_signs'].shape == (n, signs.NUM_SIGNS) and arrays['box'].shape == (n, 4)
  assert set(arrays['source']) == {'manifest'}
  assert set(arrays['kind']) == {'centred', 'window', 'scaled', 'background'}
  # Each patch names its slice file (NPY here: no SOP Instance UID).
  assert {os.path.basename(p) for p in arrays['slice_path']} <= {
      f'p{i}_{j}.npy' for i in range(9) for j in range(2)}
  assert all(os.path.isabs(p) for p in arrays['slice_path']) and set(arrays['sop_uid']) == {''}
  # Grouped by patient: every patient's patches in exactly one fold, matching the card.
  for pid in set(arrays['patient_id']):
    folds = set(arrays['fold'][arrays['patient_id'] == pid])
    assert len(folds) == 1
    assert pid in card['folds'][f'fold{folds.pop()}']['patients']
  for k in range(3):
    fold = input_pipeline.load_split(str(tmp_path / 'data'), 'manifest', k)
    assert set(fold['fold']) == {k}
    counts = np.bincount(fold['label'], minlength=10)
    assert counts.tolist() == list(card['folds'][f'fold{k}']['per_class'].values())
  # Background patches carry their slice's signs: box-free slices give all-zero rows.
  bg = arrays['label'] == signs.NORMAL
  assert (arrays['slice_signs'][bg].sum(1) == 0).any()


def test_bad_input_leaves_nothing_and_skip_bad_lists_it(tmp_path):
  manifest = write_manifest(tmp_path / 'src', extra_rows=['P9,missing.npy,GGO,1,1,9,9'])
  data = tmp_path / 'data'
  with pytest.raises(ValueError, match=r'line 20.*missing\.npy: no such file'):
    tfds_builder.build_dataset('manifest', str(manifest), str(data), _cfg())
  assert not data.exists()  # not even an empty data folder
  card = json.loads(open(tfds_builder.build_dataset(
      'manifest', str(manifest), str(data), _cfg(), skip_bad=True)).read())
  assert card['skipped']['count'] == 1 and 'line 20' in card['skipped']['inputs'][0]['input']


def test_fold_without_class_is_refused(tmp_path):
  manifest = write_manifest(tmp_path / 'src', num_patients=4)  # only one patient has CV
  with pytest.raises(ValueError, match=r"fold \d has no 'CV'"):
    tfds_builder.build_dataset('manifest', str(manifest), str(tmp_path / 'data'), _cfg())
  assert not (tmp_path / 'data').exists()


def test_rebuild_replaces_whole(tmp_path):
  manifest = write_manifest(tmp_path / 'src')
  data = str(tmp_path / 'data')
  tfds_builder.build_dataset('manifest', str(manifest), data, _cfg())
  first = len(input_pipeline.load_split(data, 'manifest', [0, 1, 2])['label'])
  tfds_builder.build_dataset('manifest', str(manifest), data,
                             _cfg(patches=dict(backgrounds_per_slice=1)))
  second = len(input_pipeline.load_split(data, 'manifest', [0, 1, 2])['label'])
  assert second == first - 18


def test_folds_are_read_once_and_handed_out_as_copies(tmp_path, monkeypatch):
  data = str(tmp_path / 'data')
  tfds_builder.build_dataset('manifest', str(write_manifest(tmp_path / 'src')), data, _cfg())
  first = input_pipeline.load_split(data, 'manifest', [0, 1])
  reads = []
  real_as_dataset = tfds.core.DatasetBuilder.as_dataset
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'as_dataset',
                      lambda self, **kw: reads.append(kw['split']) or real_as_dataset(self, **kw))
  first['image'][:] = 0  # a caller's change must not reach the next caller
  again = input_pipeline.load_split(data, 'manifest', [1, 0, 2])
  assert reads == ['fold2']  # folds 0 and 1 came from this process's first read
  assert set(again['fold'][:np.sum(again['fold'] == 1)]) == {1}  # in the order asked for
  assert np.abs(again['image']).max() > 0


def test_liss_builder_with_manual_dir(tmp_path):
  write_manifest(tmp_path / 'liss')
  builder = tfds_builder.CislPatches(config='liss', data_dir=str(tmp_path / 'data'),
                                     build_config=_cfg())
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(tmp_path / 'liss')))
  assert set(builder.info.splits) == {'fold0', 'fold1', 'fold2'}
  assert builder.info.version == '1.0.0'
  ds = builder.as_dataset(split='fold0')
  ex = next(iter(tfds.as_numpy(ds)))
  assert ex['image'].shape == (64, 64, 1) and ex['source'] == b'liss'


def test_lidc_counts_match_input(tmp_path):
  """A LIDC-format folder (written by test_lidc's helper) builds with every box kept."""
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(__file__))
  import test_lidc  # pylint: disable=g-import-not-at-top
  from cisl_jax.data.sources import lidc  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'LIDC-IDRI'
  test_lidc.write_lidc(root)
  records, _, _ = lidc.load(root)
  cfg = _cfg(num_folds=2, require_classes='none')
  card = json.loads(open(tfds_builder.build_dataset('lidc', str(root), str(tmp_path / 'd'),
                                                    cfg)).read())
  for s in signs.SIGNS:
    n = sum(r.sign == s for r in records)
    assert card['input_boxes_per_sign'][s] == card['boxes_with_patches_per_sign'][s] == n
  assert sum(card['input_boxes_per_sign'].values()) == sum(r.sign is not None for r in records)
  assert card['num_patients'] == 2


def test_a_failed_build_leaves_no_data_folder(tmp_path):
  manifest = write_manifest(tmp_path / 'src', extra_rows=['P0,missing.npy,,,,,'])
  with pytest.raises(ValueError, match='missing.npy'):
    tfds_builder.build_dataset('manifest', str(manifest), str(tmp_path / 'new' / 'data'), _cfg())
  assert not (tmp_path / 'new').exists()  # an empty data folder used to be left


def test_card_warns_of_skipped_inputs_absent_signs_and_tiny_folds(tmp_path):
  manifest = write_manifest(tmp_path / 'src', extra_rows=['P0,missing.npy,,,,,'])
  card_path = tfds_builder.build_dataset('manifest', str(manifest), str(tmp_path / 'data'),
                                         _cfg(), skip_bad=True)
  card = json.loads(open(card_path).read())
  found = card_lib.warnings(card)
  assert found[0].startswith('skipped 1 bad input(s)') and 'missing.npy' in found[0]
  assert any(w.startswith('6 of 9 signs have no patches: lobulation') for w in found)
  assert any('holds only' in w and 'patches' in w for w in found)


def test_phantom_card_names_no_deleted_folder():
  collected = tfds_builder.Collected('phantom', '/tmp/cisl_phantom_x/phantom/manifest.csv',
                                     [], {}, 3, [], [], [])
  card = card_lib.make_card(collected, _cfg(), version='1.0.0', seconds=0.0)
  assert card['input'].startswith('phantom (seed 0)') and '/tmp' not in card['input']
