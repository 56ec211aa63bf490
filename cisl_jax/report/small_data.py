"""The report's small-data curve (beyond the paper): 10-class AC and mean SE against the
share of real training patches, for scratch, traditional augmentation and GAN
pre-training + fine-tuning.

A point at share p < 1 is `fold<k>/share<p%>_ten_<method>` (reproduce.py's small-data
stages: GAN, generation and classifiers all on one seeded, stratified p of the training
patches); the 100% point is the main run's `fold<k>/ten_<method>`. Every point is taken
over the same folds (those where all its stages finished), so that the main run's extra
folds do not make 100% look steadier than the shares. Intervals: the 95% bootstrap over
the held-out patches of those folds (results.class_cells); the table adds the std over
folds where more than one ran.
"""
import math
import pathlib

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cisl_jax import signs
from cisl_jax import workdir as wd
from cisl_jax.report import results
from cisl_jax.report import unmeasured

METHODS = ('scratch', 'traditional', 'finetune')
TITLES = {'scratch': 'scratch', 'traditional': 'traditional augmentation',
          'finetune': 'GAN pre-training + fine-tuning'}
COLORS = {'scratch': 'tab:gray', 'traditional': 'tab:orange', 'finetune': 'tab:blue'}
FIGURE = 'small_data_curve.png'
HOW = '--config.small_data_shares=0.25,0.5 --config.small_data_folds=0'
TITLE = '## Small-data curve (beyond the paper)'


def stage(share: float, method: str) -> str:
  """The 10-class stage of `method` at `share` (1: the main run's)."""
  return wd.ten_stage(method) if share == 1 else wd.share_stage(share, wd.ten_stage(method))


def finished_folds(workdir, share: float) -> set[int]:
  """Folds where every method of the curve finished at `share`."""
  folds = set(wd.fold_dirs(workdir))
  for m in METHODS:
    folds &= set(results.stage_predictions(workdir, stage(share, m)))
  return folds


def curve(workdir, shares) -> tuple[list[int], dict[float, dict[str, results.Cell]]]:
  """(folds, {share: {method: mean-row Cell}}) over the folds where the 100% point and
  every share measured at all finished; shares measured on none of them are left out."""
  measured = {p: f for p in shares if (f := finished_folds(workdir, p))}
  folds = finished_folds(workdir, 1.0)
  for f in measured.values():
    folds &= f
  folds = sorted(folds)
  if not folds or not measured:
    return folds, {}
  points = {p: {m: results.class_cells(workdir, stage(p, m), folds=folds)[None]
                for m in METHODS} for p in sorted(measured) + [1.0]}
  return folds, points


def figure(points, folds, num_test: int, chance_ac: float | None, source: str,
           path) -> pathlib.Path:
  """Two panels (10-class AC, mean SE) against the share, one line per method, with the
  95% bootstrap intervals as bars."""
  fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.9))
  shares = sorted(points)
  x = np.array([100 * p for p in shares])
  for ax, (i, name, chance) in zip(axes, ((0, '10-class AC', chance_ac),
                                          (1, '10-class mean SE', 1 / signs.NUM_CLASSES))):
    for m in METHODS:
      mean = np.array([points[p][m].mean[i] for p in shares])
      lo, hi = (np.array([points[p][m].ci[i][j] for p in shares]) for j in (0, 1))
      err = np.nan_to_num(np.clip([mean - lo, hi - mean], 0, None))
      ax.errorbar(x, mean, yerr=err, color=COLORS[m], marker='o', capsize=3,
                  label=TITLES[m])
    if chance is not None:
      ax.axhline(chance, color='black', ls=':', lw=1, label='chance')
    ax.set_xticks(x, [f'{v:g}%' for v in x])
    ax.set_xlabel('share of the real training patches')
    ax.set_ylabel(name)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7, loc='lower right')
  where = 'SYNTHETIC PHANTOM data' if source == 'phantom' else f'source {source}'
  fig.suptitle(f'Small-data curve on {where}, held-out fold{"s" if len(folds) > 1 else ""} '
               f'{", ".join(map(str, folds))}; bars: 95% bootstrap interval over the '
               f'{num_test} held-out patches', fontsize=9)
  fig.tight_layout()
  return wd.save_figure(fig, path, dpi=110, bbox_inches='tight')


def _num_patches(workdir, folds, share: float, card: dict | None) -> str:
  """Sign patches the GAN of `share` trained on, summed over `folds` (its metrics.json;
  at 100% the dataset card where an older GAN stage did not record it)."""
  total = 0
  for k in folds:
    m = wd.read_json(wd.stage_dir(workdir, k, wd.share_stage(share, wd.GAN) if share != 1
                                  else wd.GAN) / wd.METRICS_FILE) or {}
    if 'num_train_patches' in m:
      total += int(m['num_train_patches'])
    elif share == 1 and card:
      per_fold = card.get('folds', {})
      total += sum(int(v.get('per_class', {}).get(s, 0)) for f, v in per_fold.items()
                   if f != wd.fold_name(k) for s in signs.SIGNS)
    else:
      return '–'
  return str(total)


def _cell(c: results.Cell, i: int) -> str:
  if math.isnan(c.mean[i]):
    return '–'
  std = f' ± {c.std[i]:.3f}' if c.num_folds > 1 else ''
  return f'{c.mean[i]:.3f}{std} [{c.ci[i][0]:.2f}, {c.ci[i][1]:.2f}]'


def _against_scratch(points) -> list[str]:
  """Per share: fine-tuned AC against scratch, and whether the intervals separate them."""
  lines = []
  for p, cells in sorted(points.items()):
    a, b = cells['finetune'], cells['scratch']
    gap = a.mean[0] - b.mean[0]
    apart = a.ci[0][0] > b.ci[0][1] or b.ci[0][0] > a.ci[0][1]
    lines.append(f'- {100 * p:g}%: GAN pre-training + fine-tuning AC {a.mean[0]:.3f} against '
                 f'scratch {b.mean[0]:.3f} ({gap:+.3f}): the 95% intervals '
                 f'{"do not overlap" if apart else "overlap"}.')
  return lines


def section(workdir, cfg: dict, status: dict, report: pathlib.Path,
            card: dict | None = None) -> str:
  """The report's small-data section: the figure and table from the finished stages, or
  why there are none and how to run them."""
  shares = [float(p) for p in cfg.get('small_data_shares', [])]
  if not shares:
    return (f'{TITLE}\n\nNot run: config.small_data_shares is empty (the quick variant '
            'keeps it off for make demo\'s 20 minutes). Add it to the same command and '
            f'workdir, `{HOW}`, and every finished stage is reused: per share and fold it '
            'trains a GAN, its generated set and four 10-class classifiers on that share '
            'of the real training patches.\n')
  folds, points = curve(workdir, shares)
  missing = [p for p in shares if p not in points]
  failed = sorted(k for k, v in status.items() if '/share' in k
                  and v.get('state') in ('failed', 'blocked'))
  why = []
  if failed:
    why.append(f'the stages {", ".join(failed[:6])} did not finish (see "Failed stages")')
  if causes := unmeasured.causes(status, '/share'):
    why.append(f'the data cannot feed them: {"; ".join(causes[:2])}')
  if not points:
    return (f'{TITLE}\n\nNo point of the curve has finished for the shares {shares} on '
            f'the folds {cfg.get("small_data_folds", [])}: '
            + ('; '.join(why) if why else 'its stages have not run yet (rerun the same '
               'command: finished stages are kept)') + '.\n')
  first = points[1.0]['scratch']
  labels = np.concatenate([y for y, _ in results.stage_predictions(
      workdir, stage(1.0, 'scratch'), folds).values()])
  chance = float(np.bincount(labels, minlength=signs.NUM_CLASSES).max() / len(labels))
  png = figure(points, folds, first.num_examples, chance, cfg.get('source', ''),
               report / FIGURE)
  head = '| share | GAN sign patches | ' + ' | '.join(
      f'{TITLES[m]} AC | {TITLES[m]} mean SE' for m in METHODS) + ' |'
  rows = [f'| {100 * p:g}% | {_num_patches(workdir, folds, p, card)} | ' + ' | '.join(
      f'{_cell(cells[m], 0)} | {_cell(cells[m], 1)}' for m in METHODS) + ' |'
      for p, cells in sorted(points.items())]
  note = (f'\nNot on the curve: shares {missing}'
          + (f': {"; ".join(why)}' if why else '') + '.\n') if missing else ''
  spread = ('mean ± std over the folds, then ' if len(folds) > 1 else '')
  return (f'{TITLE}\n\n10-class AC and mean SE against the share of the real training '
          'patches. At each share below 100%, the GAN, its generated set and every '
          'classifier trained on the same seeded, per-class stratified subset of the '
          'training folds (each class keeps at least one patch); 100% is the main run\'s '
          f'stages. Held-out fold(s) {folds}, the whole held-out fold at every share. '
          f'Cells: {spread}the 95% bootstrap interval over the {first.num_examples} '
          'held-out patches (it leaves out the spread of training over seeds); chance: AC '
          f'{chance:.3f} (the most frequent class), mean SE {1 / signs.NUM_CLASSES:.3f}.\n\n'
          + head + '\n|---|---:|' + '---:|' * (2 * len(METHODS)) + '\n' + '\n'.join(rows)
          + '\n\n' + '\n'.join(_against_scratch(points)) + f'\n\n![small-data curve]'
          f'({png.name})\n' + note)
