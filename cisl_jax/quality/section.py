"""The quality section of the report: quality.json, quality.md and memorisation.png.

`write_quality_section(out_dir, results)` takes what measures.evaluate returns and
writes the measures (strict JSON), a Markdown section (table, reading guide, caution
when the generated set is off the real manifold) and the figure of the most
suspicious generated patches beside their nearest training and held-out patches.
"""
import json
import os
from typing import Sequence

import numpy as np

from cisl_jax import workdir as wd

# Below this overall precision the generated set is off the real manifold and the
# nearest-neighbour memorisation test has nothing near to find; the section says so.
PRECISION_FLOOR = 0.1


def _fmt(x: float, digits: int = 3) -> str:
  return 'n/a' if x is None or (isinstance(x, float) and np.isnan(x)) else f'{x:.{digits}f}'


def to_markdown(results: dict, figure_name: str = 'memorisation.png',
                heading: str = '## Quality of the generated patches') -> str:
  """A Markdown section (table + reading guide + figure link) for the report."""
  lines = [heading, '',
           'Measured on penultimate-layer features of a classifier trained on real '
           f'patches. FD: Fréchet distance (real training vs generated); FD floor: real '
           f'training vs real held-out, the noise level of sets this small. '
           f'Precision/recall: k-NN manifolds, k={results["k"]}. Diversity: mean pairwise '
           'distance generated / real (well below 1 = mode collapse). Memorisation: share '
           'of generated patches nearer a training patch than any held-out one, in '
           'feature and pixel space, against the chance level n_train/(n_train+n_held).',
           '']
  if results.get('features'):
    lines += [f'Features: {results["features"]}.', '']
  lines += [
            '| sign | n train | n held-out | n gen | FD | FD floor | precision | recall | '
            'diversity ratio | memorised (feat) | memorised (pixel) | chance |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|']
  rows = list(results['per_sign'].items()) + [('**overall**', results['overall'])]
  for name, m in rows:
    mem = m['memorisation']
    lines.append(
        f'| {name} | {m["num_train"]} | {m["num_held_out"]} | {m["num_generated"]} | '
        f'{_fmt(m["fd"], 2)} | {_fmt(m["fd_real_train_vs_held_out"], 2)} | '
        f'{_fmt(m["precision"])} | {_fmt(m["recall"])} | {_fmt(m["diversity"]["ratio"])} | '
        f'{_fmt(mem["share"])} | {_fmt(mem["pixel_share"])} | {_fmt(mem["chance"])} |')
  lines += ['', 'Overall FD/precision/recall/diversity pool all signs; overall '
            'memorisation is the per-sign shares weighted by generated counts.']
  for name, why in (results.get('skipped_signs') or {}).items():
    lines += [f'- {name}: not measured: {why} in this fold.']
  precision = results['overall']['precision']
  if precision is not None and not np.isnan(precision) and precision < PRECISION_FLOOR:
    lines += ['', f'**Caution:** overall precision is {precision:.3f}: the generated patches '
              'lie outside the real manifold, so their nearest real patch is not a near '
              'copy and the memorisation shares here say nothing about copying. The '
              'generator has not (yet) learned the real patches: see FD against its floor '
              'and the figure.']
  if results['suspicious']:
    lines += ['', f'![Most suspicious generated patches]({figure_name})', '',
              'Each row: a generated patch, its nearest real training patch and its '
              'nearest real held-out patch (feature space); each sign\'s most suspicious '
              'patch (smallest d_train/d_held) first, then the rest by that ratio; a sign '
              'that could not be measured has a row saying why.']
  return '\n'.join(lines) + '\n'


def jsonable(x):
  """Nested dicts/lists with NaN as null (strict JSON) and images dropped."""
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items() if not isinstance(v, np.ndarray)}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return None if np.isnan(x) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  return x


def plot_suspicious(suspicious: Sequence[dict], path: str,
                    skipped: dict[str, str] | None = None) -> list[str]:
  """Writes a PNG: generated | nearest training | nearest held-out, one row each, then
  one labelled row per sign that could not be measured (`skipped`: sign -> why), so
  that every sign is in the figure. Returns the rows' labels, top to bottom."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  skipped = skipped or {}
  heights = [1.0] * len(suspicious) + [0.3] * len(skipped) or [1.0]  # text rows: short
  fig, axes = plt.subplots(len(heights), 3, figsize=(6, 2.1 * sum(heights)), squeeze=False,
                           gridspec_kw={'height_ratios': heights})
  titles = ('generated', 'nearest train', 'nearest held-out')
  labels = [row['sign'] for row in suspicious]
  for r, row in enumerate(suspicious):
    for c, key in enumerate(('generated', 'nearest_train', 'nearest_held')):
      ax = axes[r, c]
      ax.imshow(np.squeeze(row[key]), cmap='gray', vmin=-1, vmax=1, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(f'{row["sign"]}\nratio {row["ratio"]:.2f}', fontsize=8)
      dist = {'nearest_train': row['d_train'], 'nearest_held': row['d_held']}.get(key)
      ax.set_title(titles[c] + (f'\nd={dist:.2f}' if dist is not None else ''), fontsize=8)
  for r, (name, why) in enumerate(skipped.items(), start=len(suspicious)):
    for ax in axes[r]:
      ax.axis('off')
    ax = axes[r, 1]
    labels.append(f'{name}: not measured ({why})')
    ax.text(0.5, 0.5, f'{name}: not measured\n({why})', ha='center', va='center',
            fontsize=9, transform=ax.transAxes)
  fig.tight_layout()
  wd.save_figure(fig, path, dpi=100)
  return labels


def write_quality_section(out_dir: str, results: dict) -> dict:
  """Writes quality.json, quality.md and memorisation.png into out_dir (atomically).

  Args:
    out_dir: folder to write into (created if missing), e.g. `<workdir>/report/`.
    results: the dict returned by `evaluate`.

  Returns:
    {'json': path, 'markdown': path, 'figure': path or None, 'section': markdown text}.
  """
  os.makedirs(out_dir, exist_ok=True)
  paths = {'json': os.path.join(out_dir, wd.QUALITY_JSON),
           'markdown': os.path.join(out_dir, wd.QUALITY_MD), 'figure': None}
  wd.write_text(paths['json'], json.dumps(jsonable(results), indent=2, allow_nan=False))
  section = to_markdown(results, wd.MEMORISATION_PNG)
  wd.write_text(paths['markdown'], section)
  if results['suspicious']:
    paths['figure'] = os.path.join(out_dir, wd.MEMORISATION_PNG)
    plot_suspicious(results['suspicious'], paths['figure'], results.get('skipped_signs'))
  paths['section'] = section
  return paths
