"""Classification metrics of the paper (AC, SE, SP) with bootstrap intervals.

Pure numpy, so that evaluation, the report and the tests need no accelerator.

Definitions, for labels y and predictions p over N held-out patches and K classes:
- confusion matrix C[i, j]: patches of true class i predicted as j (rows true, columns
  predicted).
- accuracy: trace(C) / N.
- sensitivity of class c (recall, one class against the rest): C[c, c] / sum_j C[c, j];
  NaN when class c is absent from the labels (no positives: undefined, not 0 or 1).
- specificity of class c (one against the rest): true negatives / negatives, where the
  negatives are the patches whose label is not c and a true negative is one of them not
  predicted as c; NaN when every label is c.
- mean_sensitivity, mean_specificity: np.nanmean over the classes, i.e. the mean over
  the classes where the figure is defined (NaN only when no class has it). The mean
  sensitivity is the balanced accuracy; both keys are written so reports can say either.
- binary task (K == 2, class 1 = the sign, class 0 = non-sign): `sensitivity_pos` and
  `specificity_pos` are the plain SE and SP of the paper's Table I, i.e. the sensitivity
  of class 1 and its specificity (= the sensitivity of class 0).

Every dict is JSON-able with the standard `json` module (floats, ints and lists; an
undefined figure is float NaN, which `json` writes and reads back as NaN).

Bootstrap intervals resample the held-out patches with replacement (percentile
method). Patches of one patient are not independent, so the intervals are optimistic
when a patient gives many patches; they show the sampling noise of the test set, not
that of the training.
"""
from collections.abc import Callable, Mapping, Sequence
import math
from typing import Any

import numpy as np

# The scalar metrics that bootstrap_ci reports by default.
SCALAR_KEYS = ('accuracy', 'mean_sensitivity', 'mean_specificity', 'balanced_accuracy')
BINARY_KEYS = ('sensitivity_pos', 'specificity_pos')
PER_CLASS_KEYS = ('sensitivity', 'specificity', 'support')


def _check(labels, preds, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Validates and flattens labels and predictions to int64 vectors."""
  labels = np.asarray(labels).reshape(-1)
  preds = np.asarray(preds).reshape(-1)
  if labels.shape != preds.shape:
    raise ValueError(f'labels ({labels.size}) and preds ({preds.size}) differ in length; '
                     'pass one prediction per held-out patch.')
  if num_classes < 2:
    raise ValueError(f'num_classes must be at least 2, got {num_classes}.')
  for name, values in (('labels', labels), ('preds', preds)):
    if values.size and not np.issubdtype(values.dtype, np.integer):
      if not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f'{name} must be integer class codes (argmax of the logits), '
                         f'got {values.dtype} values such as {values[:3].tolist()}.')
    values = values.astype(np.int64)
    bad = (values < 0) | (values >= num_classes)
    if np.any(bad):
      raise ValueError(f'{name} hold codes outside [0, {num_classes}): '
                       f'{sorted(set(values[bad].tolist()))[:5]}; check num_classes.')
  return labels.astype(np.int64), preds.astype(np.int64)


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """Returns C[true, predicted] as an int64 (num_classes, num_classes) array."""
  labels, preds = _check(labels, preds, num_classes)
  return np.bincount(labels * num_classes + preds,
                     minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den with NaN where den == 0 (an undefined rate, not a warning)."""
  num = np.asarray(num, np.float64)
  den = np.asarray(den, np.float64)
  out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
  np.divide(num, den, out=out, where=den > 0)
  return out


def _nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
  """np.nanmean without the all-NaN warning (the result is NaN there)."""
  count = np.sum(~np.isnan(x), axis=axis)
  total = np.nansum(x, axis=axis)
  return _divide(total, count)


def _from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
  """All metrics from confusion matrices of shape (..., K, K), batched over `...`."""
  cm = np.asarray(cm, np.int64)
  total = cm.sum(axis=(-2, -1))
  tp = np.diagonal(cm, axis1=-2, axis2=-1)
  support = cm.sum(axis=-1)  # true patches per class
  predicted = cm.sum(axis=-2)  # patches predicted per class
  negatives = total[..., None] - support
  true_negatives = negatives - (predicted - tp)
  sensitivity = _divide(tp, support)
  specificity = _divide(true_negatives, negatives)
  out = {
      'accuracy': _divide(tp.sum(axis=-1), total),
      'sensitivity': sensitivity,
      'specificity': specificity,
      'mean_sensitivity': _nanmean(sensitivity),
      'mean_specificity': _nanmean(specificity),
      'support': support,
  }
  out['balanced_accuracy'] = out['mean_sensitivity']
  if cm.shape[-1] == 2:
    out['sensitivity_pos'] = sensitivity[..., 1]
    out['specificity_pos'] = specificity[..., 1]
  return out


def _to_json(value: np.ndarray) -> Any:
  """A numpy value as plain Python floats / ints / nested lists."""
  value = np.asarray(value)
  if np.issubdtype(value.dtype, np.integer):
    return value.tolist()
  return np.asarray(value, np.float64).tolist()


def classification_metrics(labels, preds, num_classes: int) -> dict[str, Any]:
  """AC, per-class SE/SP, their means and the confusion matrix (see module docstring).

  Args:
    labels: true class codes, shape (N,).
    preds: predicted class codes (argmax of the logits), shape (N,).
    num_classes: K; 2 for the binary task (1 = sign), 10 for the 10-class task.

  Returns:
    A JSON-able dict: num_examples, accuracy, sensitivity[K], specificity[K], support[K],
    mean_sensitivity, mean_specificity, balanced_accuracy, confusion_matrix[K][K], and
    for K == 2 sensitivity_pos and specificity_pos.
  """
  cm = confusion_matrix(labels, preds, num_classes)
  out = {'num_examples': int(cm.sum())}
  out.update({k: _to_json(v) for k, v in _from_confusion(cm).items()})
  out['confusion_matrix'] = cm.tolist()
  return out


def _metric_names(names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
  """Default and validated metric names for bootstrap_ci."""
  known = SCALAR_KEYS + PER_CLASS_KEYS[:2] + (BINARY_KEYS if num_classes == 2 else ())
  if names is None:
    return SCALAR_KEYS + (BINARY_KEYS if num_classes == 2 else ())
  names = (names,) if isinstance(names, str) else tuple(names)
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f'bootstrap_ci: unknown metric(s) {unknown}; known for '
                     f'{num_classes} classes: {list(known)}, or pass a function.')
  return names


def bootstrap_ci(labels, preds, num_classes: int,
                 metrics: Sequence[str] | str | Callable[..., Any] | None = None,
                 num_samples: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, Any]:
  """Percentile bootstrap (1 - alpha) intervals over the held-out patches.

  Each of `num_samples` resamples draws N patches with replacement (numpy Generator
  seeded with `seed`, so the result is deterministic) and recomputes the metrics.
  Resamples where a figure is undefined (a class drawn zero times) are left out of
  that figure's percentiles; an interval with no defined resample is (NaN, NaN).

  Args:
    labels: true class codes, shape (N,).
    preds: predicted class codes, shape (N,).
    num_classes: K.
    metrics: names from `classification_metrics` (scalars such as 'accuracy', or the
      per-class 'sensitivity' / 'specificity'), default SCALAR_KEYS (+ BINARY_KEYS when
      K == 2); or a function f(labels, preds) -> float or dict[str, float].
    num_samples: bootstrap resamples.
    seed: seed of the resampling.
    alpha: 0.05 gives 95% intervals.

  Returns:
    {name: (low, high)} for scalars; {name: [(low, high)] * K} for per-class names.
  """
  labels, preds = _check(labels, preds, num_classes)
  if not 0.0 < alpha < 1.0:
    raise ValueError(f'alpha must be in (0, 1), got {alpha}.')
  if num_samples < 1:
    raise ValueError(f'num_samples must be positive, got {num_samples}.')
  n = labels.size
  if n == 0:
    raise ValueError('bootstrap_ci needs at least one held-out patch.')
  rng = np.random.default_rng(seed)
  quantiles = (100 * alpha / 2, 100 * (1 - alpha / 2))

  if callable(metrics):
    samples: dict[str, list[float]] = {}
    for _ in range(num_samples):
      idx = rng.integers(0, n, size=n)
      value = metrics(labels[idx], preds[idx])
      value = value if isinstance(value, Mapping) else {'metric': value}
      for k, v in value.items():
        samples.setdefault(k, []).append(float(v))
    values = {k: np.asarray(v) for k, v in samples.items()}
    names = tuple(values)
  else:
    names = _metric_names(metrics, num_classes)
    # One confusion matrix per resample from a single bincount: fast for 1000 x N.
    idx = rng.integers(0, n, size=(num_samples, n))
    cell = labels[idx] * num_classes + preds[idx]
    offset = np.arange(num_samples)[:, None] * num_classes * num_classes
    cms = np.bincount((cell + offset).reshape(-1),
                      minlength=num_samples * num_classes * num_classes)
    cms = cms.reshape(num_samples, num_classes, num_classes)
    values = _from_confusion(cms)

  out = {}
  for name in names:
    v = np.asarray(values[name], np.float64)
    if v.ndim == 1:
      out[name] = _interval(v, quantiles)
    else:  # per class: (num_samples, K)
      out[name] = [_interval(v[:, c], quantiles) for c in range(v.shape[1])]
  return out


def _interval(v: np.ndarray, quantiles: tuple[float, float]) -> tuple[float, float]:
  """Percentile interval of the defined (non-NaN) values."""
  v = v[~np.isnan(v)]
  if v.size == 0:
    return (math.nan, math.nan)
  low, high = np.percentile(v, quantiles)
  return (float(low), float(high))
