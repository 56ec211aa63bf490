"""Per-sign intensity matching: real densities, the generated layout kept."""
import numpy as np

from cisl_jax import intensity_match


def _patches(rng, n, loc, scale):
  return np.tanh(rng.normal(loc, scale, (n, 64, 64, 1))).astype(np.float32)


def test_each_sign_takes_its_own_real_quantiles_and_keeps_its_pixel_order():
  rng = np.random.default_rng(0)
  # Generated: too bright and too spread (the quick generator's fault); real: tight bands.
  gen = np.concatenate([_patches(rng, 30, 0.2, 0.5), _patches(rng, 20, 0.4, 0.6)])
  labels = np.repeat([0, 3], [30, 20])
  real = np.concatenate([_patches(rng, 12, -0.4, 0.05), _patches(rng, 8, 0.1, 0.2)])
  real_labels = np.repeat([0, 3], [12, 8])
  out, summary = intensity_match.match(gen, labels, real, real_labels)
  assert out.shape == gen.shape and out.dtype == np.float32
  q = np.linspace(0.01, 0.99, 25)
  for s in (0, 3):
    np.testing.assert_allclose(np.quantile(out[labels == s], q),
                               np.quantile(real[real_labels == s], q), atol=2e-3)
    assert abs(summary[s]['median_after'] - summary[s]['median_real']) < 2e-3
    assert summary[s]['median_before'] > summary[s]['median_real'] + 0.1
  # One monotone map per sign: within a sign, a brighter pixel stays at least as bright.
  for s in (0, 3):
    before, after = gen[labels == s].ravel(), out[labels == s].ravel()
    order = np.argsort(before, kind='stable')
    assert (np.diff(after[order]) >= -1e-6).all()
    assert np.corrcoef(before, after)[0, 1] > 0.9  # the layout is the generator's


def test_a_sign_without_real_patches_is_left_as_generated():
  rng = np.random.default_rng(1)
  gen = _patches(rng, 10, 0.0, 0.5)
  labels = np.repeat([1, 2], 5)
  real = _patches(rng, 4, -0.5, 0.1)
  out, summary = intensity_match.match(gen, labels, real, np.full(4, 1))
  np.testing.assert_array_equal(out[labels == 2], gen[labels == 2])
  assert not np.array_equal(out[labels == 1], gen[labels == 1])
  assert sorted(summary) == [1]
