"""The dataset card (JSON) and the example grid (PNG) written beside every build.

The card says what went in and what came out: patches per class per fold, patients
per fold, boxes per sign in the input, boxes dropped by the size rule, and every
skipped input with its reason, so a user can check counts against their source.
"""
import collections
import json
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from cisl_jax import signs
from cisl_jax import workdir

CARD_NAME = 'dataset_card.json'
GRID_NAME = 'examples.png'


def make_card(collected, cfg: ml_collections.ConfigDict, version: str,
              seconds: float) -> dict:
  """The card of a `tfds_builder.Collected` build, as a JSON-able dict."""
  c = collected
  names = signs.CLASS_NAMES
  folds = {}
  for k in range(c.num_folds):
    ps = c.fold_patches(k)
    by_class = collections.Counter(names[p.label] for p in ps)
    by_kind = collections.Counter(p.kind for p in ps)
    patients = sorted({pid for pid, f in c.folds.items() if f == k})
    folds[f'fold{k}'] = {
        'patches': len(ps),
        'per_class': {n: by_class.get(n, 0) for n in names},
        'per_kind': dict(sorted(by_kind.items())),
        'num_patients': len(patients),
        'patients': patients,
    }
  boxes_in = collections.Counter(r.sign for r in c.records if r.sign is not None)
  per_class_total = collections.Counter(names[p.label] for p in c.patches)
  sign_patches_by_box = collections.Counter(
      (p.path, p.box, names[p.label]) for p in c.patches if p.kind != 'background')
  card = {
      'dataset': f'cisl_patches/{c.source}',
      'version': version,
      'source': c.source,
      # The phantom is written to a temporary folder that the build deletes: name what
      # it was, not a path that no longer exists.
      'input': (f'phantom (seed {cfg.seed}), written to a temporary folder during the build'
                if c.source == 'phantom' else
                os.path.abspath(c.input_path) if c.input_path else None),
      'num_folds': c.num_folds,
      'num_patients': len(c.folds),
      'num_slices': len({r.path for r in c.records}),
      'input_boxes_per_sign': {s: boxes_in.get(s, 0) for s in signs.SIGNS},
      'boxes_with_patches_per_sign': {
          s: sum(1 for k in sign_patches_by_box if k[2] == s) for s in signs.SIGNS},
      'patches_per_class': {n: per_class_total.get(n, 0) for n in names},
      'patches': len(c.patches),
      'folds': folds,
      'dropped_boxes': {
          'count': len(c.dropped),
          'rule': f'wider or taller than {cfg.patches.max_box_share} of the slice',
          'boxes': [{'patient_id': b.patient_id, 'path': b.path, 'sign': b.sign,
                     'box': [b.x0, b.y0, b.x1, b.y1]} for b in c.dropped],
      },
      'skipped': {'count': len(c.skipped),
                  'inputs': [{'input': w, 'reason': r} for w, r in c.skipped]},
      'hu_window': {'level': cfg.patches.hu_level, 'width': cfg.patches.hu_width},
      'config': cfg.to_dict(),
      'build_seconds': seconds,
  }
  if c.source_summary:  # what the source itself counted (LIDC: readers, absent contours)
    card[c.source] = c.source_summary
  return card


# A fold with fewer patches than this gives test figures too coarse to read.
SMALL_FOLD = 30
_MAX_LISTED = 10


def warnings(card: dict) -> list[str]:
  """What a user must know about a build before training on it: skipped inputs, signs
  without patches, folds that are tiny or lack a class the others hold."""
  out = []
  skipped = card['skipped']['inputs']
  if skipped:
    listed = ''.join(f'\n  {s["input"]}: {s["reason"]}' for s in skipped[:_MAX_LISTED])
    more = (f'\n  ... and {len(skipped) - _MAX_LISTED} more'
            if len(skipped) > _MAX_LISTED else '')
    out.append(f'skipped {len(skipped)} bad input(s) (--skip_bad; all are listed in the '
               f'card):{listed}{more}')
  absent = [s for s in signs.SIGNS if not card['patches_per_class'].get(s)]
  if absent:
    out.append(f'{len(absent)} of {signs.NUM_SIGNS} signs have no patches: '
               f'{", ".join(absent)}; their tasks cannot be trained or measured.')
  present = [n for n, v in card['patches_per_class'].items() if v]
  for name, fold in card['folds'].items():
    if fold['patches'] < SMALL_FOLD:
      out.append(f'{name} holds only {fold["patches"]} patches '
                 f'({fold["num_patients"]} patient(s)): its test figures will be coarse; '
                 'add patients or lower --config.num_folds.')
    lacking = [n for n in present if not fold['per_class'].get(n)]
    if lacking:
      out.append(f'{name} has no {", ".join(lacking)} patches: a model held out on it '
                 'cannot be tested on those classes.')
  return out


def _default(o):
  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, (tuple, set)):
    return list(o)
  return str(o)


def write_json(path: str, obj: dict) -> None:
  """Writes JSON atomically (cisl_jax/workdir.py)."""
  workdir.write_text(path, json.dumps(obj, indent=2, default=_default) + '\n')


def write_grid(path: str, patches, per_class: int, seed: int = 0, title: str = '') -> None:
  """A PNG grid: one row per class present, up to `per_class` random patches each.

  Patches are already in the lung window mapped to [-1, 1]; they are shown as grey
  from -1 (black) to 1 (white). Rows are labelled with the class and its count.
  """
  rng = np.random.default_rng(seed)
  by_class = collections.defaultdict(list)
  for p in patches:
    by_class[p.label].append(p)
  classes = [c for c in range(signs.NUM_CLASSES) if by_class[c]]
  fig, axes = plt.subplots(len(classes), per_class, squeeze=False,
                           figsize=(per_class * 1.1 + 1.2, len(classes) * 1.15 + 0.4))
  for row, c in enumerate(classes):
    pool = by_class[c]
    pick = rng.choice(len(pool), size=min(per_class, len(pool)), replace=False)
    for col in range(per_class):
      ax = axes[row, col]
      ax.set_xticks([])
      ax.set_yticks([])
      for side in ax.spines.values():
        side.set_visible(False)
      if col < len(pick):
        p = pool[pick[col]]
        ax.imshow(p.image, cmap='gray', vmin=-1, vmax=1, interpolation='nearest')
        ax.set_title(p.kind, fontsize=6, pad=1)
    axes[row, 0].set_ylabel(f'{signs.CLASS_NAMES[c]}\n({len(pool)})', fontsize=8,
                            rotation=0, ha='right', va='center')
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  workdir.save_figure(fig, path, dpi=100)
