"""One process of an A/B of the stride-2 kernel gradient: tap matmul or XLA's own.

  for r in 1 2 3; do for t in 32 1000000; do
    python bench/ab_kernel_grad.py classifier $t; done; done     # (or cvaegan)
Sets layers.TAP_MATMUL_MIN_CHANNELS (32: the default, the tap matmul from 32 input
channels up; 1000000: XLA's own backward-filter convolution everywhere) before anything
is traced, runs the real train step of bench_classifier.py / bench_cvaegan.py at batch
64, width 1 (2 warm-up steps, then 10 / 5 timed) and prints one JSON line: wall and
process-CPU ms per step and the last loss. Alternate the two settings in separate
processes, as above, so that both see the same load.
"""
import json
import sys
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order,unused-import

from cisl_jax.models import layers  # pylint: disable=g-import-not-at-top

model, threshold = sys.argv[1], int(sys.argv[2])
layers.TAP_MATMUL_MIN_CHANNELS = threshold
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
if model == 'classifier':
  import bench_classifier as b  # pylint: disable=g-import-not-at-top
else:
  import bench_cvaegan as b  # pylint: disable=g-import-not-at-top
step = b.make_step(64)
for _ in range(2):
  jax.block_until_ready(step())
n = 10 if model == 'classifier' else 5
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(n):
  out = step()
jax.block_until_ready(out)
print(json.dumps({'model': model, 'threshold': threshold,
                  'ms': round(1000 * (time.perf_counter() - t0) / n, 1),
                  'cpu_ms': round(1000 * (time.process_time() - c0) / n, 1), 'loss': float(out)}))
