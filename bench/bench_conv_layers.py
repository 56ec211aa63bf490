"""Per-layer timing of the stride-2 convolution forms (plain XLA vs the fast forms).

  python bench/bench_conv_layers.py --batch 64 --rounds 5
For each strided conv of the classifier and each transposed conv of the decoder, the
jitted forward + input gradient + kernel gradient, plain (lax) against the form used by
cisl_jax.models.layers; variants are interleaved and the minimum over rounds is
reported (the machine may be shared). One JSON line per layer, times in ms.
"""
import argparse
import json
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order,unused-import

import jax  # pylint: disable=g-import-not-at-top
from jax import lax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from cisl_jax.models import layers  # pylint: disable=g-import-not-at-top

DN = ('NHWC', 'HWIO', 'NHWC')
FORMS = {
    'conv': {'plain': lambda x, k: lax.conv_general_dilated(x, k, (2, 2), 'SAME',
                                                            dimension_numbers=DN),
             'space_to_depth': layers._conv_s2d,  # pylint: disable=protected-access
             'fast': layers.conv_stride2},
    'conv_transpose': {'plain': lambda x, k: lax.conv_transpose(x, k, (2, 2), 'SAME',
                                                                dimension_numbers=DN),
                       'fast': layers.conv_transpose_stride2},
}
LAYERS = [('conv', 64, 32, 64), ('conv', 32, 64, 128), ('conv', 16, 128, 256),
          ('conv_transpose', 4, 256, 128), ('conv_transpose', 8, 128, 64),
          ('conv_transpose', 16, 64, 32), ('conv_transpose', 32, 32, 1)]


def grad_fn(form, cotangent):
  return jax.jit(lambda x, k: jax.grad(lambda x_, k_: jnp.sum(form(x_, k_) * cotangent),
                                       argnums=(0, 1))(x, k))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--rounds', type=int, default=5)
  a = p.parse_args()
  key = jax.random.key(0)
  for kind, side, cin, cout in LAYERS:
    x = jax.random.normal(key, (a.batch, side, side, cin))
    k = 0.05 * jax.random.normal(key, (5, 5, cin, cout))
    out_side = side // 2 if kind == 'conv' else side * 2
    g = jnp.ones((a.batch, out_side, out_side, cout))
    fns = {name: grad_fn(f, g) for name, f in FORMS[kind].items()}
    best = {}
    for f in fns.values():
      jax.block_until_ready(f(x, k))
    for _ in range(a.rounds):
      for name, f in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(f(x, k))
        best[name] = min(best.get(name, 1e9), (time.perf_counter() - t) * 1e3)
    print(json.dumps({'layer': f'{kind} {side}x{side}x{cin}->{cout}', 'batch': a.batch,
                      'ms_fwd_dx_dw': {n: round(v, 1) for n, v in best.items()}}), flush=True)


if __name__ == '__main__':
  main()
