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
"""
import argparse
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
  conv = lambda a, b: lax.conv_general_dilated(a, b, (s, s), 'SAME', dimension_numbers=DN)
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
  return out


def run(fn, args):
  y = fn(*args)
  return y.numpy() if hasattr(y, 'numpy') else jax.block_until_ready(y)


def time_interleaved(fns, rounds):
  """{name: min ms over rounds}, the variants run in turn within each round."""
  for fn, args in fns.values():
    run(fn, args)
  best = {}
  for _ in range(rounds):
    for name, (fn, args) in fns.items():
      t = time.perf_counter()
      run(fn, args)
      best[name] = min(best.get(name, 1e9), (time.perf_counter() - t) * 1e3)
  return {n: round(v, 1) for n, v in best.items()}


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
  a = p.parse_args()
  tf.get_logger().setLevel('ERROR')  # one tf.function per op and layer: retracing notes
  keep = lambda fns: {n: f for n, f in fns.items() if re.search(a.ops, n)}
  picked = [LAYERS[int(i)] for i in a.layers.split(',')] if a.layers else LAYERS
  for side, cin, cout, s in picked:
    if cin not in (1, 10):
      cin = layers.scaled(cin, a.width)
    cout = layers.scaled(cout, a.width)
    fns = keep(ops(a.batch, side, cin, cout, s, a.dtype))
    print(json.dumps({'layer': f'{side}x{side}x{cin}->{cout} s{s}', 'batch': a.batch,
                      'ms': time_interleaved(fns, a.rounds)}), flush=True)
  for name, pos_in, c_in, pos_out, c_out in FC_LAYERS if a.fc else []:
    n_in, n_out = pos_in * layers.scaled(c_in, a.width), pos_out * layers.scaled(c_out, a.width)
    fns = keep(fc_ops(a.batch, n_in, n_out, a.dtype))
    print(json.dumps({'layer': f'{name} {n_in}->{n_out}', 'batch': a.batch,
                      'ms': time_interleaved(fns, a.rounds)}), flush=True)


if __name__ == '__main__':
  main()
