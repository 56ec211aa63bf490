"""Metrics against answers worked out by hand, bootstrap intervals, fold aggregation."""
import json
import math

import numpy as np
import pytest

from cisl_jax import metrics

# Three classes, ten patches:
#   labels 0 0 0 0 1 1 1 2 2 2
#   preds  0 0 1 2 1 1 0 2 2 2
# Confusion matrix (rows true, columns predicted):
#   [[2, 1, 1],
#    [1, 2, 0],
#    [0, 0, 3]]
# accuracy = (2 + 2 + 3) / 10 = 0.7
# sensitivity = 2/4, 2/3, 3/3
# specificity: class 0: 6 negatives, 1 of them predicted 0 -> 5/6;
#              class 1: 7 negatives, 1 predicted 1 -> 6/7; class 2: 7 negatives, 1 -> 6/7.
LABELS3 = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS3 = [0, 0, 1, 2, 1, 1, 0, 2, 2, 2]

# Binary task, class 1 = sign: TP 3, FN 1, TN 4, FP 2.
# AC = 7/10, SE = 3/4, SP = 4/6.
LABELS2 = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
PREDS2 = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]


def test_confusion_matrix_by_hand():
  cm = metrics.confusion_matrix(LABELS3, PREDS3, 3)
  np.testing.assert_array_equal(cm, [[2, 1, 1], [1, 2, 0], [0, 0, 3]])
  assert cm.dtype == np.int64


def test_multiclass_metrics_by_hand():
  m = metrics.classification_metrics(LABELS3, PREDS3, 3)
  assert m['num_examples'] == 10
  assert m['accuracy'] == pytest.approx(0.7)
  np.testing.assert_allclose(m['sensitivity'], [0.5, 2 / 3, 1.0])
  np.testing.assert_allclose(m['specificity'], [5 / 6, 6 / 7, 6 / 7])
  assert m['mean_sensitivity'] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
  assert m['balanced_accuracy'] == pytest.approx(13 / 18)
  assert m['mean_specificity'] == pytest.approx(107 / 126)
  assert m['support'] == [4, 3, 3]
  assert m['confusion_matrix'] == [[2, 1, 1], [1, 2, 0], [0, 0, 3]]
  assert 'sensitivity_pos' not in m


def test_binary_metrics_by_hand():
  m = metrics.classification_metrics(LABELS2, PREDS2, 2)
  assert m['accuracy'] == pytest.approx(0.7)
  assert m['sensitivity_pos'] == pytest.approx(0.75)
  assert m['specificity_pos'] == pytest.approx(4 / 6)
  # One against the rest for class 0 swaps the roles: SE0 = SP1 and SP0 = SE1.
  np.testing.assert_allclose(m['sensitivity'], [4 / 6, 0.75])
  np.testing.assert_allclose(m['specificity'], [0.75, 4 / 6])
  assert m['confusion_matrix'] == [[4, 2], [1, 3]]


def test_absent_class_is_nan_and_means_skip_it():
  # Class 2 never occurs in the labels but is predicted once:
  #   [[1, 0, 1], [0, 2, 0], [0, 0, 0]]
  # sensitivity 1/2, 2/2, undefined; specificity 2/2, 2/2, 3/4.
  m = metrics.classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], 3)
  assert math.isnan(m['sensitivity'][2])
  assert m['mean_sensitivity'] == pytest.approx(0.75)  # nanmean of 0.5 and 1.0
  np.testing.assert_allclose(m['specificity'], [1.0, 1.0, 0.75])
  assert m['mean_specificity'] == pytest.approx(11 / 12)


def test_every_label_one_class_leaves_specificity_undefined():
  m = metrics.classification_metrics([1, 1, 1], [1, 0, 1], 2)
  assert math.isnan(m['specificity_pos'])
  assert m['sensitivity_pos'] == pytest.approx(2 / 3)


def test_metrics_are_json_round_trippable():
  m = metrics.classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], 3)
  m['ci'] = metrics.bootstrap_ci([0, 0, 1, 1], [0, 2, 1, 1], 3, num_samples=20)
  back = json.loads(json.dumps(m))
  assert back['accuracy'] == m['accuracy']
  assert math.isnan(back['sensitivity'][2])
  assert back['confusion_matrix'] == m['confusion_matrix']


@pytest.mark.parametrize('labels,preds,k,match', [
    ([0, 1], [0], 2, 'differ in length'),
    ([0, 3], [0, 1], 3, r'labels hold codes outside \[0, 3\)'),
    ([0, 1], [0, -1], 2, 'preds hold codes outside'),
    ([0, 1], [0.2, 0.9], 2, 'integer class codes'),
    ([0, 0], [0, 0], 1, 'at least 2'),
])
def test_bad_inputs_are_refused(labels, preds, k, match):
  with pytest.raises(ValueError, match=match):
    metrics.classification_metrics(labels, preds, k)


def _noisy_predictions(n, num_classes, accuracy, seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n)
  wrong = rng.random(n) > accuracy
  preds = np.where(wrong, (labels + rng.integers(1, num_classes, n)) % num_classes, labels)
  return labels, preds


def test_bootstrap_contains_estimate_and_shrinks_with_more_data():
  labels, preds = _noisy_predictions(60, 3, 0.7, seed=1)
  point = metrics.classification_metrics(labels, preds, 3)
  small = metrics.bootstrap_ci(labels, preds, 3, num_samples=500)
  assert set(small) == set(metrics.SCALAR_KEYS)
  for key, (low, high) in small.items():
    assert low <= point[key] <= high, key
  # Ten copies of the same patches: the same point estimate, a much narrower interval.
  big = metrics.bootstrap_ci(np.tile(labels, 10), np.tile(preds, 10), 3, num_samples=500)
  for key in small:
    low, high = big[key]
    assert low <= point[key] <= high
    assert high - low < 0.5 * (small[key][1] - small[key][0]), key


def test_bootstrap_is_deterministic_from_the_seed():
  labels, preds = _noisy_predictions(40, 2, 0.8, seed=2)
  a = metrics.bootstrap_ci(labels, preds, 2, num_samples=200, seed=3)
  b = metrics.bootstrap_ci(labels, preds, 2, num_samples=200, seed=3)
  c = metrics.bootstrap_ci(labels, preds, 2, num_samples=200, seed=4)
  assert a == b
  assert a != c
  assert set(a) == set(metrics.SCALAR_KEYS + metrics.BINARY_KEYS)


def test_bootstrap_wider_level_gives_wider_interval():
  labels, preds = _noisy_predictions(50, 2, 0.75, seed=5)
  ci95 = metrics.bootstrap_ci(labels, preds, 2, 'accuracy', num_samples=400)['accuracy']
  ci50 = metrics.bootstrap_ci(labels, preds, 2, 'accuracy', num_samples=400,
                              alpha=0.5)['accuracy']
  assert ci95[0] <= ci50[0] <= ci50[1] <= ci95[1]
  assert ci95[1] - ci95[0] > ci50[1] - ci50[0]


def test_bootstrap_matches_a_metric_function():
  labels, preds = _noisy_predictions(30, 3, 0.6, seed=6)
  by_name = metrics.bootstrap_ci(labels, preds, 3, ['accuracy'], num_samples=100, seed=7)
  by_fn = metrics.bootstrap_ci(labels, preds, 3, lambda y, p: float(np.mean(y == p)),
                               num_samples=100, seed=7)
  # Same seed, same resamples: the vectorised path equals the function path.
  assert by_fn['metric'] == pytest.approx(by_name['accuracy'])


def test_bootstrap_per_class_and_constant_predictions():
  labels = np.array([0] * 10 + [1] * 10)
  ci = metrics.bootstrap_ci(labels, labels, 2, ['sensitivity'], num_samples=50)
  assert ci['sensitivity'] == [(1.0, 1.0), (1.0, 1.0)]
  with pytest.raises(ValueError, match="unknown metric.*'recall'"):
    metrics.bootstrap_ci(labels, labels, 2, ['recall'])
