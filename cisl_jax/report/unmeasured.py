"""What a reproduce run could not measure on its data, and why, for the report.

Stages skipped as not measurable (reproduce.py: a sign without patches in a stage's
training or held-out fold, and the stages that need one) are listed with their cause in
status.json; classes absent from every held-out fold have no Table II row; a result whose
95% interval does not exclude chance is flagged. Each helper returns Markdown lines.
"""
import math

import numpy as np

from cisl_jax import signs
from cisl_jax.report import results

BINARY_CHANCE = 0.5  # balanced binary test sets


def skipped(status: dict) -> dict[str, str]:
  """{stage key: the root cause} of every skipped stage."""
  return {k: (v.get('cause') or v.get('reason', '')).rstrip('.')
          for k, v in status.items() if v.get('state') == 'skipped'}


def section(status: dict) -> str:
  """`## Not measured on this data`: the skipped stages grouped by cause ('' if none)."""
  by_cause: dict[str, list[str]] = {}
  for k, cause in sorted(skipped(status).items()):
    by_cause.setdefault(cause, []).append(k)
  if not by_cause:
    return ''
  lines = ['## Not measured on this data', '',
           f'{sum(len(v) for v in by_cause.values())} stages were skipped, not failed: the '
           'dataset cannot feed them (a class without patches where the stage needs it). '
           'Their cells show `–`; more data, not a rerun, would measure them.', '']
  for cause, keys in by_cause.items():
    shown = ', '.join(f'`{k}`' for k in keys[:8]) + (f' and {len(keys) - 8} more'
                                                    if len(keys) > 8 else '')
    lines.append(f'- {cause}: {shown}')
  return '\n'.join(lines) + '\n'


def causes(status: dict, prefix: str) -> list[str]:
  """The distinct causes of the skipped stages whose key contains `prefix`."""
  out = []
  for k, cause in sorted(skipped(status).items()):
    if prefix in k and cause not in out:
      out.append(cause)
  return out


def binary_notes(status: dict, sign_names) -> list[str]:
  """One line per Table I sign with skipped stages: which folds and why."""
  lines = []
  for s in sign_names:
    found = causes(status, f'/binary_{s}_')
    if found:
      lines.append(f'- {s}: not measured: {"; ".join(found)}.')
  return lines


def absent_classes(workdir, stage: str) -> list[str]:
  """Classes with no patch in any held-out fold of a 10-class stage."""
  preds = results.stage_predictions(workdir, stage)
  if not preds:
    return []
  counts = np.bincount(np.concatenate([y for y, _ in preds.values()]),
                       minlength=signs.NUM_CLASSES)
  return [signs.CLASS_NAMES[c] for c in range(signs.NUM_CLASSES) if counts[c] == 0]


def ten_class_note(absent: list[str], folds) -> list[str]:
  if not absent:
    return []
  return [f'- {", ".join(absent)}: no held-out patches in folds {list(folds)}: not '
          'measured (rows `–`; one-against-the-rest AC would be 1 by default). The mean '
          'row\'s SE and SP are over the classes present.']


def untrained_classes(card: dict | None, folds, num_folds: int) -> list[str]:
  """One line per class that the dataset card shows without patches in the training
  folds of a held-out fold that has some: its 10-class row there measures a class the
  model never saw (only generated patches, from a GAN that never saw it either)."""
  if not card:
    return []
  per_fold = {k: v.get('per_class', {}) for k, v in card.get('folds', {}).items()}
  count = lambda name, fs: sum(int(per_fold.get(f'fold{f}', {}).get(name, 0)) for f in fs)
  lines = []
  for name in signs.CLASS_NAMES:
    held = [k for k in folds if count(name, [k])
            and not count(name, [f for f in range(num_folds) if f != k])]
    if held:
      lines.append(f'- {name}: no training patches when fold{"s" if len(held) > 1 else ""} '
                   f'{", ".join(map(str, held))} {"are" if len(held) > 1 else "is"} held out '
                   '(dataset card): its row there scores a class the real training data '
                   'never showed.')
  return lines


def chance_flags(table, methods, titles, chance: float = BINARY_CHANCE) -> list[str]:
  """One line per method: the rows whose accuracy's 95% interval does not exclude
  `chance`."""
  lines = []
  for m in methods:
    rows = [f'{row} {cell.mean[0]:.3f} [{cell.ci[0][0]:.2f}, {cell.ci[0][1]:.2f}]'
            for row in table.rows if not math.isnan((cell := table.cells[row, m]).mean[0])
            and not math.isnan(cell.ci[0][0]) and cell.ci[0][0] <= chance]
    if rows:
      lines.append(f'- **{titles[m]}: not distinguishable from chance ({chance:.2f})** by '
                   f'the 95% interval: {"; ".join(rows)}.')
  return lines
