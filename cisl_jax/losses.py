"""CVAE-GAN and classifier losses (Bao et al. 2017, as used in the paper), pure functions.

Generator (encoder + decoder) objective, with the weights of the config
(defaults: KL 3, pairwise 1, mean matching 1e-3 on D and 1e-3 on C):
  kl * KL(q(z|x,c) || N(0, I))                 (summed over latent units)
  + pairwise * (L2(x', x)                      (L2 summed over pixels; both per example) + L2(f_D(x'), f_D(x)) + L2(f_C(x'), f_C(x)))   x' = reconstruction
  + mean_d * ||mean f_D(x) - mean f_D(x_p)||^2 / 2                           x_p = prior sample
  + mean_c * sum_c ||mean f_C(x | c) - mean f_C(x_p | c)||^2 / 2
Real-data features are targets: gradients do not flow into them.
"""
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

DEFAULT_WEIGHTS = {'kl': 3.0, 'pairwise': 1.0, 'mean_d': 1e-3, 'mean_c': 1e-3}


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                          weights: jax.Array | None = None) -> jax.Array:
  """Mean cross-entropy of integer `labels`; `weights` (B,) masks padded examples."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return losses.mean()
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def sigmoid_cross_entropy(logits: jax.Array, target: float) -> jax.Array:
  """Mean binary cross-entropy of logits against a constant target (1 real, 0 fake)."""
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)).mean()


def kl_divergence(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, exp(logvar)) || N(0, I)): summed over latent units, averaged over the batch.

  Summed per example (Bao et al., and VAE practice), as is the L2 reconstruction over
  pixels: the paper's weights (KL 3, L2 1) are only sensible at this normalisation.
  Averaging both instead makes KL x 3 outweigh a pixel-averaged L2 and the posterior
  collapses (quick runs gave pure noise; see BUILD_NOTES).
  """
  per_unit = 1.0 + logvar - jnp.square(mu) - jnp.exp(logvar)
  return -0.5 * jnp.mean(jnp.sum(per_unit.reshape(per_unit.shape[0], -1), axis=-1))


def l2_reconstruction(x_rec: jax.Array, x: jax.Array) -> jax.Array:
  """Half the squared error, summed over pixels and averaged over the batch.

  (The per-example sum, as the KL: see `kl_divergence`.)
  """
  sq = jnp.square(x_rec - jax.lax.stop_gradient(x))
  return 0.5 * jnp.mean(jnp.sum(sq.reshape(sq.shape[0], -1), axis=-1))


def pairwise_feature_matching(fake_features: jax.Array,
                              real_features: jax.Array) -> jax.Array:
  """Half the mean squared error between features of x' and of its real x (paired)."""
  return 0.5 * jnp.mean(jnp.square(fake_features - jax.lax.stop_gradient(real_features)))


def mean_feature_matching(fake_features: jax.Array, real_features: jax.Array) -> jax.Array:
  """Half the squared distance between the batch means of fake and real features."""
  diff = fake_features.mean(0) - jax.lax.stop_gradient(real_features).mean(0)
  return 0.5 * jnp.sum(jnp.square(diff))


def init_class_means(num_classes: int, feature_dim: int) -> dict[str, jax.Array]:
  """Running per-class means of real features: `means` (C, F) and `seen` (C,) 0/1."""
  return {'means': jnp.zeros((num_classes, feature_dim), jnp.float32),
          'seen': jnp.zeros((num_classes,), jnp.float32)}


def _class_sums(features, labels, num_classes):
  onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)  # (B, C)
  counts = onehot.sum(0)
  sums = onehot.T @ features  # (C, F)
  return sums, counts


def classwise_mean_feature_matching(
    fake_features: jax.Array, fake_labels: jax.Array, real_features: jax.Array,
    real_labels: jax.Array, class_means: Mapping[str, jax.Array], momentum: float = 0.9,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """sum over classes c of ||mean f(x_p | c) - mean f(x | c)||^2 / 2, and new running means.

  A class of the fake batch that the real batch lacks is matched against its running
  mean (an exponential average over earlier batches, `momentum` per update); a class
  never seen in any real batch is skipped. Returns (loss, updated class_means).
  """
  num_classes = class_means['means'].shape[0]
  real_features = jax.lax.stop_gradient(real_features)
  real_sums, real_counts = _class_sums(real_features, real_labels, num_classes)
  fake_sums, fake_counts = _class_sums(fake_features, fake_labels, num_classes)
  present = real_counts > 0
  batch_means = real_sums / jnp.maximum(real_counts, 1.0)[:, None]
  old, seen = class_means['means'], class_means['seen']
  blended = jnp.where(seen[:, None] > 0, momentum * old + (1 - momentum) * batch_means,
                      batch_means)
  new_means = jnp.where(present[:, None], blended, old)
  new_seen = jnp.maximum(seen, present.astype(seen.dtype))
  # Target: this batch's class mean where it has the class, else the running mean.
  target = jnp.where(present[:, None], batch_means, old)
  usable = (fake_counts > 0) & (new_seen > 0)
  fake_means = fake_sums / jnp.maximum(fake_counts, 1.0)[:, None]
  per_class = 0.5 * jnp.sum(jnp.square(fake_means - target), axis=-1)
  loss = jnp.sum(jnp.where(usable, per_class, 0.0))
  return loss, {'means': new_means, 'seen': new_seen}


def discriminator_loss(real_logits: jax.Array, rec_logits: jax.Array,
                       prior_logits: jax.Array) -> jax.Array:
  """Real patches as real; reconstructions and prior samples as fake (summed)."""
  return (sigmoid_cross_entropy(real_logits, 1.0) + sigmoid_cross_entropy(rec_logits, 0.0)
          + sigmoid_cross_entropy(prior_logits, 0.0))


def classifier_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The auxiliary classifier's cross-entropy on real patches and their signs."""
  return softmax_cross_entropy(logits, labels)


def generator_loss(terms: Mapping[str, jax.Array],
                   weights: Mapping[str, float] | None = None) -> jax.Array:
  """The encoder + decoder objective from its terms and weights.

  terms: 'kl', 'reconstruction', 'pairwise_d', 'pairwise_c', 'mean_d', 'mean_c'.
  weights: 'kl', 'pairwise' (reconstruction and both pairwise terms), 'mean_d',
  'mean_c'; a ConfigDict works. Missing weights take DEFAULT_WEIGHTS.
  """
  w = dict(DEFAULT_WEIGHTS)
  if weights is not None:
    unknown = set(weights.keys()) - set(w)
    if unknown:
      raise ValueError(f'unknown generator loss weight(s) {sorted(unknown)}; '
                       f'known: {sorted(w)}')
    w.update({k: float(weights[k]) for k in weights.keys()})
  pairwise = terms['reconstruction'] + terms['pairwise_d'] + terms['pairwise_c']
  return (w['kl'] * terms['kl'] + w['pairwise'] * pairwise + w['mean_d'] * terms['mean_d']
          + w['mean_c'] * terms['mean_c'])
