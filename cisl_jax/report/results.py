"""Reads a reproduce workdir's per-fold stage results and summarises them per table cell.

Layout read (cisl_jax/workdir.py): `<workdir>/fold<k>/<stage>/predictions.npz` with the
`labels` and `preds` of each finished classifier stage on its held-out fold.
A cell (a sign or class, a method) gets: mean +- std over folds of AC, SE, SP, and the
95% bootstrap interval over the held-out patches pooled over the folds.
"""
import contextlib
import dataclasses
import pathlib
import warnings

import numpy as np

from cisl_jax import metrics as metrics_lib
from cisl_jax import signs
from cisl_jax import workdir as wd

NUM_BOOTSTRAP = 1000
# metrics.classification_metrics keys of the binary task's AC, SE, SP.
BINARY_NAMES = ('accuracy', 'sensitivity_pos', 'specificity_pos')


@dataclasses.dataclass
class Cell:
  """AC, SE, SP of one table cell; NaN where undefined or missing."""
  mean: np.ndarray  # (3,) mean over folds
  std: np.ndarray  # (3,) sample std over folds (NaN with one fold)
  ci: np.ndarray  # (3, 2) 95% bootstrap interval, pooled held-out patches
  num_folds: int
  num_examples: int

  @classmethod
  def missing(cls) -> 'Cell':
    nan = np.full(3, np.nan)
    return cls(nan, nan, np.full((3, 2), np.nan), 0, 0)


def load_predictions(stage_dir) -> tuple[np.ndarray, np.ndarray] | None:
  """(labels, preds) of a finished classifier stage, or None when it has none."""
  npz = pathlib.Path(stage_dir) / wd.PREDICTIONS_FILE
  if not npz.exists():
    return None
  with np.load(npz) as d:
    labels, preds = d['labels'], d['preds']
  return labels.astype(np.int64).reshape(-1), preds.astype(np.int64).reshape(-1)


def stage_predictions(workdir, stage: str,
                      folds=None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """{fold: (labels, preds)} of `stage` over the folds where it finished (of `folds`
  only, if given)."""
  out = {}
  for k, d in wd.fold_dirs(workdir).items():
    if folds is not None and k not in folds:
      continue
    p = load_predictions(d / stage)
    if p is not None:
      out[k] = p
  return out


def binary_acsesp(labels, preds) -> np.ndarray:
  """(AC, SE, SP) of a binary task, class 1 = the sign."""
  m = metrics_lib.classification_metrics(labels, preds, 2)
  return np.array([m[k] for k in BINARY_NAMES], np.float64)


def class_rows(labels, preds, num_classes: int = signs.NUM_CLASSES) -> np.ndarray:
  """(num_classes + 1, 3): per class (AC, SE, SP) of that class against the rest, then
  the table's mean row: the overall multi-class accuracy and the mean SE and SP over the
  classes present in `labels`."""
  m = metrics_lib.classification_metrics(labels, preds, num_classes)
  cm = np.asarray(m['confusion_matrix'], np.float64)
  n = cm.sum()
  tp = np.diag(cm)
  wrong = (cm.sum(axis=1) - tp) + (cm.sum(axis=0) - tp)  # missed + false alarms per class
  ovr = (n - wrong) / n if n else np.full(num_classes, np.nan)
  per_class = np.stack([ovr, m['sensitivity'], m['specificity']], axis=1)
  # Mean SE and SP over the classes present: an absent class's SP (1 unless predicted)
  # would pull the mean towards a figure nothing measured.
  present = cm.sum(axis=1) > 0
  with _quiet():
    mean = [m['accuracy'], float(np.nanmean(per_class[present, 1])) if present.any()
            else np.nan, float(np.nanmean(per_class[present, 2])) if present.any() else np.nan]
  return np.concatenate([per_class, np.array([mean], np.float64)])


def class_acsesp(labels, preds, cls: int | None,
                 num_classes: int = signs.NUM_CLASSES) -> np.ndarray:
  """(AC, SE, SP) of one class against the rest, or for cls=None the mean row."""
  return class_rows(labels, preds, num_classes)[num_classes if cls is None else cls]


def _summarise(per_fold: list[np.ndarray], pooled_labels, pooled_preds, num_classes: int,
               fn) -> Cell:
  """Fold mean/std plus the pooled bootstrap interval of `fn(labels, preds)`, a vector of
  (AC, SE, SP) triples (one triple, or one per table row); fn may also be a tuple of
  metric names that metrics.bootstrap_ci computes vectorised."""
  if not per_fold:
    return Cell.missing()
  stacked = np.stack(per_fold)
  width = stacked.shape[1]
  with _quiet():
    mean = np.nanmean(stacked, axis=0)
    std = (np.nanstd(stacked, axis=0, ddof=1) if len(per_fold) > 1
           else np.full(width, np.nan))
  if isinstance(fn, tuple):
    ci = metrics_lib.bootstrap_ci(pooled_labels, pooled_preds, num_classes, metrics=fn,
                                  num_samples=NUM_BOOTSTRAP, seed=0)
    ci = [ci[name] for name in fn]
  else:
    ci = metrics_lib.bootstrap_ci(
        pooled_labels, pooled_preds, num_classes,
        metrics=lambda y, p: dict(enumerate(fn(y, p))),
        num_samples=NUM_BOOTSTRAP, seed=0)
    ci = [ci[i] for i in range(width)]
  return Cell(mean, std, np.array(ci), len(per_fold),
              int(pooled_labels.size))


@contextlib.contextmanager
def _quiet():
  """Silences numpy's mean-of-empty warnings (a missing figure is NaN by design)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    yield


def binary_cell(workdir, stage: str) -> Cell:
  """Table I cell of one sign and method: `stage` is e.g. 'binary_GGO_finetune'."""
  preds = stage_predictions(workdir, stage)
  if not preds:
    return Cell.missing()
  per_fold = [binary_acsesp(y, p) for y, p in preds.values()]
  y = np.concatenate([v[0] for v in preds.values()])
  p = np.concatenate([v[1] for v in preds.values()])
  return _summarise(per_fold, y, p, 2, BINARY_NAMES)


def binary_mean_cell(workdir, stages: list[str]) -> Cell:
  """Table I mean row: the mean over signs, per fold; the interval resamples the
  patches of all signs pooled (each keeps its sign, so the mean is over signs)."""
  by_stage = {s: stage_predictions(workdir, s) for s in stages}
  folds = sorted(set.intersection(*[set(v) for v in by_stage.values()])) if stages else []
  if not folds:
    return Cell.missing()
  n = len(stages)
  per_fold = []
  for k in folds:
    with _quiet():
      per_fold.append(np.nanmean([binary_acsesp(*by_stage[s][k]) for s in stages], axis=0))
  # Encode (sign, label) as one code so one resample keeps each patch's sign.
  ys, ps = [], []
  for i, s in enumerate(stages):
    for k in folds:
      y, p = by_stage[s][k]
      ys.append(2 * i + y)
      ps.append(2 * i + p)

  def mean_over_signs(y, p):
    rows = []
    for i in range(n):
      sel = (y // 2) == i
      if sel.any():
        rows.append(binary_acsesp(y[sel] % 2, p[sel] % 2))
    with _quiet():
      return np.nanmean(rows, axis=0)

  return _summarise(per_fold, np.concatenate(ys), np.concatenate(ps), 2 * n,
                    mean_over_signs)


def class_cells(workdir, stage: str, num_classes: int = signs.NUM_CLASSES,
                folds=None) -> dict[int | None, Cell]:
  """Table II cells of one method: {class code: Cell} plus None for the mean row. One
  bootstrap serves every row (each resample recomputes all classes). `folds`: only
  those folds (default: every fold where the stage finished)."""
  preds = stage_predictions(workdir, stage, folds)
  rows = list(range(num_classes)) + [None]
  if not preds:
    return {r: Cell.missing() for r in rows}

  def fn(y, p):
    return class_rows(y, p, num_classes).reshape(-1)

  per_fold = [fn(y, p) for y, p in preds.values()]
  y = np.concatenate([v[0] for v in preds.values()])
  p = np.concatenate([v[1] for v in preds.values()])
  whole = _summarise(per_fold, y, p, num_classes, fn)
  # A class with no held-out patch is not measured (its one-against-the-rest AC would
  # be 1 and its SP count false alarms only): missing, not a perfect row.
  present = np.bincount(y, minlength=num_classes) > 0
  return {r: Cell(whole.mean[3 * i:3 * i + 3], whole.std[3 * i:3 * i + 3],
                  whole.ci[3 * i:3 * i + 3], whole.num_folds, whole.num_examples)
          if r is None or present[r] else Cell.missing() for i, r in enumerate(rows)}


def class_cell(workdir, stage: str, cls: int | None) -> Cell:
  """Table II cell of one class (or the mean row, cls=None) and method."""
  return class_cells(workdir, stage)[cls]


def pooled_confusion(workdir, stage: str, num_classes: int) -> np.ndarray | None:
  """Confusion matrix of `stage` summed over the folds, or None when none finished."""
  preds = stage_predictions(workdir, stage)
  if not preds:
    return None
  return sum(metrics_lib.confusion_matrix(y, p, num_classes) for y, p in preds.values())
