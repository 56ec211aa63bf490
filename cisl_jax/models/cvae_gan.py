"""The paper's CVAE-GAN (Bao et al. 2017) in Flax NNX, layer by layer (Section III-B).

Encoder (input: the image with the one-hot sign as 9 constant channels, 64x64x10):
  (1) conv 5x5 s2, 32, LReLU(0.2)         (2) conv 5x5 s2, 64, BN, LReLU
  (3) conv 5x5 s2, 128, BN, LReLU         (4) conv 5x5 s2, 256, BN, LReLU
  (5) FC 1024, BN, LReLU                  (6) FC 2 * latent_dim (= 128), BN, LReLU
  -> split into (mu, logvar).
Decoder (input: z concatenated with the one-hot sign):
  (1) FC 1024, BN, LReLU                  (2) FC 4096 (= 4x4x256), BN, LReLU
  (3) deconv 5x5 s2, 128, BN, LReLU       (4) deconv 5x5 s2, 64, BN, LReLU
  (5) deconv 5x5 s2, 32, BN, LReLU        (6) deconv 5x5 s2, 1, [BN], tanh
Critic (discriminator with 1 output, auxiliary classifier with 9):
  (1) conv 5x5 s1, 32, BN, ReLU           (2) conv 5x5 s2, 64, BN, ReLU
  (3) conv 5x5 s2, 128, BN, ReLU          (4) FC 512, BN, ReLU -> features
  (5) FC num_outputs -> logits (sigmoid / softmax are left to the losses).
`upsample='resize'` replaces each transposed convolution by a nearest-neighbour x2
resize and a 5x5 stride-1 convolution (Odena et al. 2016: no checkerboard artefacts);
`upsample='bilinear'` the same with a bilinear x2 resize (jax.image.resize).
`noise_inputs=True` adds StyleGAN's per-pixel noise after each upsampling convolution
(NoiseInput); the decoder then takes a `noise_key`.
All convolutions are SAME padded. `width` scales every channel count and hidden FC
size (1.0 = the paper); the latent size and the image channel do not scale.
`fast_conv=False` runs stride-2 (transposed) convolutions and the nearest resize as
plain nnx layers; the default computes the same maps in forms fast on XLA's CPU backend
(layers.py).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from cisl_jax.models.layers import apply_conv
from cisl_jax.models.layers import batch_norm
from cisl_jax.models.layers import conv
from cisl_jax.models.layers import conv_transpose
from cisl_jax.models.layers import down_blocks
from cisl_jax.models.layers import fast_forms_enabled
from cisl_jax.models.layers import resize_conv_stride1
from cisl_jax.models.layers import run_blocks
from cisl_jax.models.layers import scaled
from cisl_jax.models.layers import upsample_nearest2

LEAK = 0.2


def lrelu(x: jax.Array) -> jax.Array:
  return nnx.leaky_relu(x, LEAK)


class Encoder(nnx.Module):
  """`(x, y_onehot) -> (mu, logvar)`, each (B, latent_dim)."""

  def __init__(self, num_classes: int = 9, latent_dim: int = 64, *, width: float = 1.0,
               image_size: int = 64, fast_conv: bool = True, rngs: nnx.Rngs):
    c1, c2, c3, c4 = (scaled(c, width) for c in (32, 64, 128, 256))
    hidden = scaled(1024, width)
    self.num_classes, self.latent_dim = num_classes, latent_dim
    self.conv1 = conv(1 + num_classes, c1, 2, rngs, fast_conv)
    # (2)-(4): conv 5x5 s2 + BN each, as the classifier's trunk.
    (self.conv2, self.bn2), (self.conv3, self.bn3), (self.conv4, self.bn4) = down_blocks(
        (c1, c2, c3, c4), rngs, fast_conv)
    side = -(-image_size // 16)
    self.fc5 = nnx.Linear(side * side * c4, hidden, rngs=rngs)
    self.bn5 = batch_norm(hidden, rngs)
    self.fc6 = nnx.Linear(hidden, 2 * latent_dim, rngs=rngs)
    self.bn6 = batch_norm(2 * latent_dim, rngs)

  def __call__(self, x: jax.Array, y_onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    b, h, w, _ = x.shape
    # The condition enters as constant channels, one per class (as in the peers).
    cond = jnp.broadcast_to(y_onehot[:, None, None, :].astype(x.dtype),
                            (b, h, w, y_onehot.shape[-1]))
    x = jnp.concatenate([x, cond], axis=-1)
    x = lrelu(self.conv1(x))
    x = run_blocks(x, ((self.conv2, self.bn2), (self.conv3, self.bn3), (self.conv4, self.bn4)),
                   lrelu)
    x = x.reshape(b, -1)
    x = lrelu(self.bn5(self.fc5(x)))
    x = lrelu(self.bn6(self.fc6(x)))
    mu, logvar = jnp.split(x, 2, axis=-1)
    return mu, logvar


class ResizeConv(nnx.Module):
  """Nearest-neighbour x2 upsampling, then a SAME 5x5 stride-1 convolution.

  `fast_conv=True` computes it without the upsampled map, as one 3x3 convolution at the
  low resolution to the 4 output phases (layers.resize_conv_stride1); the same kernel and
  bias either way, so checkpoints move between the two.
  """

  def __init__(self, in_features: int, out_features: int, rngs: nnx.Rngs,
               fast_conv: bool = True):
    self.conv = conv(in_features, out_features, 1, rngs, fast_conv)
    self.fast_conv = fast_conv

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.fast_conv and x.ndim == 4 and fast_forms_enabled():
      return apply_conv(self.conv, x, resize_conv_stride1)
    return self.conv(upsample_nearest2(x))


class BilinearResizeConv(nnx.Module):
  """Bilinear x2 upsampling (half-pixel centres, jax.image.resize), then a SAME 5x5
  stride-1 convolution: ResizeConv without nearest-neighbour's 2x2 blocks."""

  def __init__(self, in_features: int, out_features: int, rngs: nnx.Rngs):
    self.conv = conv(in_features, out_features, 1, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    return self.conv(jax.image.resize(x, (b, 2 * h, 2 * w, c), method='bilinear'))


UPSAMPLE = ('transposed', 'resize', 'bilinear')


class NoiseInput(nnx.Module):
  """StyleGAN's noise input (Karras et al. 2019): `x + scale * n`, with n ~ N(0, 1) one
  map per image, shared by the channels, and `scale` learned per channel from 0.

  Fine, unstructured detail (CT noise, the exact course of small vessels) is not a
  function of the sign and a 64-d code; with no noise the decoder can only imitate it
  with deterministic texture, which it draws as periodic patterns.
  """

  def __init__(self, features: int):
    self.scale = nnx.Param(jnp.zeros((features,), jnp.float32))

  def __call__(self, x: jax.Array, key: jax.Array) -> jax.Array:
    noise = jax.random.normal(key, x.shape[:-1] + (1,), x.dtype)
    return x + self.scale[...].astype(x.dtype) * noise


def upsampler(kind: str, in_features: int, out_features: int, rngs: nnx.Rngs,
              fast_conv: bool):
  if kind == 'resize':
    return ResizeConv(in_features, out_features, rngs, fast_conv)
  if kind == 'bilinear':
    return BilinearResizeConv(in_features, out_features, rngs)
  if kind != 'transposed':
    raise ValueError(f'unknown upsample {kind!r}; use one of {UPSAMPLE}')
  return conv_transpose(in_features, out_features, rngs, fast_conv)


class Decoder(nnx.Module):
  """`(z, y_onehot) -> x` in [-1, 1], shape (B, 64, 64, 1).

  `output_batchnorm=True` puts the paper's BatchNorm before the final tanh; the
  default leaves it out, as the peers and DCGAN practice do (see BUILD_NOTES).
  `noise_inputs=True` adds a NoiseInput after each of the four upsampling
  convolutions; every call then needs a `noise_key`.
  """

  def __init__(self, num_classes: int = 9, latent_dim: int = 64, *, width: float = 1.0,
               image_size: int = 64, output_batchnorm: bool = False, fast_conv: bool = True,
               upsample: str = 'transposed', noise_inputs: bool = False, rngs: nnx.Rngs):
    c1, c2, c3, c4 = (scaled(c, width) for c in (32, 64, 128, 256))
    hidden = scaled(1024, width)
    self.num_classes, self.latent_dim = num_classes, latent_dim
    self.side = -(-image_size // 16)
    self.c4 = c4
    self.fc1 = nnx.Linear(latent_dim + num_classes, hidden, rngs=rngs)
    self.bn1 = batch_norm(hidden, rngs)
    self.fc2 = nnx.Linear(hidden, self.side * self.side * c4, rngs=rngs)
    self.bn2 = batch_norm(self.side * self.side * c4, rngs)
    self.deconv3 = upsampler(upsample, c4, c3, rngs, fast_conv)
    self.bn3 = batch_norm(c3, rngs)
    self.deconv4 = upsampler(upsample, c3, c2, rngs, fast_conv)
    self.bn4 = batch_norm(c2, rngs)
    self.deconv5 = upsampler(upsample, c2, c1, rngs, fast_conv)
    self.bn5 = batch_norm(c1, rngs)
    self.deconv6 = upsampler(upsample, c1, 1, rngs, fast_conv)
    self.bn6 = batch_norm(1, rngs) if output_batchnorm else None
    self.noise = (nnx.List([NoiseInput(c) for c in (c3, c2, c1, 1)]) if noise_inputs
                  else None)

  @property
  def has_noise(self) -> bool:
    return self.noise is not None

  def __call__(self, z: jax.Array, y_onehot: jax.Array,
               noise_key: jax.Array | None = None) -> jax.Array:
    if self.has_noise and noise_key is None:
      raise ValueError('this decoder has noise inputs (config.gan.improved.noise_inputs): '
                       'pass noise_key')
    keys = jax.random.split(noise_key, 4) if self.has_noise else None
    # The upsampling convolution's output, plus its noise input where there is one.
    up = lambda i, layer, h: (self.noise[i](layer(h), keys[i]) if self.has_noise
                              else layer(h))
    x = jnp.concatenate([z, y_onehot.astype(z.dtype)], axis=-1)
    x = lrelu(self.bn1(self.fc1(x)))
    x = lrelu(self.bn2(self.fc2(x)))
    x = x.reshape(x.shape[0], self.side, self.side, self.c4)
    x = lrelu(self.bn3(up(0, self.deconv3, x)))
    x = lrelu(self.bn4(up(1, self.deconv4, x)))
    x = lrelu(self.bn5(up(2, self.deconv5, x)))
    x = up(3, self.deconv6, x)
    if self.bn6 is not None:
      x = self.bn6(x)
    return jnp.tanh(x)


class Critic(nnx.Module):
  """Discriminator (`num_outputs=1`) or auxiliary classifier (9): `x -> (logits, features)`.

  `features` is the input of the last FC layer, used for feature matching.
  `first_stride=2` makes the first convolution stride 2 as well (the paper's is 1): every
  map is a quarter of the size, so a wider critic costs about what a narrow one did.
  `projection_classes > 0` makes it a projection discriminator (Miyato & Koyama 2018):
  the logit gains <V y, features> for the one-hot class y, with V initialised to 0, so
  it starts as the unconditional critic and learns each class's direction.
  """

  def __init__(self, num_outputs: int, *, width: float = 1.0, image_size: int = 64,
               first_stride: int = 1, fast_conv: bool = True, projection_classes: int = 0,
               rngs: nnx.Rngs):
    if first_stride not in (1, 2):
      raise ValueError(f'first_stride must be 1 (the paper) or 2, not {first_stride}')
    c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))
    hidden = scaled(512, width)
    self.conv1 = conv(1, c1, first_stride, rngs, fast_conv)
    self.bn1 = batch_norm(c1, rngs)
    # (2)-(3): conv 5x5 s2 + BN each.
    (self.conv2, self.bn2), (self.conv3, self.bn3) = down_blocks((c1, c2, c3), rngs, fast_conv)
    side = -(-image_size // (4 * first_stride))
    self.fc4 = nnx.Linear(side * side * c3, hidden, rngs=rngs)
    self.bn4 = batch_norm(hidden, rngs)
    self.fc5 = nnx.Linear(hidden, num_outputs, rngs=rngs)
    # A parameter, not an nnx.Linear: zeros draw no key, so the other layers' initial
    # weights do not depend on whether the projection is there.
    self.projection = (nnx.Param(jnp.zeros((projection_classes, hidden)))
                       if projection_classes else None)

  def __call__(self, x: jax.Array,
               y_onehot: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(logits, features); `y_onehot` is read by a projection critic only."""
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = run_blocks(x, ((self.conv2, self.bn2), (self.conv3, self.bn3)), nnx.relu)
    x = x.reshape(x.shape[0], -1)
    features = nnx.relu(self.bn4(self.fc4(x)))
    logits = self.fc5(features)
    if self.projection is not None:
      if y_onehot is None:
        raise ValueError('a projection critic needs the one-hot class y_onehot')
      logits = logits + jnp.sum((y_onehot @ self.projection[...]) * features, -1,
                                keepdims=True)
    return logits, features


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """z = mu + noise * exp(logvar / 2), noise ~ N(0, 1).

  The paper writes `z = noise * log(eps) + mu` with eps the encoder's "covariance";
  we read the encoder's second half as a log-variance, the standard VAE
  reparameterisation of Bao et al., which the peers use as well.
  """
  return mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)


class CVAEGAN(nnx.Module):
  """The four CVAE-GAN networks: .encoder .decoder .discriminator .classifier.

  `discriminator_width` scales the discriminator alone (None: `width`, as in the paper,
  where all four networks share one scale); `discriminator_first_stride` is its
  Critic's `first_stride`. `classifier_width` and `classifier_first_stride` do the same
  for the auxiliary classifier, `decoder_width` for the decoder.
  `discriminator_projection` makes D a projection discriminator of the sign (Critic).
  """

  def __init__(self, num_classes: int = 9, latent_dim: int = 64, *, width: float = 1.0,
               image_size: int = 64, output_batchnorm: bool = False, fast_conv: bool = True,
               upsample: str = 'transposed', noise_inputs: bool = False,
               discriminator_width: float | None = None, discriminator_first_stride: int = 1,
               classifier_width: float | None = None, classifier_first_stride: int = 1,
               decoder_width: float | None = None, discriminator_projection: bool = False,
               rngs: nnx.Rngs):
    self.num_classes, self.latent_dim = num_classes, latent_dim
    kw = dict(width=width, image_size=image_size, fast_conv=fast_conv, rngs=rngs)
    self.encoder = Encoder(num_classes, latent_dim, **kw)
    self.decoder = Decoder(num_classes, latent_dim, output_batchnorm=output_batchnorm,
                           upsample=upsample, noise_inputs=noise_inputs,
                           **{**kw, 'width': decoder_width or width})
    self.discriminator = Critic(1, **{**kw, 'width': discriminator_width or width},
                                first_stride=discriminator_first_stride,
                                projection_classes=num_classes if discriminator_projection else 0)
    self.classifier = Critic(num_classes, **{**kw, 'width': classifier_width or width},
                             first_stride=classifier_first_stride)

  def generate(self, key: jax.Array, y_onehot: jax.Array) -> jax.Array:
    """Decodes prior samples z ~ N(0, I) for the given one-hot signs."""
    # Without noise inputs the key draws z alone, as before they existed.
    k_z, k_noise = jax.random.split(key) if self.decoder.has_noise else (key, None)
    z = jax.random.normal(k_z, (y_onehot.shape[0], self.latent_dim))
    return self.decoder(z, y_onehot, k_noise)
