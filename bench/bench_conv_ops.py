"""Per-op profile of the networks' convolutions: ours (XLA) against TensorFlow's oneDNN.

  python bench/bench_conv_ops.py --batch 64 --rounds 5 [--width 0.125]
  python bench/bench_conv_ops.py --dtype bfloat16 --ops 'jax_(fwd|dx|dw)' --fc
For each 5x5 SAME convolution shape of the classifier and critics (and the encoder's
first), every op jitted alone at the benchmark shapes: the forward (XLA's, and as one
tap matmul: im2col), the input gradient (XLA's; the space-to-depth form used for stride
2) and the kernel gradient (XLA's; the tap matmul used on the CPU backend), XLA's three
again in NCHW / OIHW layout (the channels-first lever of issue 16), beside TensorFlow's
Conv2D / Conv2DBackpropInput / Conv2DBackpropFilter. Variants are interleaved, minimum
over rounds; one JSON line per layer, ms.

`--dtype bfloat16` adds a `_bf16` twin of each of XLA's NHWC ops (issue 16's bf16
lever): image, kernel and cotangent cast to bf16 outside the timed op; the forward and
the tap matmul ask `preferred_element_type=float32` (f32 accumulation and output); the
gradients through jax.vjp run on bf16 cotangents, as a bf16-activation step's backward
would (with an f32 output the transpose rules would cast the kernel back to f32).
`jax_fwd_bf16out` is the forward with a bf16 output. `--fc` adds the networks' big fully
connected layers (forward x @ W, input gradient g @ W^T, kernel gradient x^T @ g, with
`preferred_element_type=float32` in both dtypes). `--ops REGEX` keeps the variants whose
name matches (e.g. skip TensorFlow and NCHW); `--layers` picks LAYERS by index.

`shift9_*` (stride 2 only; issue 16's shifted-matmul lever): after the 2x2 space-to-depth,
the 5x5 stride-2 SAME conv is a 3x3 stride-1 conv over 4*I channels (layers._conv_s2d's
re-indexed kernel), written as 9 dots of one shifted view (B*H'*W', 4*I) each against its
(4*I, O) tap: `shift9_fwd` sums the 9 dot results, `_loop` accumulates them into one
buffer in a fori_loop (dynamic slices), `_row3` concatenates each kernel row's 3 views
(3 dots over 12*I), `_outshift` contracts the other way round (one matmul of the whole
padded map against all 9 taps, (4*I, 9*O), then 9 shifted output slices summed), and
`_dotsonly` is its floor: the 9 dots alone on views made contiguous outside the op. The
kernel gradient `shift9_kgrad` is the 9 dots view^T G (and `_loop`), mapped back to 5x5
through the transpose of the re-indexing; the input gradient `shift9_igrad` is the 9 dots
G Wt^T each added into its shifted window (`_outshift`: one G @ (O, 9*4*I) matmul, then
the 9 shifted adds), then depth-to-space. Each is checked against lax's value (assert,
rtol 1e-4 with atol 1e-4 of the reference's largest magnitude) before timing.
`--stat median` reports the median over rounds instead of the minimum; `--cpu` adds each
variant's process CPU ms (same statistic).
"""
import argparse
import functools
import json
import re
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order,unused-import

import jax  # pylint: disable=g-import-not-at-top
from jax import lax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from cisl_jax.models import conv_matmul  # pylint: disable=g-import-not-at-top
from cisl_jax.models import layers  # pylint: disable=g-import-not-at-top

DN = ('NHWC', 'HWIO', 'NHWC')
DN_NCHW = ('NCHW', 'OIHW', 'NCHW')
# (input side, input channels, output channels, stride) at width 1 (the image's 1 and the
# encoder's 1 + 9 condition input channels do not scale with --width).
LAYERS = [(64, 1, 32, 1), (64, 32, 64, 2), (32, 64, 128, 2), (16, 128, 256, 2),
          (64, 10, 32, 2), (32, 32, 64, 2)]
# (name, input positions, input channels, output positions, output channels) at width 1
# (units = positions x channels): the classifier's fc5, the critics' fc4, the encoder's
# fc5 and the decoder's fc2.
FC_LAYERS = [('classifier_fc5', 8 * 8, 256, 1, 1024), ('critic_fc4', 16 * 16, 128, 1, 512),
             ('encoder_fc5', 4 * 4, 256, 1, 1024), ('decoder_fc2', 1, 1024, 4 * 4, 256)]


def im2col_forward(x, kernel, stride):
  """The forward as one (B*H'*W', k*k*I) x (k*k*I, O) matmul over the tap columns."""
  cols = jnp.stack(conv_matmul.tap_slices(x, kernel.shape[0], stride), axis=3)
  b, h, w = cols.shape[:3]
  y = cols.reshape(b * h * w, -1) @ kernel.reshape(-1, kernel.shape[-1])
  return y.reshape(b, h, w, -1)


def _s2d_taps(kernel):
  """kernel (5, 5, I, O) -> the space-to-depth form's (3, 3, 4*I, O) taps, and pad."""
  i, o = kernel.shape[2:]
  w, d_min, d_max = layers._phase_kernel(kernel, transpose=False)  # pylint: disable=protected-access
  t = w.shape[0]
  return w.transpose(0, 2, 1, 3, 4, 5).reshape(t, t, 4 * i, o), -d_min, d_max


def _s2d_pad(x, lo, hi):
  xs = layers._space_to_depth(x)  # pylint: disable=protected-access
  return jnp.pad(xs, ((0, 0), (lo, hi), (lo, hi), (0, 0)))


def _dot(a, b):
  return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)


def shift9_fwd(x, kernel, mode='sum'):
  """The stride-2 SAME conv as 9 shifted-view dots after space-to-depth (docstring)."""
  w, lo, hi = _s2d_taps(kernel)
  t, c, o = w.shape[0], w.shape[2], w.shape[3]
  xp = _s2d_pad(x, lo, hi)
  b, hp, wp, _ = xp.shape
  h, wo = hp - lo - hi, wp - lo - hi
  n = b * h * wo
  view = lambda ty, tx: xp[:, ty:ty + h, tx:tx + wo, :].reshape(n, c)
  if mode == 'sum':
    y = sum(_dot(view(ty, tx), w[ty, tx]) for ty in range(t) for tx in range(t))
  elif mode == 'loop':
    def body(j, acc):
      v = lax.dynamic_slice(xp, (0, j // t, j % t, 0), (b, h, wo, c)).reshape(n, c)
      return acc + _dot(v, w.reshape(t * t, c, o)[j])
    y = lax.fori_loop(0, t * t, body, jnp.zeros((n, o), jnp.float32))
  elif mode == 'row3':
    y = sum(_dot(jnp.concatenate([view(ty, tx) for tx in range(t)], axis=1),
                 w[ty].reshape(t * c, o)) for ty in range(t))
  elif mode == 'outshift':
    z = _dot(xp, w.transpose(2, 0, 1, 3).reshape(c, t * t * o)).reshape(b, hp, wp, t * t, o)
    return sum(z[:, ty:ty + h, tx:tx + wo, ty * t + tx] for ty in range(t) for tx in range(t))
  else:
    raise ValueError(mode)
  return y.reshape(b, h, wo, o)


def shift9_kgrad(x, g, k_shape, mode='sum'):
  """d sum(conv(x, W) * g) / dW (5, 5, I, O) as 9 dots view^T G (docstring)."""
  zero = jnp.zeros(k_shape, x.dtype)
  w, lo, hi = _s2d_taps(zero)
  t, c, o = w.shape[0], w.shape[2], w.shape[3]
  xp = _s2d_pad(x, lo, hi)
  b, h, wo = g.shape[:3]
  n = b * h * wo
  g2 = g.reshape(n, o)
  if mode == 'sum':
    dw = jnp.stack([_dot(xp[:, ty:ty + h, tx:tx + wo, :].reshape(n, c).T, g2)
                    for ty in range(t) for tx in range(t)])
  elif mode == 'loop':
    def body(j, acc):
      v = lax.dynamic_slice(xp, (0, j // t, j % t, 0), (b, h, wo, c)).reshape(n, c)
      return acc.at[j].set(_dot(v.T, g2))
    dw = lax.fori_loop(0, t * t, body, jnp.zeros((t * t, c, o), jnp.float32))
  else:
    raise ValueError(mode)
  # Back to 5x5 through the transpose of the (linear) re-indexing: the zero row / column
  # the 6x6 phase kernel adds receives nothing.
  to_taps = lambda k_: _s2d_taps(k_)[0]
  return jax.linear_transpose(to_taps, zero)(dw.reshape(t, t, c, o).astype(x.dtype))[0]


def shift9_igrad(g, kernel, x_shape, mode='sum'):
  """d sum(conv(x, W) * g) / dx as 9 dots G Wt^T added into shifted windows (docstring)."""
  w, lo, hi = _s2d_taps(kernel)
  t, c, o = w.shape[0], w.shape[2], w.shape[3]
  b, h, wo = g.shape[:3]
  hp, wp = h + lo + hi, wo + lo + hi
  g2 = g.reshape(b * h * wo, o)
  window = lambda r, ty, tx: jnp.pad(r.reshape(b, h, wo, c),
                                     ((0, 0), (ty, hp - h - ty), (tx, wp - wo - tx), (0, 0)))
  if mode == 'sum':
    dxp = sum(window(_dot(g2, w[ty, tx].T), ty, tx) for ty in range(t) for tx in range(t))
  elif mode == 'outshift':
    r = _dot(g2, w.transpose(3, 0, 1, 2).reshape(o, t * t * c)).reshape(-1, t * t, c)
    dxp = sum(window(r[:, ty * t + tx], ty, tx) for ty in range(t) for tx in range(t))
  else:
    raise ValueError(mode)
  dxs = dxp[:, lo:lo + h, lo:lo + wo, :]
  return layers._depth_to_space(dxs, x_shape[-1]).astype(g.dtype)  # pylint: disable=protected-access


def shift9_ops(x, k, g):
  """{name: (callable, args)} of the shifted-matmul variants, each checked against lax."""
  conv = lambda a, b: _conv(a, b, 2)
  ref_y = conv(x, k)
  ref_dx, ref_dw = jax.vjp(conv, x, k)[1](g)
  out = {}
  for mode in ('sum', 'loop', 'row3', 'outshift'):
    out['shift9_fwd' + ('' if mode == 'sum' else '_' + mode)] = (
        jax.jit(functools.partial(shift9_fwd, mode=mode)), (x, k), ref_y)
  # The lever's floor: the same 9 dots on views copied to contiguous (N, 4*I) arrays
  # outside the timed op (no slicing or copying left inside it).
  w, lo, hi = _s2d_taps(k)
  t, c = w.shape[0], w.shape[2]
  xp = _s2d_pad(x, lo, hi)
  h, wo = g.shape[1:3]
  views = jnp.stack([xp[:, ty:ty + h, tx:tx + wo, :].reshape(-1, c)
                     for ty in range(t) for tx in range(t)])
  out['shift9_fwd_dotsonly'] = (
      jax.jit(lambda v, w_: sum(_dot(v[j], w_[j]) for j in range(t * t)).reshape(g.shape)),
      (views, w.reshape(t * t, c, -1)), ref_y)
  for mode in ('sum', 'loop'):
    out['shift9_kgrad' + ('' if mode == 'sum' else '_' + mode)] = (
        jax.jit(functools.partial(shift9_kgrad, k_shape=k.shape, mode=mode)), (x, g), ref_dw)
  for mode in ('sum', 'outshift'):
    out['shift9_igrad' + ('' if mode == 'sum' else '_' + mode)] = (
        jax.jit(functools.partial(shift9_igrad, x_shape=x.shape, mode=mode)), (g, k), ref_dx)
  return out


def _conv(a, b, s):
  return lax.conv_general_dilated(a, b, (s, s), 'SAME', dimension_numbers=DN)


def check(name, fn, args, ref):
  """Assert fn(*args) equals the lax reference (rtol 1e-4, atol 1e-4 of its max |value|)."""
  got, ref = np.asarray(fn(*args)), np.asarray(ref)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(),
                             err_msg=name)


def bf16_ops(x, k, g, s):
  """The bf16 twins of XLA's NHWC forward, input and kernel gradients (module docstring)."""
  xb, kb, gb = (jnp.asarray(v, jnp.bfloat16) for v in (x, k, g))
  conv = lambda a, b, t=None: lax.conv_general_dilated(a, b, (s, s), 'SAME',
                                                       dimension_numbers=DN,
                                                       preferred_element_type=t)
  out = {
      'jax_fwd_bf16': (jax.jit(lambda a, b: conv(a, b, jnp.float32)), (xb, kb)),
      'jax_fwd_bf16out': (jax.jit(conv), (xb, kb)),
      'jax_dx_bf16': (jax.jit(lambda a, b, c: jax.vjp(lambda a_: conv(a_, b), a)[1](c)[0]),
                      (xb, kb, gb)),
      'jax_dw_bf16': (jax.jit(lambda a, b, c: jax.vjp(lambda b_: conv(a, b_), b)[1](c)[0]),
                      (xb, kb, gb)),
      'jax_dw_tap_bf16': (jax.jit(lambda a, c: conv_matmul.kernel_grad(a, c, 5, s)), (xb, gb)),
  }
  if s == 2:
    s2d = layers._conv_s2d  # pylint: disable=protected-access
    out['jax_dx_s2d_bf16'] = (
        jax.jit(lambda a, b, c: jax.vjp(lambda a_: s2d(a_, b), a)[1](c)[0]), (xb, kb, gb))
  return out


def fc_ops(batch, n_in, n_out, dtype):
  """{name: (callable, args)}: forward, input and kernel gradient of x @ W, f32 and bf16."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, n_in), np.float32)
  w = 0.01 * rng.standard_normal((n_in, n_out), np.float32)
  g = rng.standard_normal((batch, n_out), np.float32)
  dot = lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32)
  out = {}
  for tag, t in [('', jnp.float32)] + ([('_bf16', jnp.bfloat16)] if dtype == 'bfloat16'
                                       else []):
    xt, wt, gt = (jnp.asarray(v, t) for v in (x, w, g))
    out['fc_fwd' + tag] = (jax.jit(dot), (xt, wt))
    out['fc_dx' + tag] = (jax.jit(lambda c, b: dot(c, b.T)), (gt, wt))
    out['fc_dw' + tag] = (jax.jit(lambda a, c: dot(a.T, c)), (xt, gt))
  return out


def ops(batch, side, cin, cout, s, dtype='float32'):
  """{name: (callable, args)} for one layer's forward, input and kernel gradients."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, side, side, cin), np.float32)
  k = 0.05 * rng.standard_normal((5, 5, cin, cout), np.float32)
  g = rng.standard_normal((batch, side // s, side // s, cout), np.float32)
  conv = lambda a, b: _conv(a, b, s)
  out = {
      'jax_fwd': (jax.jit(conv), (x, k)),
      'jax_im2col_fwd': (jax.jit(lambda a, b: im2col_forward(a, b, s)), (x, k)),
      'jax_dx': (jax.jit(lambda a, b, c: jax.vjp(lambda a_: conv(a_, b), a)[1](c)[0]),
                 (x, k, g)),
      'jax_dw': (jax.jit(lambda a, b, c: jax.vjp(lambda b_: conv(a, b_), b)[1](c)[0]),
                 (x, k, g)),
      'jax_dw_tap': (jax.jit(lambda a, c: conv_matmul.kernel_grad(a, c, 5, s)), (x, g)),
  }
  # The same convolution channels-first: inputs transposed once, outside the timed op.
  xc, kc, gc = x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1), g.transpose(0, 3, 1, 2)
  conv_c = lambda a, b: lax.conv_general_dilated(a, b, (s, s), 'SAME',
                                                 dimension_numbers=DN_NCHW)
  out['jax_fwd_nchw'] = (jax.jit(conv_c), (xc, kc))
  out['jax_dx_nchw'] = (jax.jit(lambda a, b, c: jax.vjp(lambda a_: conv_c(a_, b), a)[1](c)[0]),
                        (xc, kc, gc))
  out['jax_dw_nchw'] = (jax.jit(lambda a, b, c: jax.vjp(lambda b_: conv_c(a, b_), b)[1](c)[0]),
                        (xc, kc, gc))
  if s == 2:
    s2d = layers._conv_s2d  # pylint: disable=protected-access
    out['jax_dx_s2d'] = (jax.jit(lambda a, b, c: jax.vjp(lambda a_: s2d(a_, b), a)[1](c)[0]),
                         (x, k, g))
  xt, kt, gt = tf.constant(x), tf.constant(k), tf.constant(g)
  strides = [1, s, s, 1]
  out['tf_fwd'] = (tf.function(lambda a, b: tf.nn.conv2d(a, b, s, 'SAME')), (xt, kt))
  out['tf_dx'] = (tf.function(lambda b, c: tf.raw_ops.Conv2DBackpropInput(
      input_sizes=x.shape, filter=b, out_backprop=c, strides=strides, padding='SAME')),
                  (kt, gt))
  out['tf_dw'] = (tf.function(lambda a, c: tf.raw_ops.Conv2DBackpropFilter(
      input=a, filter_sizes=k.shape, out_backprop=c, strides=strides, padding='SAME')),
                  (xt, gt))
  if dtype == 'bfloat16':
    out.update(bf16_ops(x, k, g, s))
  if s == 2:
    out.update(shift9_ops(x, k, g))
  return out


def run(fn, args):
  y = fn(*args)
  return y.numpy() if hasattr(y, 'numpy') else jax.block_until_ready(y)


def time_interleaved(fns, rounds, stat='min'):
  """({name: ms}, {name: CPU ms}) over rounds (min or median), the variants run in turn
  within each round. An entry (fn, args, ref) is checked against ref first (`check`)."""
  for name, (fn, args, *ref) in fns.items():
    run(fn, args)
    if ref:
      check(name, fn, args, ref[0])
  wall, cpu = {}, {}
  for _ in range(rounds):
    for name, (fn, args, *_) in fns.items():
      t, c = time.perf_counter(), time.process_time()
      run(fn, args)
      wall.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
      cpu.setdefault(name, []).append((time.process_time() - c) * 1e3)
  reduce = np.min if stat == 'min' else np.median
  return ({n: round(float(reduce(v)), 1) for n, v in wall.items()},
          {n: round(float(reduce(v)), 1) for n, v in cpu.items()})


def report(layer, a, times):
  line = {'layer': layer, 'batch': a.batch, 'stat': a.stat, 'ms': times[0]}
  if a.cpu:
    line['cpu_ms'] = times[1]
  print(json.dumps(line), flush=True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--rounds', type=int, default=5)
  p.add_argument('--width', type=float, default=1.0, help='channel multiplier (quick: 0.125)')
  p.add_argument('--dtype', choices=['float32', 'bfloat16'], default='float32',
                 help='bfloat16: add the bf16 twin of each XLA NHWC op')
  p.add_argument('--ops', default='', help='regex: time only the variants it matches')
  p.add_argument('--layers', default='', help='comma-separated LAYERS indices (default all)')
  p.add_argument('--fc', action='store_true', help='also the big fully connected layers')
  p.add_argument('--stat', choices=['min', 'median'], default='min', help='over rounds')
  p.add_argument('--cpu', action='store_true', help='also report process CPU ms')
  a = p.parse_args()
  tf.get_logger().setLevel('ERROR')  # one tf.function per op and layer: retracing notes
  keep = lambda fns: {n: f for n, f in fns.items() if re.search(a.ops, n)}
  picked = [LAYERS[int(i)] for i in a.layers.split(',')] if a.layers else LAYERS
  for side, cin, cout, s in picked:
    if cin not in (1, 10):
      cin = layers.scaled(cin, a.width)
    cout = layers.scaled(cout, a.width)
    fns = keep(ops(a.batch, side, cin, cout, s, a.dtype))
    report(f'{side}x{side}x{cin}->{cout} s{s}', a, time_interleaved(fns, a.rounds, a.stat))
  for name, pos_in, c_in, pos_out, c_out in FC_LAYERS if a.fc else []:
    n_in, n_out = pos_in * layers.scaled(c_in, a.width), pos_out * layers.scaled(c_out, a.width)
    fns = keep(fc_ops(a.batch, n_in, n_out, a.dtype))
    report(f'{name} {n_in}->{n_out}', a, time_interleaved(fns, a.rounds, a.stat))


if __name__ == '__main__':
  main()
