"""The roofline of the train-step benchmarks: this machine's matmul peak and each step's work.

  python bench/roofline.py peak                       # f32 and bf16 matmul GFLOP/s
  python bench/roofline.py flops --model classifier   # GFLOP per image of one train step
Each prints one JSON line; bench/run.py runs both and adds every implementation's
GFLOP/s (img/s x GFLOP per image) and its share of the f32 peak to its lines.

- Peak: the best of `rounds` timed (n x n) @ (n x n) products through XLA, with every
  core the process may use (XLA's CPU thread pool); bf16 inputs accumulate in f32.
- Work: FLOPs of the straightforward step (plain nnx layers, the paper's networks) as
  XLA's cost analysis counts them (HloCostAnalysis: multiply-adds x 2, padding and
  dilation holes not counted, elementwise ops included), divided by the batch. The
  Keras and PyTorch peers run the same networks and losses, so the same figure is
  their work per image; our fast forms compute the same maps (their own count would
  include the zero taps of the space-to-depth kernels, which is not useful work).
"""
import argparse
import json
import os
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top


def matmul_peak(dtype, n: int = 2048, rounds: int = 10) -> float:
  """Best GFLOP/s of an (n, n) @ (n, n) product in `dtype` (f32 accumulation)."""
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n)).astype(dtype)
  b = jax.random.normal(kb, (n, n)).astype(dtype)
  f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  jax.block_until_ready(f(a, b))
  best = float('inf')
  for _ in range(rounds):
    t = time.perf_counter()
    jax.block_until_ready(f(a, b))
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best / 1e9


def step_flops(model: str, batch: int, width: float) -> float:
  """FLOPs of one straightforward train step of `model` (XLA cost analysis)."""
  import bench_classifier  # pylint: disable=g-import-not-at-top
  import bench_cvaegan  # pylint: disable=g-import-not-at-top
  make = {'classifier': bench_classifier.make_step_fn, 'cvaegan': bench_cvaegan.make_step_fn}
  step_fn, args = make[model](batch, width, fast_conv=False)  # plain nnx layers
  cost = step_fn.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def main():
  p = argparse.ArgumentParser()
  p.add_argument('what', choices=['peak', 'flops'])
  p.add_argument('--model', choices=['classifier', 'cvaegan'], default='classifier')
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--width', type=float, default=1.0)
  p.add_argument('--n', type=int, default=2048, help='matmul size for the peak')
  p.add_argument('--rounds', type=int, default=10)
  a = p.parse_args()
  if a.what == 'peak':
    line = {'roofline': 'matmul_peak', 'n': a.n,
            'threads': len(os.sched_getaffinity(0)),
            'f32_gflops': round(matmul_peak(jnp.float32, a.n, a.rounds), 1),
            'bf16_gflops': round(matmul_peak(jnp.bfloat16, a.n, a.rounds), 1)}
  else:
    flops = step_flops(a.model, a.batch, a.width)
    line = {'roofline': 'flops', 'model': a.model, 'batch': a.batch, 'width': a.width,
            'gflop_per_img': round(flops / a.batch / 1e9, 4),
            'counted': 'XLA cost analysis of the straightforward step'}
  print(json.dumps(line), flush=True)


if __name__ == '__main__':
  main()
