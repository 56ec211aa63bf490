"""Tests of the tf.data pipelines: shapes, determinism, padding, tasks, generated sets."""
import numpy as np
import pytest

from cisl_jax import input_pipeline
from cisl_jax import signs


def _arrays(n=40):
  rng = np.random.default_rng(0)
  labels = np.array([i % 10 for i in range(n)])
  slice_signs = np.zeros((n, signs.NUM_SIGNS), np.int32)
  slice_signs[labels < 9, labels[labels < 9]] = 1
  slice_signs[labels == 9, 0] = np.arange(np.sum(labels == 9)) % 2  # half from GGO slices
  return {'image': rng.uniform(-1, 1, (n, 64, 64, 1)).astype(np.float32),
          'label': labels, 'slice_signs': slice_signs,
          'fold': ((np.arange(n) // 10) % 2).astype(np.int32)}


def test_train_batches_fixed_shape_and_deterministic():
  a = _arrays(30)
  it1 = input_pipeline.train_batches(a['image'], a['label'], 8, seed=3)
  it2 = input_pipeline.train_batches(a['image'], a['label'], 8, seed=3)
  it3 = input_pipeline.train_batches(a['image'], a['label'], 8, seed=4)
  b1 = [next(it1) for _ in range(6)]
  b2 = [next(it2) for _ in range(6)]
  b3 = [next(it3) for _ in range(6)]
  for x, y in zip(b1, b2):
    assert x['image'].shape == (8, 64, 64, 1) and x['image'].dtype == np.float32
    assert x['label'].shape == (8,) and x['label'].dtype == np.int32
    np.testing.assert_array_equal(x['image'], y['image'])
  assert any(not np.array_equal(x['label'], z['label']) for x, z in zip(b1, b3))
  # An image keeps its label through the shuffle.
  for b in b1:
    for img, lab in zip(b['image'], b['label']):
      i = int(np.flatnonzero((a['image'] == img).all(axis=(1, 2, 3)))[0])
      assert a['label'][i] == lab


def test_train_batches_resume_at_a_step_continues_the_same_stream():
  a = _arrays(30)
  full = input_pipeline.train_batches(a['image'], a['label'], 8, seed=5)
  stream = [next(full)['image'] for _ in range(9)]  # crosses two epoch boundaries
  resumed = input_pipeline.train_batches(a['image'], a['label'], 8, seed=5, start_step=4)
  for want in stream[4:]:
    np.testing.assert_array_equal(next(resumed)['image'], want)


def test_train_batches_epochs_drop_remainder():
  a = _arrays(20)
  batches = list(input_pipeline.train_batches(a['image'], a['label'], 6, seed=0, num_epochs=1))
  assert len(batches) == 3
  seen = np.concatenate([b['label'] for b in batches])
  assert len(seen) == 18


def test_eval_batches_cover_once_with_mask():
  a = _arrays(21)
  batches = list(input_pipeline.eval_batches(a['image'], a['label'], 8))
  assert [b['image'].shape[0] for b in batches] == [8, 8, 8]
  mask = np.concatenate([b['mask'] for b in batches])
  assert mask.sum() == 21 and mask[21:].sum() == 0
  labels = np.concatenate([b['label'] for b in batches])[:21]
  np.testing.assert_array_equal(labels, a['label'])


def test_binary_task_balanced_from_slices_without_sign():
  a = _arrays(60)
  x, y = input_pipeline.binary_task(a, sign=0, seed=1)
  assert (y == 1).sum() == (y == 0).sum() == np.sum(a['label'] == 0)
  pool = input_pipeline.background_pool(a, 0)
  assert np.all(a['slice_signs'][pool, 0] == 0)
  negatives = x[y == 0]
  for img in negatives:
    i = int(np.flatnonzero((a['image'] == img).all(axis=(1, 2, 3)))[0])
    assert a['label'][i] == signs.NORMAL and a['slice_signs'][i, 0] == 0


def test_ten_class_task():
  a = _arrays(20)
  x, y = input_pipeline.ten_class_task(a)
  assert x.shape == (20, 64, 64, 1) and set(y) == set(range(10))


def test_pretrain_task_sizes_and_labels():
  a = _arrays(40)
  gen = {'image': np.zeros((18, 64, 64, 1), np.float32), 'label': np.arange(18) % 9}
  x, y = input_pipeline.pretrain_task(gen, a, 'ten_class', None, 5, seed=0)
  assert x.shape == (50, 64, 64, 1) and np.bincount(y).tolist() == [5] * 10
  x, y = input_pipeline.pretrain_task(gen, a, 'binary', 2, 7, seed=0)
  assert np.bincount(y).tolist() == [7, 7]
  with pytest.raises(ValueError, match='unknown task'):
    input_pipeline.pretrain_task(gen, a, 'three', None, 5, seed=0)


def test_generated_round_trip(tmp_path):
  images = np.random.default_rng(0).uniform(-1, 1, (7, 64, 64, 1)).astype(np.float32)
  labels = np.arange(7) % 9
  out = input_pipeline.write_generated(str(tmp_path / 'gen'), images, labels)
  got = input_pipeline.load_generated(out)
  np.testing.assert_array_equal(got['image'], images)
  np.testing.assert_array_equal(got['label'], labels)
  # Rewriting replaces the set as a whole.
  input_pipeline.write_generated(out, images[:3], labels[:3])
  assert len(input_pipeline.load_generated(out)['label']) == 3
  assert sorted(p.name for p in tmp_path.iterdir()) == ['gen']


def test_fold_class_check_names_sign_and_fold():
  a = _arrays(20)
  a['label'] = np.where((a['fold'] == 1) & (a['label'] == 7), 6, a['label'])
  from cisl_jax.data import splits  # pylint: disable=g-import-not-at-top
  by_fold = {int(f): a['label'][a['fold'] == f] for f in np.unique(a['fold'])}
  with pytest.raises(ValueError, match=r"fold 1 has no 'AB'"):
    splits.check_fold_classes(by_fold, range(10), '10-class')
