"""The CVAE-GAN recipes: the paper's objective, or one improved from data-efficient GANs.

`paper`: cisl_jax.losses as the paper gives it. Prior samples reach the discriminator
only through mean feature matching at weight 1e-3 while reconstructions are pulled to
the input by an L2 summed over pixels: in effect a CVAE, whose samples are blurred.

`improved` adds switchable pieces (each off at its zero / empty value, so that an
ablation can add them one at a time; `config.gan.improved` holds them):
  adversarial, adv_weight, adv_rec_weight: a direct generator term on D's logits of
      prior samples (and, times adv_rec_weight, of reconstructions), 'ns'
      (non-saturating) or 'hinge'; D's own loss follows the same kind;
  diffaugment: DiffAugment policy for every D input (cisl_jax/diffaugment.py);
  color_strength: scales DiffAugment's colour ranges (1: the authors');
  lecam_weight, lecam_decay: LeCam regularisation of D (Tseng et al. 2021);
  r1_gamma, r1_every: R1 gradient penalty of D on real inputs (Mescheder et al. 2018),
      lazily: on every r1_every-th iteration, at r1_every times gamma (StyleGAN2);
  ema_decay: an exponential moving average of the decoder, used for sampling;
  class_weight: the auxiliary classifier's cross-entropy on prior samples (AC-GAN);
  pixel_weight: scales the pixel L2 alone (pairwise feature matching keeps its weight);
  upsample: the decoder's 'transposed' convolutions, 'resize' (nearest x2, then conv)
      or 'bilinear' (bilinear x2, then conv);
  mode_seeking_weight: MSGAN's mode-seeking term on prior samples of the same sign;
  classifier_augment: DiffAugment policy for the auxiliary classifier's real input in
      its own update (step 1 of the iteration), against C memorising the real patches;
  noise_inputs: StyleGAN's per-pixel noise after each of the decoder's upsampling
      convolutions (cvae_gan.NoiseInput), a source for detail that no code decides;
  intensity_weight: matches the intensity histogram of prior samples to the real
      batch's, sign by sign (`intensity_matching`, a Cramer distance): DiffAugment's
      colour transform, which D needs on a few hundred patches, hides absolute density
      from D;
  real_symmetry: each real patch of the iteration under a random mirror ('flip') or
      square symmetry ('dihedral'; augment.random_symmetry) before E, D and C see it:
      dataset augmentation of the few hundred real patches (StyleGAN2-ADA's x-flips).
Everything here is a pure function; the trainer (cisl_jax/train/gan.py) wires them in.
"""
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from cisl_jax import augment
from cisl_jax import losses
from cisl_jax.models import cvae_gan

RECIPES = ('paper', 'improved')
ADVERSARIAL = ('ns', 'hinge')


def improved_config() -> ml_collections.ConfigDict:
  """The improved recipe's pieces, every one on at its measured setting.

  Every piece together was the best arm of bench/ablate_gan.py at the demo's budget on
  both phantom builds measured (BUILD_NOTES, "CVAE-GAN recipes"); `all_off` switches
  them all off, and each can be switched off alone by its zero value.
  """
  c = config_dict.ConfigDict()
  c.adversarial = 'ns'  # D/G adversarial loss kind: 'ns' (non-saturating) or 'hinge'
  c.adv_weight = 10.0  # direct adversarial term on prior samples (0: off)
  c.adv_rec_weight = 1.0  # the same on reconstructions, relative to adv_weight
  c.diffaugment = 'color,translation,cutout'  # DiffAugment on every D input ('': off)
  c.color_strength = 1.0  # scales DiffAugment's brightness/contrast ranges (1: the authors')
  c.lecam_weight = 0.01  # LeCam regulariser of D (0: off)
  c.lecam_decay = 0.99  # EMA decay of D's mean logits, LeCam's anchors
  c.r1_gamma = 0.0  # R1 penalty of D on its real inputs, gamma / 2 * E||grad||^2 (0: off)
  c.r1_every = 16  # lazy R1: on every 16th iteration, at 16 * r1_gamma (StyleGAN2's)
  c.ema_decay = 0.999  # EMA of the decoder for sampling (0: off; warmed up over early steps)
  c.class_weight = 1.0  # auxiliary classifier's cross-entropy on prior samples (0: off)
  c.pixel_weight = 0.1  # factor on the pixel L2 of reconstructions (1: the paper's)
  c.upsample = 'resize'  # decoder upsampling: 'transposed', 'resize' or 'bilinear'
  c.mode_seeking_weight = 0.0  # MSGAN mode-seeking term on prior samples (0: off)
  c.classifier_augment = ''  # DiffAugment on C's real input in C's update ('': off)
  c.noise_inputs = False  # StyleGAN noise inputs in the decoder (False: off)
  c.intensity_weight = 0.0  # per-sign intensity-histogram matching of prior samples (0: off)
  c.real_symmetry = ''  # random 'flip' or 'dihedral' symmetry of each real patch ('': off)
  return c


def all_off(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`c` with every piece off: the improved recipe then computes the paper's objective."""
  c.adv_weight, c.diffaugment, c.lecam_weight = 0.0, '', 0.0
  c.ema_decay, c.class_weight, c.pixel_weight, c.upsample = 0.0, 0.0, 1.0, 'transposed'
  c.mode_seeking_weight, c.classifier_augment, c.r1_gamma = 0.0, '', 0.0
  c.noise_inputs, c.intensity_weight, c.real_symmetry = False, 0.0, ''
  return c


def check(recipe: str, improved: Mapping[str, Any]) -> None:
  if recipe not in RECIPES:
    raise ValueError(f'unknown config.gan.recipe {recipe!r}; use one of {RECIPES}')
  if improved['adversarial'] not in ADVERSARIAL:
    raise ValueError(f"unknown config.gan.improved.adversarial {improved['adversarial']!r}; "
                     f'use one of {ADVERSARIAL}')
  if improved['upsample'] not in cvae_gan.UPSAMPLE:
    raise ValueError(f"unknown config.gan.improved.upsample {improved['upsample']!r}; "
                     f'use one of {cvae_gan.UPSAMPLE}')
  if improved.get('real_symmetry', '') not in augment.SYMMETRIES:
    raise ValueError(f"unknown config.gan.improved.real_symmetry "
                     f"{improved['real_symmetry']!r}; use one of {augment.SYMMETRIES}")
  if int(improved.get('r1_every', 1)) < 1:
    raise ValueError(f"config.gan.improved.r1_every must be >= 1, got "
                     f"{improved['r1_every']!r} (1: R1 on every iteration)")


def generator_adversarial(fake_logits: jax.Array, kind: str) -> jax.Array:
  """G's term on D's logits of fakes: non-saturating -log D(x), or hinge -D(x)."""
  if kind == 'hinge':
    return -jnp.mean(fake_logits)
  return losses.sigmoid_cross_entropy(fake_logits, 1.0)


def discriminator_adversarial(real_logits: jax.Array, *fake_logits: jax.Array,
                              kind: str) -> jax.Array:
  """D's loss: real as real, each fake set as fake (summed over the fake sets).

  'ns' with two fake sets is exactly losses.discriminator_loss (the paper's).
  """
  if kind == 'hinge':
    loss = jnp.mean(jax.nn.relu(1.0 - real_logits))
    fake = lambda f: jnp.mean(jax.nn.relu(1.0 + f))
  else:
    loss = losses.sigmoid_cross_entropy(real_logits, 1.0)
    fake = lambda f: losses.sigmoid_cross_entropy(f, 0.0)
  for f in fake_logits:  # left to right, as the paper's sum: the same float rounding
    loss = loss + fake(f)
  return loss


def init_lecam() -> dict[str, jax.Array]:
  """LeCam's anchors: running means of D's logits on real and on fake inputs."""
  return {'real': jnp.zeros((), jnp.float32), 'fake': jnp.zeros((), jnp.float32)}


def lecam(real_logits: jax.Array, fake_logits: jax.Array, anchors: Mapping[str, jax.Array],
          decay: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """LeCam regulariser (Tseng et al. 2021) and the updated anchors.

  ||relu(D(x) - a_fake)||^2 + ||relu(a_real - D(G(z)))||^2 (batch means): keeps D's
  real and fake predictions from drifting apart, which limited data otherwise lets
  them do. The anchors are exponential averages of D's mean logits (no gradient).
  """
  reg = (jnp.mean(jnp.square(jax.nn.relu(real_logits - anchors['fake'])))
         + jnp.mean(jnp.square(jax.nn.relu(anchors['real'] - fake_logits))))
  new = {'real': decay * anchors['real'] + (1 - decay) * jnp.mean(real_logits),
         'fake': decay * anchors['fake'] + (1 - decay) * jnp.mean(fake_logits)}
  return reg, jax.lax.stop_gradient(new)


def r1_penalty(logits_and_aux: Callable[[jax.Array], tuple[jax.Array, Any]],
               images: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
  """R1 (Mescheder et al. 2018): E ||grad_x D(x)||^2 / 2 on real inputs, with D's output.

  `logits_and_aux(images) -> (logits, aux)` is D on the (augmented) real batch; returns
  (penalty, logits, aux). The trainer calls it on a second forward of D in its plain
  layer forms (layers.plain_forms), whose second derivative is the cheaper one.
  Penalising D's slope at the data keeps it from growing sharp around a few hundred real
  patches, the usual cause of a small-data GAN's training collapse. The gradient is that
  of the batch's summed logits: with BatchNorm in D (the paper's critic) each input's
  gradient also carries its share of the batch statistics.
  """
  def summed(x):
    logits, aux = logits_and_aux(x)
    return jnp.sum(logits), (logits, aux)

  grad, (logits, aux) = jax.grad(summed, has_aux=True)(images)
  penalty = 0.5 * jnp.mean(jnp.sum(jnp.square(grad).reshape(grad.shape[0], -1), axis=-1))
  return penalty, logits, aux


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """The EMA's decay at `step`: min(decay, (1 + step) / (10 + step)).

  The warm-up (as tf.train.ExponentialMovingAverage's num_updates) lets a short run's
  average forget the random initialisation instead of being dominated by it.
  """
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema: Any, new: Any, decay: jax.Array) -> Any:
  """decay * ema + (1 - decay) * new, leaf by leaf."""
  return jax.tree.map(lambda e, n: decay * e + (1 - decay) * n, ema, new)


def pairwise_l1_within_groups(values: jax.Array, labels: jax.Array) -> jax.Array:
  """sum over pairs i < j with labels[i] == labels[j] of mean_k |values[i, k] - values[j, k]|.

  values (B, K). Computed by sorting instead of forming the (B, B, K) differences: for
  n values sorted within a group, sum_{i<j} |a_i - a_j| = sum_r (2r - n + 1) a_(r), rank r
  from 0. One sort of the (label, value) pairs along the batch per column puts each group
  in a contiguous, value-ordered block; the quick GAN's 32 x 32 x 4,096 differences and
  their gradient took ~15 % of its iteration. The same value up to float rounding; the
  gradient is the pairwise one wherever no two values of a group tie exactly.
  """
  b, k = values.shape
  key = jnp.broadcast_to(labels[:, None], (b, k))
  _, ordered = jax.lax.sort((key, values), dimension=0, num_keys=2)
  # The label column sorts the same way in every column: ranks and group sizes per row.
  sorted_labels = jnp.sort(labels)
  start = jnp.sum(labels[None, :] < sorted_labels[:, None], axis=1)
  size = jnp.sum(labels[None, :] == sorted_labels[:, None], axis=1)
  coef = (2 * (jnp.arange(b) - start) - size + 1).astype(values.dtype)
  return jnp.sum(coef * jnp.mean(ordered, axis=1))


def mode_seeking(images: jax.Array, latents: jax.Array, labels: jax.Array,
                 eps: float = 1e-5) -> jax.Array:
  """MSGAN's mode-seeking term (Mao et al. 2019) over the batch's same-sign pairs.

  1 / (mean |G(z_i, c) - G(z_j, c)| / mean |z_i - z_j| + eps), the means over every pair
  i < j of prior samples whose signs agree: two latent codes of one condition, as MSGAN
  draws them, taken from the batch instead of a second decoder forward. Minimising it
  pushes samples of one sign apart in proportion to their codes' distance, against the
  mode collapse that leaves a sign with near-copies. 0 when no two samples share a sign.
  """
  num_pairs = (jnp.sum(labels[:, None] == labels[None, :]) - labels.shape[0]) // 2
  d_image = pairwise_l1_within_groups(images.reshape(images.shape[0], -1), labels)
  latents = jax.lax.stop_gradient(latents.reshape(latents.shape[0], -1))
  d_latent = pairwise_l1_within_groups(latents, labels)
  ratio = d_image / jnp.maximum(d_latent, eps)
  return jnp.where(num_pairs > 0, 1.0 / (ratio + eps), 0.0)


def intensity_matching(fake: jax.Array, real: jax.Array, labels: jax.Array,
                       num_signs: int, bins: int = 256) -> jax.Array:
  """The Cramer distance between the pixel values of `fake` and `real`, sign by sign.

  For each sign, the integral of the squared difference of the two batches' intensity
  CDFs over [-1, 1], weighted by the sign's share of the batch and times the pixels of
  an image (the pixel L2's per-example sum, losses.l2_reconstruction, so the weights
  compare). Only the histograms are matched, not any image's layout, and `real` gets no
  gradient. The Cramer distance rather than the Wasserstein one: its gradient from a
  sampled target is unbiased (Bellemare et al. 2017), and the target here is a handful
  of real patches per sign. The CDFs come from histograms of `bins` bins with linear
  interpolation between bin edges (one scatter-add, where sorting the 131,072 pixels of
  a quick batch cost 21 % of the iteration).

  fake and real (B, H, W, C) share `labels` (the prior samples are drawn for the real
  batch's signs), so each sign holds as many pixels in both.
  """
  b, pixels = fake.shape[0], fake[0].size
  width = 2.0 / bins
  segment = jnp.repeat(labels, pixels) * (bins + 1)

  def cdf(x):
    pos = (jnp.clip(x.reshape(-1), -1.0, 1.0) + 1.0) / width
    lower = jnp.minimum(jnp.floor(pos), bins - 1)
    upper_share = pos - lower
    bin_ = segment + lower.astype(jnp.int32)  # each pixel splits between bin_ and bin_ + 1
    hist = jax.ops.segment_sum(jnp.concatenate([1.0 - upper_share, upper_share]),
                               jnp.concatenate([bin_, bin_ + 1]),
                               num_segments=num_signs * (bins + 1))
    return jnp.cumsum(hist.reshape(num_signs, bins + 1), axis=1)

  count = jnp.bincount(labels, length=num_signs).astype(fake.dtype)  # images per sign
  diff = (cdf(fake) - cdf(jax.lax.stop_gradient(real))) / jnp.maximum(count * pixels, 1)[:, None]
  per_sign = jnp.sum(jnp.square(diff), axis=1) * width
  return pixels * jnp.sum(count * per_sign) / b


def improved_generator_loss(terms: Mapping[str, jax.Array], weights: Mapping[str, float],
                            improved: Mapping[str, Any]) -> jax.Array:
  """The paper's generator objective with the pixel L2 rescaled, plus the new terms.

  terms: the paper's (losses.generator_loss) plus 'adv_prior', 'adv_rec', 'class_prior'
  and, with mode seeking on, 'mode_seeking', with intensity matching on,
  'intensity_prior'.
  With every piece off (all_off) this is losses.generator_loss(terms, weights).
  """
  paper_terms = {k: terms[k] for k in ('kl', 'reconstruction', 'pairwise_d', 'pairwise_c',
                                       'mean_d', 'mean_c')}
  paper_terms['reconstruction'] = float(improved['pixel_weight']) * terms['reconstruction']
  loss = losses.generator_loss(paper_terms, weights)
  adv_w = float(improved['adv_weight'])
  if adv_w:
    loss = loss + adv_w * (terms['adv_prior']
                           + float(improved['adv_rec_weight']) * terms['adv_rec'])
  if float(improved['class_weight']):
    loss = loss + float(improved['class_weight']) * terms['class_prior']
  # .get: a workdir written before mode seeking existed has no such field.
  if float(improved.get('mode_seeking_weight', 0.0)):
    loss = loss + float(improved['mode_seeking_weight']) * terms['mode_seeking']
  if float(improved.get('intensity_weight', 0.0)):
    loss = loss + float(improved['intensity_weight']) * terms['intensity_prior']
  return loss
