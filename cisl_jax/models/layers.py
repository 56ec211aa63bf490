"""Layers every network here shares: BatchNorm and its settings, width scaling, and the
stride-2 (transposed) convolutions with a fast path for XLA's CPU backend.

`conv(..., fast=True)` and `conv_transpose(..., fast=True)` give `Conv2x` /
`ConvTranspose2x`: the same parameters and results as nnx.Conv / nnx.ConvTranspose,
computed in forms that XLA's CPU backend runs on its fast (non-dilated) convolution
path (`conv_stride2`, `conv_transpose_stride2`), and `TapSumConv` for a 1-channel
image's stride-1 convolution to a few features (`conv_tap_sum`); `fast=False` gives the
plain nnx layers, for before/after measurements. Networks take the choice as `fast_conv`.
`resize_conv_stride1` is nearest x2 upsampling plus a 5x5 stride-1 convolution in the
same sub-pixel form (the decoder's 'resize' upsampling, cvae_gan.ResizeConv).
`with plain_forms():` makes the fast layers trace their plain forms instead, for code
that differentiates a network twice (the R1 penalty).
"""
import contextlib
import functools
import threading

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cisl_jax.models import conv_matmul

# BatchNorm as in the TensorFlow DCGAN-style code the paper's era used (decay 0.9,
# epsilon 1e-5), rather than flax's slower-moving 0.99: short fine-tuning runs need
# running statistics that catch up within a few hundred steps.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# Stride-2 kernel gradients on the CPU backend go through one tap matmul from this many
# input channels up (conv_stride2).
TAP_MATMUL_MIN_CHANNELS = 32
# Stride-1 convolutions of a 1-channel image to at most this many features run as fused
# tap sums on the CPU backend (conv_tap_sum: the quick widths' first convolutions).
TAP_SUM_MAX_FEATURES = 16


_PLAIN = threading.local()


@contextlib.contextmanager
def plain_forms():
  """Inside, Conv2x, TapSumConv, ConvTranspose2x and ResizeConv trace the plain nnx maps.

  Same parameters and the same values; a trace-time switch, so jitted code that enters
  it traces plain ops there. jax reuses a function's earlier trace whatever the switch
  said then: enter it inside the traced function, not around a call of a jitted one.
  Differentiating the fast forms' custom VJPs a second time is slow (the R1 penalty:
  2.9x the quick GAN iteration against 1.19x on the plain layers, bench/ab_r1.py), so
  code that takes second derivatives enters this.
  """
  before = getattr(_PLAIN, 'on', False)
  _PLAIN.on = True
  try:
    yield
  finally:
    _PLAIN.on = before


def fast_forms_enabled() -> bool:
  """False inside `plain_forms()`."""
  return not getattr(_PLAIN, 'on', False)


def scaled(channels: int, width: float) -> int:
  """A channel / unit count scaled by the width multiplier (at least 1)."""
  return max(1, int(round(channels * width)))


class RunningStat(nnx.BatchStat):
  """A BatchNorm running statistic whose in-trace update skips a costly no-op check.

  flax 0.12.8's BatchNorm updates its statistics as `stat[...] = new`, and
  `Variable.set_value` then compares `getattr(new, 'sharding', None)` with the old
  value's. On a tracer jax 0.10.2 answers with an AttributeError whose message walks
  the whole trace so far (`find_progenitors`), and flax swallows it: on every BatchNorm
  call of a train step, about half of its tracing time (MEASUREMENTS.md). Between two
  tracers of one shape and dtype that comparison is always None == None and flax assigns
  the new value; `set_value(new)` assigns it without asking.
  """

  def __setitem__(self, key, value) -> None:
    old = self.get_raw_value()
    if (key is Ellipsis and isinstance(value, jax.core.Tracer)
        and isinstance(old, jax.core.Tracer)
        and value.shape == old.shape and value.dtype == old.dtype):
      self.set_value(value)
    else:
      super().__setitem__(key, value)


class BatchNorm(nnx.BatchNorm):
  """nnx.BatchNorm with RunningStat statistics: the same parameters, names and values."""

  def __init__(self, num_features: int, **kwargs):
    super().__init__(num_features, **kwargs)
    self.mean = RunningStat(self.mean.get_value())
    self.var = RunningStat(self.var.get_value())


def batch_norm(features: int, rngs: nnx.Rngs) -> BatchNorm:
  return BatchNorm(features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


_DN = ('NHWC', 'HWIO', 'NHWC')


def _space_to_depth(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def _depth_to_space(y: jax.Array, c: int) -> jax.Array:
  b, h, w, _ = y.shape
  y = y.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, c)


@functools.lru_cache(maxsize=None)
def _phase_taps(k: int, transpose: bool) -> tuple[np.ndarray, int, int]:
  """Which kernel tap serves (block offset d, phase p), as a table [d - d_min, p].

  Strided SAME conv (pad_lo = (k - 2) // 2): y[i] = sum_j w[j] x[2i + j - pad_lo], and
  x[2(i + d) + p] is tap j = 2d + p + pad_lo. Transposed SAME conv (lax.conv_transpose,
  pad_a from lax): y[2m + p] = sum_j w[j] x[m + d] with j = 2d + pad_a - p. Entry k
  (out of range) points at a zero row appended to the kernel. Returns (table, d_min, d_max).
  """
  if transpose:
    # lax.conv_transpose's SAME rule for stride 2: pad_a = k - 1 if 2 > k - 1 else ceil(k / 2).
    pad_a = k - 1 if k < 3 else -(-k // 2)
    tap = lambda d, p: 2 * d + pad_a - p
  else:
    tap = lambda d, p: 2 * d + p + (k - 2) // 2
  ds = [d for d in range(-k, k + 1) if any(0 <= tap(d, p) < k for p in (0, 1))]
  table = np.array([[tap(d, p) if 0 <= tap(d, p) < k else k for p in (0, 1)] for d in ds])
  return table, ds[0], ds[-1]


def _phase_kernel(kernel: jax.Array, transpose: bool) -> tuple[jax.Array, int, int]:
  """kernel (k, k, I, O) -> (T, 2, T, 2, I, O) indexed by (dy, py, dx, px)."""
  table, d_min, d_max = _phase_taps(kernel.shape[0], transpose)
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  return padded[table[:, :, None, None], table[None, None, :, :]], d_min, d_max


def _conv_s2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME stride-2 conv as a stride-1 conv of the space-to-depth input."""
  i, o = kernel.shape[2:]
  w, d_min, d_max = _phase_kernel(kernel, transpose=False)
  t = w.shape[0]
  w = w.transpose(0, 2, 1, 3, 4, 5).reshape(t, t, 4 * i, o)
  pad = ((-d_min, d_max),) * 2
  return lax.conv_general_dilated(_space_to_depth(x), w, (1, 1), pad, dimension_numbers=_DN)


def _strided(x, kernel, stride=2):
  return lax.conv_general_dilated(x, kernel, (stride, stride), 'SAME',
                                  dimension_numbers=_DN)


@jax.custom_vjp
def conv_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (2, 2), 'SAME')`, NHWC/HWIO, even H and W.

  The forward is XLA's own. The input gradient, which XLA would run as a base-dilated
  convolution on a slow CPU path, is taken through the equivalent space-to-depth form
  (a stride-1 convolution); on the CPU backend the kernel gradient, a backward-filter
  convolution XLA runs slowly on large maps, is one matmul over the kernel taps
  (conv_matmul.kernel_grad).
  """
  return _strided(x, kernel)


def _conv_stride2_fwd(x, kernel):
  return _strided(x, kernel), (x, kernel)


def _conv_stride2_bwd(res, g):
  x, kernel = res
  _, vjp_x = jax.vjp(lambda x_: _conv_s2d(x_, kernel), x)
  # The tap columns cost k*k times the input: a win on the CPU backend for the paper's
  # widths, a loss at the quick widths' 4-16 input channels (MEASUREMENTS.md, 2026-12-01).
  # GPU/TPU convolution libraries run the backward-filter convolution well.
  if jax.default_backend() == 'cpu' and x.shape[-1] >= TAP_MATMUL_MIN_CHANNELS:
    dk = conv_matmul.kernel_grad(x, g, kernel.shape[0], 2).astype(kernel.dtype)
  else:
    dk = jax.vjp(lambda k_: _strided(x, k_), kernel)[1](g)[0]
  return vjp_x(g)[0], dk


conv_stride2.defvjp(_conv_stride2_fwd, _conv_stride2_bwd)


def _tap_sum(x, kernel):
  k = kernel.shape[0]
  return sum(t * kernel[i // k, i % k, 0]
             for i, t in enumerate(conv_matmul.tap_slices(x, k, 1)))


@jax.custom_vjp
def conv_tap_sum(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (1, 1), 'SAME')` for a 1-channel x, NHWC/HWIO.

  The k*k shifted views of x times their kernel rows, summed in one fused loop: XLA's
  CPU convolution runs 1 input and 4 output channels ~20x slower (64x64 maps, batch 32).
  The input gradient is the transposed tap sum (each tap's cotangent row, shifted back);
  the kernel gradient is XLA's own, which is fast here.
  """
  return _tap_sum(x, kernel)


def _conv_tap_sum_fwd(x, kernel):
  return _tap_sum(x, kernel), (x, kernel)


def _conv_tap_sum_bwd(res, g):
  x, kernel = res
  k, (_, h, w, _) = kernel.shape[0], x.shape
  lo_h, lo_w = conv_matmul.same_padding(h, k, 1)[1], conv_matmul.same_padding(w, k, 1)[1]
  # dx[p, q] = sum over taps (ky, kx) of (g . W[ky, kx])[p + lo - ky, q + lo - kx].
  rows = jnp.einsum('bijo,to->tbij', g, kernel.reshape(k * k, -1))
  rows = jnp.pad(rows, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
  dx = sum(rows[ky * k + kx, :, k - 1 + lo_h - ky:k - 1 + lo_h - ky + h,
                k - 1 + lo_w - kx:k - 1 + lo_w - kx + w]
           for ky in range(k) for kx in range(k))
  dk = jax.vjp(lambda k_: _strided(x, k_, 1), kernel)[1](g)[0]
  return dx[..., None].astype(x.dtype), dk


conv_tap_sum.defvjp(_conv_tap_sum_fwd, _conv_tap_sum_bwd)


def conv_transpose_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_transpose(x, kernel, (2, 2), 'SAME')` (what nnx.ConvTranspose runs).

  Sub-pixel form: a stride-1 convolution to the 4 output phases, then depth-to-space,
  instead of XLA's base-dilated convolution; gradients follow by autodiff and stay
  on stride-1 convolutions.
  """
  o = kernel.shape[3]
  w, d_min, d_max = _phase_kernel(kernel, transpose=True)
  t = w.shape[0]
  w = w.transpose(0, 2, 4, 1, 3, 5).reshape(t, t, kernel.shape[2], 4 * o)
  pad = ((-d_min, d_max),) * 2
  y = lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=_DN)
  return _depth_to_space(y, o)


# Nearest x2 upsampling then a 5x5 SAME conv, per output phase p (0 or 1 along an
# axis): tap t (offset t - 2) reads the low-res pixel at offset floor((p + t - 2) / 2),
# -1,-1,0,0,1 for phase 0 and -1,0,0,1,1 for phase 1. _RESIZE_TAPS[p, d + 1, t] is 1
# where tap t lands on low-res offset d.
_RESIZE_TAPS = np.array([[[1.0 if (p + t - 2) // 2 == d else 0.0 for t in range(5)]
                          for d in (-1, 0, 1)] for p in (0, 1)], np.float32)


def upsample_nearest2(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling of an NHWC map (each pixel to a 2x2 block)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def resize_conv_stride1(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_general_dilated(upsample_nearest2(x), kernel, (1, 1), 'SAME')`, 5x5 HWIO.

  Sub-pixel form: the upsampled map is never built. Each output phase (py, px) is a 3x3
  stride-1 convolution of x at the low resolution whose taps are sums of the 5x5 taps
  that read the same low-res pixel; the 4 phases are one convolution to 4*O channels,
  then depth-to-space (2.8x fewer multiply-adds). Gradients by autodiff (stride-1
  convolutions; the kernel's through the fixed tap-summing matrix).
  """
  if kernel.shape[:2] != (5, 5):
    raise ValueError(f'resize_conv_stride1 takes a 5x5 kernel, got {kernel.shape}')
  o = kernel.shape[3]
  taps = jnp.asarray(_RESIZE_TAPS, kernel.dtype)
  # (dy, dx, I, py, px, O): phase (py, px) of output channel o at depth-to-space's order.
  w = jnp.einsum('avt,bus,tsio->vuiabo', taps, taps, kernel)
  w = w.reshape(3, 3, kernel.shape[2], 4 * o)
  y = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
  return _depth_to_space(y, o)


def apply_conv(layer: nnx.Conv | nnx.ConvTranspose, x: jax.Array, op) -> jax.Array:
  """`op(x, kernel)` plus the bias in the layer's dtype, as nnx's own call computes it."""
  kernel = layer.kernel[...]
  dtype = jnp.result_type(x, kernel) if layer.dtype is None else layer.dtype
  y = op(x.astype(dtype), kernel.astype(dtype))
  return y + layer.bias[...].astype(dtype) if layer.use_bias else y


class Conv2x(nnx.Conv):
  """nnx.Conv with stride 2 and SAME padding, run through `conv_stride2`."""

  def __init__(self, in_features: int, out_features: int, kernel_size=(5, 5), *,
               rngs: nnx.Rngs, **kwargs):
    super().__init__(in_features, out_features, kernel_size, 2, padding='SAME', rngs=rngs,
                     **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2 or not fast_forms_enabled():
      return super().__call__(x)
    return apply_conv(self, x, conv_stride2)


class TapSumConv(nnx.Conv):
  """nnx.Conv with stride 1 and SAME padding on a 1-channel input, run through
  `conv_tap_sum` on the CPU backend (same parameters and results)."""

  def __init__(self, in_features: int, out_features: int, kernel_size=(5, 5), *,
               rngs: nnx.Rngs, **kwargs):
    super().__init__(in_features, out_features, kernel_size, 1, padding='SAME', rngs=rngs,
                     **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if (x.ndim != 4 or x.shape[-1] != 1 or jax.default_backend() != 'cpu'
        or not fast_forms_enabled()):
      return super().__call__(x)
    return apply_conv(self, x, conv_tap_sum)


class ConvTranspose2x(nnx.ConvTranspose):
  """nnx.ConvTranspose with stride 2 and SAME padding, run through the sub-pixel form."""

  def __init__(self, in_features: int, out_features: int, kernel_size=(5, 5), *,
               rngs: nnx.Rngs, **kwargs):
    super().__init__(in_features, out_features, kernel_size, 2, padding='SAME', rngs=rngs,
                     **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or not fast_forms_enabled():
      return super().__call__(x)
    return apply_conv(self, x, conv_transpose_stride2)


def conv(in_features: int, out_features: int, stride: int, rngs: nnx.Rngs,
         fast: bool = True) -> nnx.Conv:
  """A 5x5 SAME convolution; stride 2, and stride 1 from one channel to a few, on the
  fast CPU forms unless `fast=False`."""
  if stride == 2 and fast:
    return Conv2x(in_features, out_features, (5, 5), rngs=rngs)
  if stride == 1 and fast and in_features == 1 and out_features <= TAP_SUM_MAX_FEATURES:
    return TapSumConv(in_features, out_features, (5, 5), rngs=rngs)
  return nnx.Conv(in_features, out_features, (5, 5), stride, padding='SAME', rngs=rngs)


def conv_transpose(in_features: int, out_features: int, rngs: nnx.Rngs,
                   fast: bool = True) -> nnx.ConvTranspose:
  """A 5x5 SAME stride-2 transposed convolution (sub-pixel form unless `fast=False`)."""
  if fast:
    return ConvTranspose2x(in_features, out_features, (5, 5), rngs=rngs)
  return nnx.ConvTranspose(in_features, out_features, (5, 5), 2, padding='SAME', rngs=rngs)


def down_blocks(channels: tuple[int, ...], rngs: nnx.Rngs,
                fast: bool = True) -> list[tuple[nnx.Module, BatchNorm]]:
  """The (5x5 stride-2 conv, BatchNorm) pairs from channels[i] to channels[i + 1]: the
  downsampling trunk the classifier, the encoder and the critics share (the paper's
  layer lists). Created in the order conv, BN, conv, BN, ... as written out by hand."""
  return [(conv(c_in, c_out, 2, rngs, fast), batch_norm(c_out, rngs))
          for c_in, c_out in zip(channels[:-1], channels[1:])]


def run_blocks(x: jax.Array, blocks, activation) -> jax.Array:
  """`activation(bn(conv(x)))` through each (conv, bn) pair in turn."""
  for conv_, bn in blocks:
    x = activation(bn(conv_(x)))
  return x
