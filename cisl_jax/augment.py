"""The paper's traditional augmentation (Section III-C-2), on device in JAX.

Per image, one random affine map (rotation, shift, shear, zoom, flips, composed about
the image centre as Keras' ImageDataGenerator does), applied with bilinear
`jax.scipy.ndimage.map_coordinates` and nearest-edge filling. Ranges come from a
ConfigDict-compatible mapping (the paper's: `cisl_jax.config_lib.augment()`); all-zero ranges, zoom (1, 1) and
no flips give the identity.

`random_symmetry` is the lossless kind that the GAN's real patches can get (StyleGAN2-ADA's
x-flips): each image mirrored, or under one of the square's 8 symmetries, with no
resampling and no fill.
"""
import functools
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from cisl_jax import config_lib

SYMMETRIES = ('', 'flip', 'dihedral')
_FIELDS = ('rotation', 'shift', 'shear', 'zoom', 'horizontal_flip', 'vertical_flip')


class Ranges(NamedTuple):
  """Hashable ranges, so that the jitted function specialises on them."""
  rotation: float
  shift: float
  shear: float
  zoom: tuple[float, float]
  horizontal_flip: bool
  vertical_flip: bool


def ranges_from(cfg: Mapping[str, Any] | None) -> Ranges:
  """Validated Ranges from a mapping / ConfigDict (None: the paper's)."""
  cfg = config_lib.augment() if cfg is None else cfg
  missing = [f for f in _FIELDS if f not in cfg]
  if missing:
    raise ValueError(f'augmentation config lacks {missing}; expected fields {list(_FIELDS)} '
                     '(see cisl_jax.config_lib.augment)')
  zoom = tuple(float(v) for v in cfg['zoom'])
  if len(zoom) != 2 or not 0 < zoom[0] <= zoom[1]:
    raise ValueError(f'augmentation zoom must be (lo, hi) with 0 < lo <= hi, got {zoom}')
  for f in ('rotation', 'shift', 'shear'):
    if float(cfg[f]) < 0:
      raise ValueError(f'augmentation {f} is a half-range and must be >= 0, got {cfg[f]}')
  return Ranges(float(cfg['rotation']), float(cfg['shift']), float(cfg['shear']), zoom,
                bool(cfg['horizontal_flip']), bool(cfg['vertical_flip']))


def sample_params(key: jax.Array, batch: int, r: Ranges) -> dict[str, jax.Array]:
  """Per-image transform parameters (angles in degrees, shifts as fractions)."""
  k = jax.random.split(key, 8)
  u = lambda kk, lo, hi: jax.random.uniform(kk, (batch,), minval=lo, maxval=hi)
  return {
      'rotation': u(k[0], -r.rotation, r.rotation),
      'shift_x': u(k[1], -r.shift, r.shift),
      'shift_y': u(k[2], -r.shift, r.shift),
      'shear': u(k[3], -r.shear, r.shear),
      'zoom_x': u(k[4], *r.zoom),
      'zoom_y': u(k[5], *r.zoom),
      'flip_x': jax.random.bernoulli(k[6], 0.5, (batch,)) & r.horizontal_flip,
      'flip_y': jax.random.bernoulli(k[7], 0.5, (batch,)) & r.vertical_flip,
  }


def affine_matrices(params: Mapping[str, jax.Array], height: int, width: int) -> jax.Array:
  """(B, 3, 3) maps from output (row, col, 1) to input coordinates, about the centre."""
  theta = jnp.deg2rad(params['rotation'])
  shear = jnp.deg2rad(params['shear'])
  one, zero = jnp.ones_like(theta), jnp.zeros_like(theta)
  mat = lambda rows: jnp.stack([jnp.stack(r, -1) for r in rows], -2)
  rotate = mat([[jnp.cos(theta), -jnp.sin(theta), zero],
                [jnp.sin(theta), jnp.cos(theta), zero], [zero, zero, one]])
  shift = mat([[one, zero, params['shift_y'] * height],
               [zero, one, params['shift_x'] * width], [zero, zero, one]])
  shear_m = mat([[one, -jnp.sin(shear), zero], [zero, jnp.cos(shear), zero],
                 [zero, zero, one]])
  zoom = mat([[params['zoom_y'], zero, zero], [zero, params['zoom_x'], zero],
              [zero, zero, one]])
  sy = jnp.where(params['flip_y'], -1.0, 1.0)
  sx = jnp.where(params['flip_x'], -1.0, 1.0)
  flip = mat([[sy, zero, zero], [zero, sx, zero], [zero, zero, one]])
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  to_centre = jnp.array([[1.0, 0.0, -cy], [0.0, 1.0, -cx], [0.0, 0.0, 1.0]])
  from_centre = jnp.array([[1.0, 0.0, cy], [0.0, 1.0, cx], [0.0, 0.0, 1.0]])
  # Keras order: rotation, shift, shear, zoom (each an output->input map), then flips.
  m = rotate @ shift @ shear_m @ zoom @ flip
  return from_centre @ m @ to_centre


def apply_affine(images: jax.Array, matrices: jax.Array) -> jax.Array:
  """Resamples images (B, H, W, C) through output->input maps (B, 3, 3), bilinear."""
  _, h, w, c = images.shape
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                            jnp.arange(w, dtype=jnp.float32), indexing='ij')
  grid = jnp.stack([rows.ravel(), cols.ravel(), jnp.ones(h * w)], 0)  # (3, HW)

  def one(image, m):
    src = m @ grid
    coords = [src[0].reshape(h, w), src[1].reshape(h, w)]
    channel = lambda ch: jax.scipy.ndimage.map_coordinates(ch, coords, order=1,
                                                           mode='nearest')
    return jnp.stack([channel(image[..., i]) for i in range(c)], -1)

  return jax.vmap(one)(images, matrices)


@functools.partial(jax.jit, static_argnums=2)
def _augment(key: jax.Array, images: jax.Array, r: Ranges) -> jax.Array:
  params = sample_params(key, images.shape[0], r)
  return apply_affine(images, affine_matrices(params, images.shape[1], images.shape[2]))


def augment_batch(key: jax.Array, images: jax.Array,
                  cfg: Mapping[str, Any] | None = None) -> jax.Array:
  """Randomly transformed copies of images (B, H, W, C), one transform per image."""
  if images.ndim != 4:
    raise ValueError(f'augment_batch expects images (B, H, W, C), got shape {images.shape}')
  return _augment(key, jnp.asarray(images, jnp.float32), ranges_from(cfg))


def random_symmetry(key: jax.Array, images: jax.Array, group: str) -> jax.Array:
  """Each image (B, H, W, C) under its own uniformly drawn element of `group`.

  'flip': the identity or the left-right mirror; 'dihedral': the 8 rotations by
  multiples of 90 degrees and reflections (transpose, then flip rows, then columns,
  each with probability 1/2; H must equal W); '': the images unchanged. Exact pixel
  permutations, so a patch's density histogram never changes.
  """
  if group not in SYMMETRIES:
    raise ValueError(f'unknown symmetry group {group!r}; use one of {SYMMETRIES}')
  if not group:
    return images
  b = images.shape[0]
  coin = lambda i: jax.random.bernoulli(jax.random.fold_in(key, i), 0.5, (b, 1, 1, 1))
  if group == 'dihedral':
    if images.shape[1] != images.shape[2]:
      raise ValueError(f'dihedral symmetries need square images, got {images.shape}')
    images = jnp.where(coin(0), jnp.swapaxes(images, 1, 2), images)
    images = jnp.where(coin(1), images[:, ::-1], images)
  return jnp.where(coin(2), images[:, :, ::-1], images)
