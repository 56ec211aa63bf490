"""Tests of patient-grouped, class-stratified folds."""
import numpy as np
import pytest

from cisl_jax import signs
from cisl_jax.data import splits


def _patients(n=60, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for i in range(n):
    c = np.zeros(signs.NUM_CLASSES, int)
    c[signs.NORMAL] = rng.integers(4, 12)
    for s in rng.choice(signs.NUM_SIGNS, size=rng.integers(1, 3), replace=False):
      c[s] = rng.integers(1, 6)
    out[f'P{i:03d}'] = c
  return out


def test_grouped_complete_and_deterministic():
  pc = _patients()
  a = splits.assign_folds(pc, 3, seed=0)
  assert set(a) == set(pc) and set(a.values()) == {0, 1, 2}  # one fold per patient
  assert a == splits.assign_folds(pc, 3, seed=0)


def test_stratified_by_class():
  pc = _patients()
  a = splits.assign_folds(pc, 3, seed=0)
  per_fold = np.zeros((3, signs.NUM_CLASSES))
  for p, f in a.items():
    per_fold[f] += pc[p]
  totals = per_fold.sum(0)
  for c in range(signs.NUM_CLASSES):
    holders = sum(1 for v in pc.values() if v[c])
    if holders >= 3:
      assert (per_fold[:, c] > 0).all(), signs.CLASS_NAMES[c]
    # Signs: every fold within about a patient's worth of its third; normal (present in
    # every patient, balanced last) within 15%.
    gap = np.abs(per_fold[:, c] - totals[c] / 3).max()
    if c == signs.NORMAL:
      assert gap <= 0.15 * totals[c] / 3
    else:
      assert gap <= max(v[c] for v in pc.values()) + 1, signs.CLASS_NAMES[c]


def test_rare_sign_spread_over_folds():
  pc = {f'N{i}': np.eye(signs.NUM_CLASSES, dtype=int)[signs.NORMAL] * 5 for i in range(9)}
  for i in range(3):  # three patients hold the only OP patches
    pc[f'OP{i}'] = np.eye(signs.NUM_CLASSES, dtype=int)[8] * 2
  a = splits.assign_folds(pc, 3, seed=1)
  assert sorted(a[f'OP{i}'] for i in range(3)) == [0, 1, 2]


def test_too_few_patients():
  with pytest.raises(splits.FoldError, match='2 patient.*3 folds'):
    splits.assign_folds({'a': [1], 'b': [1]}, 3)


def test_missing_class_names_sign_and_fold():
  with pytest.raises(splits.FoldError, match=r"fold 2 has no 'spiculation'.*binary"):
    splits.check_fold_classes({0: [4, 9], 1: [4, 9], 2: [9, 1]}, [4, 9], 'binary spiculation')
