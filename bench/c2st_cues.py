"""Which cues the automated Turing test reads: its accuracy with one cue taken away.

  python bench/c2st_cues.py --workdir=workdir/quick --folds=0,1

For each fold of a finished reproduce run, the C2ST (cisl_jax/c2st.py, the quality
stage's converged critic) of the decoder's output (generated_raw/ where the run
intensity-matched its set) against the real training patches:
  raw:      as the decoder drew it;
  matched:  each sign's generated pixel values mapped, by one monotone function per
            sign, onto the quantiles of that sign's real pixel values (histogram
            matching, cisl_jax/intensity_match.py, what configs/generate.py's
            match_intensities does): the densities are then the real ones and only
            layout is left;
  blurred:  both sets smoothed by a Gaussian of sigma 1 pixel, which removes the grain;
  matched, blurred: both.
A reading that falls once the histograms are matched measures how much the critic
relies on densities; a critic that did not train is trained again at a tenth of the
rate (cisl_jax/c2st.py) and its JSON line lists the halves. One JSON line per fold and
case, then a Markdown table.
Expected runtime, 2 quiet CPU cores: ~1.5 minutes per fold and case.
"""
import json
import os
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import c2st_budget  # bench/c2st_budget.py  # pylint: disable=g-bad-import-order
import numpy as np  # pylint: disable=g-import-not-at-top
from scipy import ndimage  # pylint: disable=g-import-not-at-top

from cisl_jax import c2st  # pylint: disable=g-import-not-at-top
from cisl_jax import intensity_match  # pylint: disable=g-import-not-at-top
from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax import workdir as wd  # pylint: disable=g-import-not-at-top
from cisl_jax.quality import stage as quality_stage  # pylint: disable=g-import-not-at-top


def blur(x: np.ndarray) -> np.ndarray:
  return ndimage.gaussian_filter(x, (0, 1, 1, 0))


def main():
  p = c2st_budget.run_arguments(__doc__)
  p.add_argument('--seed', type=int, default=0, help="the critic's seed")
  args = p.parse_args()
  rows = {}
  for fold in args.folds:
    xr, yr, xg, yg = c2st_budget.fold_patches(args.workdir, fold, args.data_dir, raw=True)
    matched, _ = intensity_match.match(xg, yg, xr, yr)
    xr_blurred = blur(xr)
    cases = {'raw': (xr, xg), 'matched': (xr, matched), 'blurred': (xr_blurred, blur(xg)),
             'matched, blurred': (xr_blurred, blur(matched))}
    for case, (real, gen) in cases.items():
      start = time.time()
      result = c2st.c2st(real, yr, gen, yg, signs.SIGNS, seed=args.seed)
      r = result['overall']
      rows[(fold, case)] = r['c2st']
      print(json.dumps({'fold': fold, 'case': case, 'c2st': round(r['c2st'], 4),
                        'fake_as_real': round(r['fake_as_real'], 4), 'n': r['n'],
                        'retrained_halves': result['critic'].get('retrained_halves', []),
                        'seconds': round(time.time() - start, 1)}), flush=True)
  names = ('raw', 'matched', 'blurred', 'matched, blurred')
  source = quality_stage.data_settings(common.load_config('reproduce', 'quick'), os.path.join(
      args.workdir, f'fold{args.folds[0]}', wd.GENERATE))['source']
  note = ' (PHANTOM: synthetic images, no claim about patients)' if source == 'phantom' else ''
  print(f'\nC2ST by case, data {source}{note}, load {os.getloadavg()[0]:.2f}:\n')
  print('| fold | ' + ' | '.join(names) + ' |')
  print('|---:|' + '---:|' * len(names))
  for fold in args.folds:
    print(f'| {fold} | ' + ' | '.join(f'{rows[(fold, n)]:.3f}' for n in names) + ' |')


if __name__ == '__main__':
  main()
