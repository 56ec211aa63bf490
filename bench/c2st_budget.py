"""How the automated Turing test's reading depends on its critic's training budget.

  python bench/c2st_budget.py --workdir=workdir/quick --folds=0,1 \
      --steps=150,300,600,1200 --lrs=1e-3,1e-2 --seeds=0,1,2

For each fold of a finished reproduce run, the C2ST (cisl_jax/c2st.py) of that fold's
generated set against its real training patches, for every critic budget (steps per
half x learning rate) and critic seed: one JSON line each, then a Markdown table of the
means over seeds. A reading that still rises with the budget is a critic not yet
converged, and it under-reports how easily the fakes are caught; the quality stage's
default budget is where the curve levels off. Expected runtime, 2 quiet CPU cores:
~6 s per 100 steps and fold.
"""
import argparse
import json
import os
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import numpy as np  # pylint: disable=g-import-not-at-top

from cisl_jax import c2st  # pylint: disable=g-import-not-at-top
from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax import workdir as wd  # pylint: disable=g-import-not-at-top
from cisl_jax.quality import stage as quality_stage  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top


def _ints(text):
  return [int(v) for v in text.split(',')]


def fold_patches(workdir: str, fold: int, data_dir: str | None, raw: bool = False):
  """(real sign patches, their codes, generated patches, their codes) of one fold; with
  `raw`, the decoder's output before an intensity match where the run matched."""
  generate_dir = os.path.join(workdir, f'fold{fold}', wd.GENERATE)
  settings = quality_stage.data_settings(
      common.load_config('reproduce', 'quick'), generate_dir)
  real = input_pipeline.load_split(data_dir or settings['data_dir'], settings['source'],
                                   [f for f in range(settings['num_folds']) if f != fold])
  gen_dir = quality_stage.find_generated(generate_dir)
  raw_dir = quality_stage.raw_generated(gen_dir) if raw else None
  gen = input_pipeline.load_generated(raw_dir or gen_dir)
  xr, yr = gan.sign_patches(real)
  return xr, yr, np.asarray(gen['image']), np.asarray(gen['label'])


def run_arguments(doc: str) -> argparse.ArgumentParser:
  """A parser with the flags that name a finished reproduce run and its folds."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  p.add_argument('--workdir', required=True, help='a finished reproduce run')
  p.add_argument('--data_dir', default=None,
                 help="the run's dataset, where the path it recorded (relative to the folder "
                      'it ran in) does not resolve from here')
  p.add_argument('--folds', type=_ints, default=[0])
  return p


def main():
  p = run_arguments(__doc__)
  p.add_argument('--steps', type=_ints, default=[150, 300, 600, 1200])
  p.add_argument('--lrs', type=lambda t: [float(v) for v in t.split(',')],
                 default=[1e-3, 3e-3, 1e-2])
  p.add_argument('--seeds', type=_ints, default=[0, 1])
  args = p.parse_args()
  means = {}
  for fold in args.folds:
    xr, yr, xg, yg = fold_patches(args.workdir, fold, args.data_dir)
    for steps in args.steps:
      for lr in args.lrs:
        readings = []
        for seed in args.seeds:
          start = time.time()
          r = c2st.c2st(xr, yr, xg, yg, signs.SIGNS, steps=steps, lr=lr, seed=seed)['overall']
          readings.append(r['c2st'])
          print(json.dumps({'fold': fold, 'steps': steps, 'lr': lr, 'seed': seed,
                            'c2st': round(r['c2st'], 4), 'n': r['n'],
                            'seconds': round(time.time() - start, 1)}), flush=True)
        means[(fold, steps, lr)] = float(np.mean(readings))
  print(f'\nC2ST, mean over critic seeds {args.seeds} (load {os.getloadavg()[0]:.2f}):\n')
  print('| fold | steps | ' + ' | '.join(f'lr {lr:g}' for lr in args.lrs) + ' |')
  print('|---:|---:|' + '---:|' * len(args.lrs))
  for fold in args.folds:
    for steps in args.steps:
      print(f'| {fold} | {steps} | '
            + ' | '.join(f'{means[(fold, steps, lr)]:.3f}' for lr in args.lrs) + ' |')


if __name__ == '__main__':
  main()
