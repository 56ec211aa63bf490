"""Shared timing loop and config loading for the benchmarks (the peers' method and format).

Like ../shared/peers: 3 warm-up steps, then `steps` timed steps with perf_counter,
blocking on the result; one JSON line {"impl", "model", "batch", "steps",
"ms_per_step", "img_per_s"} on stdout.
"""
import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any, Callable

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import jax  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def load_config(name: str, variant: str):
  """configs/<name>.py:get_config(variant), loaded by path as config_flags does."""
  from cisl_jax import config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load(REPO / 'configs' / f'{name}.py', variant)


def time_steps_with_cpu(step: Callable[[], Any], steps: int,
                        warmup: int = 3) -> tuple[float, float]:
  """(wall seconds, process CPU seconds) per call of `step` (returns arrays to block on).

  CPU seconds (all threads) move less than wall seconds when the machine is shared.
  """
  for _ in range(warmup):
    jax.block_until_ready(step())
  t, c = time.perf_counter(), time.process_time()
  out = None
  for _ in range(steps):
    out = step()
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / steps, (time.process_time() - c) / steps


def time_steps(step: Callable[[], Any], steps: int, warmup: int = 3) -> float:
  """Wall seconds per call of `step` (which returns arrays to block on)."""
  return time_steps_with_cpu(step, steps, warmup)[0]


def report(model: str, batch: int, steps: int, seconds: float, items: int | None = None,
           impl: str = 'jax', **extra) -> dict[str, Any]:
  """Prints and returns the peers' JSON line; `items` per step defaults to the batch."""
  items = batch if items is None else items
  line = {'impl': impl, 'model': model, 'batch': batch, 'steps': steps,
          'ms_per_step': round(seconds * 1e3, 2), 'img_per_s': round(items / seconds, 1),
          **extra}
  print(json.dumps(line), flush=True)
  return line


def step_benchmark_main(model: str,
                        make_step: Callable[[int, float, bool], Callable[[], Any]],
                        default_steps: int) -> None:
  """The command line of a train-step benchmark: --batch, --steps, --width, --plain.

  `make_step(batch, width, fast_conv)`; --plain sets config.fast_conv=False: the plain
  nnx stride-2 convolutions, to measure what cisl_jax/models/layers.py's forms buy.
  --tap_matmul_min_channels sets layers.TAP_MATMUL_MIN_CHANNELS before anything is
  traced (1000000: XLA's own stride-2 kernel gradient everywhere); the line then names it.
  """
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=default_steps)
  p.add_argument('--width', type=float, default=1.0, help='channel multiplier (paper: 1)')
  p.add_argument('--plain', action='store_true',
                 help='plain nnx stride-2 convolutions (the straightforward version)')
  p.add_argument('--tap_matmul_min_channels', type=int, default=None,
                 help='input channels from which the stride-2 kernel gradient is one tap '
                 "matmul (default: layers.py's)")
  a = p.parse_args()
  extra = {}
  if a.tap_matmul_min_channels is not None:
    from cisl_jax.models import layers  # pylint: disable=g-import-not-at-top
    layers.TAP_MATMUL_MIN_CHANNELS = extra['tap_matmul_min_channels'] = \
        a.tap_matmul_min_channels
  seconds, cpu = time_steps_with_cpu(make_step(a.batch, a.width, not a.plain), a.steps)
  report(model, a.batch, a.steps, seconds, impl='jax-plain' if a.plain else 'jax',
         width=a.width, cpu_ms_per_step=round(cpu * 1e3, 1), **extra)
