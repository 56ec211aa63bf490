"""DiffAugment (Zhao et al. 2020): differentiable augmentation of discriminator inputs.

With a few hundred real patches the discriminator memorises them and its gradient stops
telling the generator anything; augmenting EVERY discriminator input (real and fake, in
both D's and G's updates) with the same random family keeps D from memorising while
leaving the distributions it compares unchanged. Each transform is differentiable in
the image, so G's gradient flows through it.

Transforms (on images in [-1, 1], NHWC), per image:
  'color':       brightness + U(-0.5, 0.5), then contrast about the image mean x U(0.5, 1.5)
                 (at `color_strength` s: + U(-0.5 s, 0.5 s) and x U(1 - 0.5 s, 1 + 0.5 s))
  'translation': an integer shift of up to 1/8 of the side per axis, zero filled
  'cutout':      a square of half the side set to 0, centred anywhere in the image
(the authors' ranges; saturation has no meaning for a grey image.)
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp

TRANSFORMS = ('color', 'translation', 'cutout')


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
  """'color,translation,cutout' (or a sequence) -> a tuple; '' -> () (no augmentation)."""
  names = tuple(p.strip() for p in (policy.split(',') if isinstance(policy, str) else policy)
                if p.strip())
  unknown = [n for n in names if n not in TRANSFORMS]
  if unknown:
    raise ValueError(f'unknown DiffAugment transform(s) {unknown}; known: {TRANSFORMS} '
                     "(e.g. --config.gan.improved.diffaugment='color,translation,cutout')")
  return names


def color(key: jax.Array, x: jax.Array, strength: float = 1.0) -> jax.Array:
  kb, kc = jax.random.split(key)
  b, half = x.shape[0], 0.5 * strength
  x = x + jax.random.uniform(kb, (b, 1, 1, 1), x.dtype, -half, half)
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) * jax.random.uniform(kc, (b, 1, 1, 1), x.dtype, 1 - half, 1 + half) + mean


def translation(key: jax.Array, x: jax.Array, ratio: float = 0.125) -> jax.Array:
  b, h, w, _ = x.shape
  sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (b,), -sh, sh + 1)
  dx = jax.random.randint(kx, (b,), -sw, sw + 1)
  padded = jnp.pad(x, ((0, 0), (sh, sh), (sw, sw), (0, 0)))

  def one(img, oy, ox):
    return jax.lax.dynamic_slice(img, (sh - oy, sw - ox, 0), (h, w, img.shape[-1]))

  return jax.vmap(one)(padded, dy, dx)


def cutout(key: jax.Array, x: jax.Array, ratio: float = 0.5) -> jax.Array:
  b, h, w, _ = x.shape
  ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (b, 1, 1), 0, h + (1 - ch % 2))
  cx = jax.random.randint(kx, (b, 1, 1), 0, w + (1 - cw % 2))
  yy = jnp.arange(h)[None, :, None]
  xx = jnp.arange(w)[None, None, :]
  inside = ((yy >= cy - ch // 2) & (yy < cy - ch // 2 + ch)
            & (xx >= cx - cw // 2) & (xx < cx - cw // 2 + cw))
  return x * (~inside)[..., None].astype(x.dtype)


_FNS = {'color': color, 'translation': translation, 'cutout': cutout}


def diff_augment(key: jax.Array, x: jax.Array, policy: Sequence[str] = TRANSFORMS,
                 color_strength: float = 1.0) -> jax.Array:
  """`x` with each transform of `policy` applied in order, drawn from `key` per image.

  `color_strength` scales the colour transform's ranges (1: the authors'). On CT a
  pixel's value is a density, and brightness shifts of +-0.5 hide absolute density from
  the discriminator.

  Transform i uses `fold_in(key, i)`: the same key and policy give the same images, and
  two calls that must be paired (a real patch and its reconstruction) share a key.
  """
  fns = {**_FNS, 'color': functools.partial(color, strength=color_strength)}
  for i, name in enumerate(policy):
    x = fns[name](jax.random.fold_in(key, i), x)
  return x
