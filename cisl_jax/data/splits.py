"""Cross-validation folds grouped by patient and stratified by class.

No patient is in two folds (patches of one patient are near-duplicates: a patient
split across train and test would leak). Within that constraint the folds are
balanced class by class with a greedy assignment: patients holding the rarest
classes are placed first, each into the fold that is furthest below its share of
the classes that patient carries. With few patients per rare sign this is as close
to stratified as the grouping allows.
"""
from collections.abc import Mapping, Sequence

import numpy as np

from cisl_jax import signs


class FoldError(ValueError):
  """A fold lacks a class that a task needs; the message names both."""


def assign_folds(patient_counts: Mapping[str, Sequence[int]], num_folds: int = 3,
                 seed: int = 0) -> dict[str, int]:
  """Assigns each patient to a fold in [0, num_folds).

  Args:
    patient_counts: patient id -> patch counts per class (length NUM_CLASSES; any
      length works as long as all are equal).
    num_folds: number of folds, >= 2.
    seed: breaks ties between equally good folds.
  Returns:
    patient id -> fold index. Deterministic for given inputs and seed.
  """
  if num_folds < 2:
    raise ValueError(f'num_folds must be >= 2, got {num_folds}.')
  if len(patient_counts) < num_folds:
    raise FoldError(f'{len(patient_counts)} patient(s) cannot fill {num_folds} folds '
                    'grouped by patient; lower num_folds (e.g. --config.num_folds=2) '
                    'or add patients.')
  ids = sorted(patient_counts)
  counts = np.array([np.asarray(patient_counts[p], np.float64) for p in ids])
  totals = counts.sum(0)
  # Rarity of a class: 1 / its total; a patient's key is its rarest class present.
  rarity = np.where(totals > 0, 1.0 / np.maximum(totals, 1), 0.0)
  rng = np.random.default_rng(seed)
  tiebreak = rng.permutation(len(ids))
  order = sorted(range(len(ids)), key=lambda i: (
      -np.max(rarity * (counts[i] > 0), initial=0.0), -counts[i].sum(), tiebreak[i]))

  fold_counts = np.zeros((num_folds, counts.shape[1]))
  fold_patients = np.zeros(num_folds)
  share = np.where(totals > 0, totals / num_folds, 1.0)
  assignment = {}
  for i in order:
    present = counts[i] > 0
    # How far each fold would be above its share of this patient's classes.
    cost = ((fold_counts + counts[i]) / share)[:, present].sum(1) if present.any() else (
        np.zeros(num_folds))
    key = np.lexsort((rng.random(num_folds), fold_patients, fold_counts.sum(1), cost))
    best = int(key[0])
    assignment[ids[i]] = best
    fold_counts[best] += counts[i]
    fold_patients[best] += 1
  return assignment


def check_fold_classes(labels_by_fold: Mapping[int, np.ndarray], needed: Sequence[int],
                       task: str) -> None:
  """Raises FoldError naming the class and the fold when a fold has none of it.

  Args:
    labels_by_fold: fold index -> labels of its patches.
    needed: class codes (0-8 signs, 9 normal) the task needs in every fold.
    task: the task's name, for the message.
  """
  for fold in sorted(labels_by_fold):
    labels = np.asarray(labels_by_fold[fold])
    for c in needed:
      if not np.any(labels == c):
        raise FoldError(
            f'fold {fold} has no {signs.CLASS_NAMES[c]!r} patches (class {c}), which the '
            f'{task} task needs in every fold; add patients with {signs.CLASS_NAMES[c]}, '
            'lower num_folds, or leave that class out of the task.')
