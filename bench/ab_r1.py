"""What the R1 penalty costs: the demo's GAN iteration without R1, with R1 on every
iteration and with lazy R1 (every 16th), in ONE process, interleaved.

  python bench/ab_r1.py --rounds 3 --steps 16
configs/train_gan.py:quick (width 0.125, batch 32, recipe 'improved') on a fixed random
batch, on the fast convolutions (`--plain`: the plain ones). R1 differentiates D twice
(its input gradient, then that gradient's parameter gradient), on a second forward of D
in the plain layer forms (layers.plain_forms). --steps should be a multiple of 16, so
that each round holds whole lazy periods. Per round and arm: CPU ms
(time.process_time, all threads) and wall ms per iteration after two warm-up iterations,
and the first two iterations' losses (SGD 1e-3, so that the fast and plain forms can be
compared). One JSON line per round and arm, then the median CPU ms per arm.
"""
import argparse
import json
import os
import statistics
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import optax  # pylint: disable=g-import-not-at-top

from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top

ARMS = ((0.0, 1), (1.0, 1), (1.0, 16))  # (r1_gamma, r1_every)


def build(r1_gamma: float, r1_every: int, fast: bool):
  c = common.load_config('train_gan', 'quick')
  c.gan.improved.r1_gamma, c.gan.improved.r1_every, c.fast_conv = r1_gamma, r1_every, fast
  tx = optax.sgd(1e-3)
  init_key, _, train_key = train_common.split_keys(0)
  graphdef, state = gan.init_state(c, init_key, tx)
  return gan.make_train_step(c, tx), graphdef, state, train_key, c.batch_size


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=16)
  p.add_argument('--plain', action='store_true', help='plain nnx convolutions throughout')
  args = p.parse_args()
  arms = {}
  for gamma, every in ARMS:
    step, graphdef, state, key, batch_size = build(gamma, every, not args.plain)
    batch = {'image': np.asarray(jax.random.uniform(jax.random.key(4), (batch_size, 64, 64, 1),
                                                    minval=-1, maxval=1)),
             'label': np.arange(batch_size) % 9}
    losses = []
    for _ in range(2):  # warm-up and compile; the losses compare fast with --plain
      state, m = step(graphdef, state, batch, key)
      losses.append([round(float(m[k]), 5) for k in ('loss_c', 'loss_d', 'loss_g')])
    arms[(gamma, every)] = [step, graphdef, state, key, batch, losses, []]
  print(json.dumps({'load': os.getloadavg()}))
  for r in range(args.rounds):
    for arm in (ARMS if r % 2 == 0 else ARMS[::-1]):
      step, graphdef, state, key, batch, losses, cpu = arms[arm]
      t, c = time.perf_counter(), time.process_time()
      for _ in range(args.steps):
        state, m = step(graphdef, state, batch, key)
      jax.block_until_ready(m['loss_d'])
      cpu_ms = (time.process_time() - c) / args.steps * 1e3
      wall_ms = (time.perf_counter() - t) / args.steps * 1e3
      arms[arm][2] = state
      cpu.append(cpu_ms)
      print(json.dumps({'round': r, 'r1_gamma': arm[0], 'r1_every': arm[1],
                        'fast_conv': not args.plain,
                        'cpu_ms': round(cpu_ms, 1), 'wall_ms': round(wall_ms, 1),
                        'first_losses': losses}))
  print(json.dumps({'load': os.getloadavg(), 'median_cpu_ms': {
      f'r1_gamma={g:g},r1_every={e}': round(statistics.median(arms[(g, e)][6]), 1)
      for g, e in ARMS}}))


if __name__ == '__main__':
  main()
