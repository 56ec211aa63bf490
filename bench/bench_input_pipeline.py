"""Throughput of the training input pipeline (patches per second), not a test.

  python bench/bench_input_pipeline.py --batch 64 --steps 500 [--data_dir data --source phantom]

Measures `input_pipeline.train_batches` end to end (shuffle, gather, batch, prefetch,
numpy out). With --data_dir it reads the built dataset's folds; without, a random set
the size of a paper pre-training set for one binary task (2 x 18000 patches) or
--num_examples. Pin it to 2 cores with `taskset -c 0,1` to match the team's machine.
Prints one JSON line like ../shared/peers.
"""
import argparse
import json
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # pylint: disable=g-import-not-at-top

from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=500)
  p.add_argument('--warmup', type=int, default=20)
  p.add_argument('--num_examples', type=int, default=36000)
  p.add_argument('--data_dir', default=None)
  p.add_argument('--source', default='phantom')
  a = p.parse_args()
  if a.data_dir:
    arrays = input_pipeline.load_split(a.data_dir, a.source, [0, 1])
    images, labels = input_pipeline.ten_class_task(arrays)
    what = f'cisl_patches/{a.source} folds 0+1'
  else:
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (a.num_examples, 64, 64, 1)).astype(np.float32)
    labels = rng.integers(0, 10, a.num_examples).astype(np.int32)
    what = 'random'
  it = input_pipeline.train_batches(images, labels, a.batch, seed=0)
  for _ in range(a.warmup):
    next(it)
  t = time.perf_counter()
  total = 0.0
  for _ in range(a.steps):
    b = next(it)
    total += float(b['image'][0, 0, 0, 0])  # touch the batch so it is materialised
  dt = time.perf_counter() - t
  print(json.dumps({'impl': 'cisl_jax.input_pipeline', 'bench': 'train_batches',
                    'data': what, 'num_examples': int(len(labels)), 'batch': a.batch,
                    'steps': a.steps, 'cpus': len(os.sched_getaffinity(0)),
                    'ms_per_batch': round(dt / a.steps * 1e3, 3),
                    'patches_per_s': round(a.batch * a.steps / dt, 1)}))


if __name__ == '__main__':
  main()
