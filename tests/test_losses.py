"""Losses on inputs whose answers are known by hand."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cisl_jax import losses


def test_kl_divergence():
  assert float(losses.kl_divergence(jnp.zeros((4, 8)), jnp.zeros((4, 8)))) == 0.0
  # mu = 1, var = 1: 0.5 * mu^2 per unit, summed over 8 units (per example).
  np.testing.assert_allclose(losses.kl_divergence(jnp.ones((4, 8)), jnp.zeros((4, 8))), 4.0)
  # mu = 0, var = e: 0.5 * (e - 1 - 1) per unit, 3 units.
  np.testing.assert_allclose(losses.kl_divergence(jnp.zeros((2, 3)), jnp.ones((2, 3))),
                             3 * 0.5 * (math.e - 2), rtol=1e-6)


def test_l2_reconstruction_and_pairwise():
  a, b = jnp.full((2, 4, 4, 1), 1.0), jnp.full((2, 4, 4, 1), -1.0)
  # 0.5 * 2^2 per pixel, summed over 16 pixels (per example).
  np.testing.assert_allclose(losses.l2_reconstruction(a, b), 32.0)
  np.testing.assert_allclose(losses.pairwise_feature_matching(a, b), 2.0)
  # Real features are targets only.
  g = jax.grad(losses.pairwise_feature_matching, argnums=1)(a, b)
  assert float(jnp.abs(g).max()) == 0.0


def test_pairwise_is_paired_not_pooled():
  real = jnp.array([[1.0], [-1.0]])
  swapped = real[::-1]
  assert float(losses.mean_feature_matching(swapped, real)) == 0.0
  np.testing.assert_allclose(losses.pairwise_feature_matching(swapped, real), 2.0)


def test_mean_feature_matching():
  fake = jnp.array([[2.0, 0.0], [0.0, 0.0]])  # mean (1, 0)
  real = jnp.array([[0.0, 1.0], [0.0, -1.0]])  # mean (0, 0)
  np.testing.assert_allclose(losses.mean_feature_matching(fake, real), 0.5)


def test_classwise_mean_feature_matching_uses_running_means():
  state = losses.init_class_means(3, 2)
  state = {'means': state['means'].at[2].set(jnp.array([1.0, 1.0])),
           'seen': state['seen'].at[2].set(1.0)}
  real = jnp.array([[2.0, 0.0], [4.0, 0.0], [0.0, 2.0]])
  real_labels = jnp.array([0, 0, 1])
  fake = jnp.array([[3.0, 1.0], [0.0, 0.0], [1.0, 3.0]])
  fake_labels = jnp.array([0, 1, 2])
  loss, new = losses.classwise_mean_feature_matching(fake, fake_labels, real, real_labels,
                                                     state, momentum=0.9)
  # class 0: fake (3,1) vs batch mean (3,0) -> 0.5; class 1: (0,0) vs (0,2) -> 2;
  # class 2 absent from the real batch: (1,3) vs running (1,1) -> 2.
  np.testing.assert_allclose(loss, 4.5)
  # First sighting takes the batch mean; the seen class 2 keeps its running mean.
  np.testing.assert_allclose(new['means'], [[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  np.testing.assert_array_equal(new['seen'], [1.0, 1.0, 1.0])
  # A second batch blends with momentum.
  _, newer = losses.classwise_mean_feature_matching(
      fake[:1], fake_labels[:1], jnp.array([[13.0, 10.0]]), jnp.array([0]), new, 0.9)
  np.testing.assert_allclose(newer['means'][0], [0.9 * 3 + 0.1 * 13, 0.1 * 10.0], rtol=1e-6)


def test_classwise_skips_classes_never_seen():
  state = losses.init_class_means(2, 1)
  loss, new = losses.classwise_mean_feature_matching(
      jnp.array([[5.0]]), jnp.array([1]), jnp.array([[1.0]]), jnp.array([0]), state)
  assert float(loss) == 0.0
  np.testing.assert_array_equal(new['seen'], [1.0, 0.0])


def test_discriminator_and_classifier_losses():
  zeros = jnp.zeros((4, 1))
  np.testing.assert_allclose(losses.discriminator_loss(zeros, zeros, zeros), 3 * math.log(2),
                             rtol=1e-6)
  confident = losses.discriminator_loss(jnp.full((4, 1), 30.0), jnp.full((4, 1), -30.0),
                                        jnp.full((4, 1), -30.0))
  assert float(confident) < 1e-6
  np.testing.assert_allclose(losses.classifier_loss(jnp.zeros((5, 9)), jnp.arange(5)),
                             math.log(9), rtol=1e-6)


def test_softmax_cross_entropy_mask():
  logits = jnp.array([[10.0, -10.0], [-10.0, 10.0]])
  labels = jnp.array([0, 0])  # the second is wrong but masked out
  assert float(losses.softmax_cross_entropy(logits, labels, jnp.array([1.0, 0.0]))) < 1e-6


def test_generator_loss_weights():
  terms = {k: jnp.asarray(1.0) for k in
           ('kl', 'reconstruction', 'pairwise_d', 'pairwise_c', 'mean_d', 'mean_c')}
  np.testing.assert_allclose(losses.generator_loss(terms), 3 + 3 + 2e-3, rtol=1e-6)
  cfg = ml_collections.ConfigDict({'kl': 1.0, 'pairwise': 0.0, 'mean_d': 1.0, 'mean_c': 0.0})
  np.testing.assert_allclose(losses.generator_loss(terms, cfg), 2.0)
  with pytest.raises(ValueError, match='klx'):
    losses.generator_loss(terms, {'klx': 1.0})
