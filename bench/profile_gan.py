"""Where the quick CVAE-GAN iteration's op time goes, by kind of XLA op (CPU backend).

  python bench/profile_gan.py --steps 5 [--variant quick]
Traces `steps` iterations of the real jitted iteration (cisl_jax.train.gan, the config's
width and batch, a fixed random batch) with jax.profiler after compiling and warming up,
sums the duration of every executed XLA thunk of the step's module over all threads,
and groups it by kind: YNNPACK/XNNPACK fusions (convolutions, dots), XLA's generic
convolutions, dots, transposes and copies, pads, sorts, reductions, and the remaining
(loop) fusions split by where their ops come from (optax: Adam; the nnx BatchNorm; the
rest: activations, losses, DiffAugment, ...), read from the compiled HLO's metadata
where it names them (on jax 0.10.2's CPU backend it mostly does not: those land in
'other').
Prints one JSON line per kind (ms per iteration, share, calls per iteration), then a
total with the wall and process CPU time of the traced iterations.
"""
import argparse
import collections
import glob
import json
import os
import re
import tempfile
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
from jax._src import profiler as profiler_lib  # pylint: disable=g-import-not-at-top

from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top

_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+(?:\s*\{[^}]*\})?\s+([\w\-]+)\(')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_SOURCE = re.compile(r'source_file="([^"]*)"')


def hlo_table(text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (opcode, 'op_name source_file' of its metadata)} of HLO text."""
  table = {}
  for line in text.splitlines():
    m = _INSTR.match(line)
    if m:
      meta = ' '.join(r.group(1) for r in (_OP_NAME.search(line), _SOURCE.search(line)) if r)
      table[m.group(1)] = (m.group(2), meta + ' ' + line)
  return table


def kind(name: str, opcode: str, line: str) -> str:
  low = name.lower()
  if 'ynn' in low or 'xnn' in low or '__ynn' in line or '__xnn' in line:
    return 'YNN/XNN fusions (convolutions, dots)'
  if opcode == 'convolution' or low.startswith(('convolution', 'conv_general_dilated')):
    return 'generic XLA convolutions'
  if opcode == 'dot' or low.startswith('dot'):
    return 'generic XLA dots'
  if opcode in ('transpose', 'copy') or 'transpose' in low or low.startswith('copy'):
    return 'transposes / copies'
  if opcode == 'pad' or low.startswith('pad'):
    return 'pads'
  if opcode == 'sort' or low.startswith('sort'):
    return 'sorts (mode seeking)'
  if 'optax' in line:
    return 'fusions: Adam (optax)'
  if 'normalization.py' in line or 'batch_norm' in line:
    return 'fusions: BatchNorm'
  if opcode in ('reduce', 'reduce-window', 'select-and-scatter') or low.startswith('reduce'):
    return 'reductions'
  if opcode == 'fusion' or 'fusion' in low:
    return 'fusions: other (activations, losses, augmentation, ...)'
  return f'other ({opcode or name.split(".")[0]})'


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--variant', default='quick')
  a = p.parse_args()
  config = common.load_config('train_gan', a.variant)
  init_key, _, train_key = train_common.split_keys(config.seed)
  tx = gan.make_optimizer(config)
  graphdef, state = gan.init_state(config, init_key, tx)
  step_fn = gan.make_train_step(config, tx)
  kx, ky = jax.random.split(jax.random.key(1))
  data = {'image': jax.random.uniform(kx, (config.batch_size, 64, 64, 1), minval=-1,
                                      maxval=1),
          'label': jax.random.randint(ky, (config.batch_size,), 0, signs.NUM_SIGNS)}
  compiled = step_fn.lower(graphdef, state, data, train_key).compile()
  table = hlo_table(compiled.as_text())
  for _ in range(3):
    state, metrics = step_fn(graphdef, state, data, train_key)
  jax.block_until_ready(metrics)
  out_dir = tempfile.mkdtemp(prefix='profile_gan_')
  t, c = time.perf_counter(), time.process_time()
  with jax.profiler.trace(out_dir):
    for _ in range(a.steps):
      state, metrics = step_fn(graphdef, state, data, train_key)
    jax.block_until_ready(metrics)
  wall, cpu = time.perf_counter() - t, time.process_time() - c
  path = sorted(glob.glob(os.path.join(out_dir, '**', '*.xplane.pb'), recursive=True))[-1]
  data_ = profiler_lib.ProfileData.from_file(path)
  ns, calls, modules = collections.Counter(), collections.Counter(), collections.Counter()
  for plane in data_.planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if 'hlo_op' not in stats:
          continue
        modules[stats.get('hlo_module')] += event.duration_ns
        if 'train_step' not in str(stats.get('hlo_module')):
          continue
        name = stats['hlo_op']
        opcode, meta = table.get(name, ('', ''))
        k = kind(name, opcode, meta)
        ns[k] += event.duration_ns
        calls[k] += 1
  total = sum(ns.values())
  for k, v in ns.most_common():
    print(json.dumps({'kind': k, 'ms_per_iteration': round(v / 1e6 / a.steps, 1),
                      'share': round(v / total, 3),
                      'calls_per_iteration': round(calls[k] / a.steps, 1)}), flush=True)
  print(json.dumps({'total_op_ms_per_iteration': round(total / 1e6 / a.steps, 1),
                    'traced_wall_ms_per_iteration': round(wall * 1e3 / a.steps, 1),
                    'traced_cpu_ms_per_iteration': round(cpu * 1e3 / a.steps, 1),
                    'modules_ms': {str(m): round(v / 1e6, 1) for m, v in modules.items()},
                    'width': config.width, 'batch': config.batch_size,
                    'load': os.getloadavg(), 'trace': path}), flush=True)


if __name__ == '__main__':
  main()
