"""Ablation of the CVAE-GAN recipe: the paper's objective, then one piece added at a time;
or the current quick config against variants of it.

  python bench/ablate_gan.py --data_dir=data --workdir=workdir/ablate
  python bench/ablate_gan.py --data_dir=data --workdir=workdir/ablate --arms= \
      --budget=800,1600,3200,6400 --wide=0.25      # the quality-vs-budget curve only
  python bench/ablate_gan.py --data_dir=data --workdir=workdir/ablate_b16 --arms=+lecam \
      --batch_size=16 --steps=1200    # every piece at another GAN batch (and budget)
  python bench/ablate_gan.py --data_dir=data --workdir=workdir/ablate_ms --arms=+modeseek \
      --mode_seeking_weight=0.25      # every piece plus mode seeking at weight 0.25
  python bench/ablate_gan.py --data_dir=data --workdir=workdir/ablate_bl --arms=+modeseek \
      --mode_seeking_weight=0.25 --upsample=bilinear   # the same, bilinear x2 upsampling
  python bench/ablate_gan.py --data_dir=data --workdir=workdir/ablate_v --steps=600 \
      --variants="base;improved.class_weight=0.3;improved.classifier_augment='color'"
--variants runs, instead of the cumulative arms (add --arms=... to run those too), arms
that are configs/train_gan.py:quick exactly (every piece at its quick setting, recipe
'improved') plus overrides: arms separated by ';', an arm's overrides by '&', each a
dotted path under config.gan '=' a Python literal ('base': none), e.g.
'improved.mode_seeking_weight=0.5&loss_weights.kl=1.0'. --steps, --width, --batch_size
and --plain apply to them too; --mode_seeking_weight, --upsample and --diffaugment do not.
Same data (one fold of the built dataset), seed and budget for every arm. Each arm
trains a GAN (quick width and lr), generates --per_sign patches per sign and measures,
against the real training patches: overall FD beside its real-vs-real floor,
precision, recall, memorised share against chance, the C2ST accuracy (0.5 =
indistinguishable), and pre-training-only binary SE/AC on --signs (the quick
reproduction's pretrain stage). --batch_size sets the GAN's batch only (the classifier
stages keep the quick reproduction's); --mode_seeking_weight replaces the '+modeseek'
arm's weight; --upsample replaces the decoder's upsampling from '+resize' on and
--diffaugment the DiffAugment policy from '+diffaugment' on;
--plain runs every GAN on plain nnx convolutions (config.fast_conv=False);
--match_intensities measures every arm a second time (', matched' rows), its generated
set mapped per sign onto the real training patches' quantiles (cisl_jax/intensity_match.py),
with the same GAN and the C2ST on the matched set. Every
stage keeps its folder under --workdir, so a killed run started again continues;
finished arms are not retrained.
Prints one Markdown table (also written to <workdir>/ablation.md) with the machine's
load average, since wall times on a shared machine measure the load as much as the work;
each GAN's wall and process-CPU seconds per iteration (the CPU figure moves less with the
load) are in its row.
Expected runtime, 2 quiet CPU cores: ~5 minutes per arm at 800 iterations.
"""
import argparse
import ast
import json
import os
import pathlib
import re
import sys
import time

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import numpy as np  # pylint: disable=g-import-not-at-top

from cisl_jax import c2st  # pylint: disable=g-import-not-at-top
from cisl_jax import gan_recipes  # pylint: disable=g-import-not-at-top
from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
from cisl_jax.quality import measures as quality_measures  # pylint: disable=g-import-not-at-top
from cisl_jax.quality import stage as quality_stage  # pylint: disable=g-import-not-at-top
from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax import workdir as wd  # pylint: disable=g-import-not-at-top
from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top
from cisl_jax.train import generate  # pylint: disable=g-import-not-at-top

# Cumulative: each arm is the previous one plus its settings of config.gan.improved.
ARMS = (
    ('paper', None),
    ('+adv10', dict(adv_weight=10.0)),
    ('+diffaugment', dict(diffaugment='color,translation,cutout')),
    ('+pixel0.1', dict(pixel_weight=0.1)),
    ('+ema', dict(ema_decay=0.999)),
    ('+class', dict(class_weight=1.0)),
    ('+resize', dict(upsample='resize')),
    ('+lecam', dict(lecam_weight=0.01)),
    ('+modeseek', dict(mode_seeking_weight=1.0)),  # MSGAN's weight; a variety lever
)


def gan_config(args, pieces: dict | None, steps: int, width: float):
  c = common.load_config('train_gan', 'quick')
  c.unlock()
  c.data_dir, c.fold, c.seed, c.num_steps, c.width = args.data_dir, args.fold, args.seed, \
      steps, width
  if args.batch_size is not None:
    c.batch_size = args.batch_size  # the GAN's batch (its config's default otherwise)
  if args.plain:
    c.fast_conv = False  # plain nnx convolutions (the diagnostic of the fast CPU forms)
  if pieces is None:
    c.gan.recipe = 'paper'
  else:
    c.gan.recipe = 'improved'
    gan_recipes.all_off(c.gan.improved)
    c.gan.improved.update(pieces)
    if args.upsample is not None and c.gan.improved.upsample != 'transposed':
      c.gan.improved.upsample = args.upsample  # the arms from '+resize' on
    if args.diffaugment is not None and c.gan.improved.diffaugment:
      c.gan.improved.diffaugment = args.diffaugment  # the arms from '+diffaugment' on
  return c


def parse_variants(text: str) -> list[tuple[str, dict]]:
  """'base;improved.x=1&loss_weights.kl=1.0' -> [('base', {}), (that arm, {path: value})].

  Values are Python literals (strings quoted); a path's existence is checked against the
  quick config, and its type by ConfigDict when the arm's config is built.
  """
  quick = common.load_config('train_gan', 'quick').gan
  variants = []
  for arm in (a.strip() for a in text.split(';')):
    if not arm:
      continue
    overrides = {}
    for item in ([] if arm == 'base' else arm.split('&')):
      path, sep, value = item.partition('=')
      path = path.strip()
      node = quick
      for part in path.split('.')[:-1]:
        node = node.get(part) if hasattr(node, 'get') else None
      if not sep or not hasattr(node, 'get') or path.split('.')[-1] not in node:
        raise ValueError(f'variant {arm!r}: {item!r} is not <path under config.gan>=<value> '
                         'for a path of configs/train_gan.py:quick')
      try:
        overrides[path] = ast.literal_eval(value.strip())
      except (ValueError, SyntaxError) as e:
        raise ValueError(f'variant {arm!r}: {value.strip()!r} is not a Python literal '
                         "(quote strings: improved.diffaugment='color')") from e
    variants.append((arm, overrides))
  return variants


def variant_config(args, overrides: dict, steps: int, width: float):
  """configs/train_gan.py:quick with the run's data, fold, seed, budget and `overrides`."""
  c = common.load_config('train_gan', 'quick')
  c.unlock()
  c.data_dir, c.fold, c.seed, c.num_steps, c.width = args.data_dir, args.fold, args.seed, \
      steps, width
  if args.batch_size is not None:
    c.batch_size = args.batch_size
  if args.plain:
    c.fast_conv = False
  for path, value in overrides.items():
    *parents, leaf = path.split('.')
    node = c.gan
    for part in parents:
      node = node[part]
    node[leaf] = value  # ConfigDict refuses a value of another type
  return c


def classifier_config(args, **fields):
  # The quick reproduction's classifier stage config (configs/reproduce.py), so that the
  # ablation follows it when its width or batch changes.
  c = common.load_config('reproduce', 'quick').classifier
  c.unlock()
  c.update(dict(data_dir=args.data_dir, fold=args.fold, seed=args.seed), **fields)
  return c


def set_measures(args, images: np.ndarray, labels: np.ndarray, real, held,
                 features) -> dict:
  """FD (beside its real-vs-real floor), precision, recall, memorised share and the C2ST
  of one generated set against the real training patches."""
  q = quality_measures.evaluate(features, real['image'], real['label'], held['image'],
                                held['label'], images, labels, max_generated=args.per_sign,
                                seed=args.seed)['overall']
  xr, yr = gan.sign_patches(real)
  t = c2st.c2st(xr, yr, images, labels, signs.SIGNS, seed=args.seed)['overall']
  return {'fd': q['fd'], 'fd_floor': q['fd_real_train_vs_held_out'],
          'precision': q['precision'], 'recall': q['recall'],
          'memorised': q['memorisation']['share'], 'chance': q['memorisation']['chance'],
          'c2st': t['c2st'], 'fake_as_real': t['fake_as_real']}


def pretrain_scores(args, generated_dir: pathlib.Path, prefix: pathlib.Path) -> dict:
  """Pre-training-only binary SE / AC on each of --signs (the quick reproduction's
  pretrain stage on the generated set in `generated_dir`), each in `<prefix>_<sign>`."""
  row = {}
  for s in args.signs.split(','):
    m = classifier.train_and_evaluate(classifier_config(
        args, mode='pretrain', task='binary', sign=s, num_steps=80,
        generated_dir=str(generated_dir), pretrain_per_class=args.per_sign),
        f'{prefix}_{s}')
    row[f'SE_{s}'], row[f'AC_{s}'] = m['sensitivity_pos'], m['accuracy']
  return row


def measure(args, name: str, gan_dir: pathlib.Path, real, held, features,
            matched: bool = False) -> dict:
  """Generation, quality, C2ST and the binary pre-training of one trained GAN; with
  `matched`, of its generated set intensity-matched (configs/generate.py)."""
  root = gan_dir.parent
  suffix = '_matched' if matched else ''
  g = common.load_config('generate', 'quick')
  g.unlock()
  g.gan_workdir, g.num_per_sign, g.seed = str(gan_dir), args.per_sign, args.seed
  g.match_intensities = matched
  generate.generate(g, str(root / f'generate{suffix}'))
  gen = input_pipeline.load_generated(str(root / f'generate{suffix}' / wd.GENERATED_DIR))
  return {'arm': name + (', matched' if matched else ''),
          **set_measures(args, gen['image'], gen['label'], real, held, features),
          's_per_iteration': _timing(gan_dir, 's_per_it'),
          'cpu_s_per_iteration': _timing(gan_dir, 'cpu_s_per_it'),
          **pretrain_scores(args, root / f'generate{suffix}', root / f'pretrain{suffix}')}


def _timing(gan_dir: pathlib.Path, key: str) -> float:
  path = gan_dir / 'timing.json'
  return json.loads(path.read_text()).get(key, float('nan')) if path.exists() else float('nan')


def train_gan(config, workdir: pathlib.Path) -> None:
  """Trains (or extends, resuming from its checkpoints) a GAN; records s/iteration."""
  metrics = workdir / 'metrics.json'
  if metrics.exists() and json.loads(metrics.read_text())['steps'] >= config.num_steps:
    return  # done (a longer budget-curve run was measured at this budget before)
  start = 0
  if metrics.exists():  # a shorter finished run: extend it (each step is a pure function)
    start = json.loads(metrics.read_text())['steps']
    metrics.unlink()
    # The stage refuses a workdir whose config.json differs (workdir.check_config); a
    # longer budget is the same run continued, so its recorded num_steps follows.
    recorded = json.loads((workdir / 'config.json').read_text())
    recorded['num_steps'] = config.num_steps
    wd.write_json(workdir / 'config.json', recorded)
  t0, c0 = time.perf_counter(), time.process_time()
  gan.train_and_evaluate(config, str(workdir))
  n = max(config.num_steps - start, 1)  # compile and the held-out evaluation included
  (workdir / 'timing.json').write_text(json.dumps(
      {'s_per_it': (time.perf_counter() - t0) / n, 'cpu_s_per_it': (time.process_time() - c0) / n}))


def table(rows: list[dict]) -> str:
  keys = list(rows[0])
  fmt = lambda v: f'{v:.3g}' if isinstance(v, float) else str(v)
  return '\n'.join(['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
                   + ['| ' + ' | '.join(fmt(r.get(k, '')) for k in keys) + ' |' for r in rows])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data_dir', default='data')
  p.add_argument('--workdir', default='workdir/ablate')
  p.add_argument('--fold', type=int, default=0)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--steps', type=int, default=800, help='GAN iterations of every arm')
  p.add_argument('--width', type=float, default=0.125)
  p.add_argument('--batch_size', type=int, default=None,
                 help="the GAN's batch (default: configs/train_gan.py:quick's)")
  p.add_argument('--mode_seeking_weight', type=float, default=None,
                 help="the '+modeseek' arm's weight (default: 1.0, MSGAN's)")
  p.add_argument('--upsample', default=None, choices=('resize', 'bilinear'),
                 help="the decoder's upsampling in the arms from '+resize' on "
                 "(default: 'resize', nearest x2)")
  p.add_argument('--diffaugment', default=None,
                 help="the DiffAugment policy from '+diffaugment' on, e.g. 'color' "
                 "(default: 'color,translation,cutout')")
  p.add_argument('--plain', action='store_true',
                 help='every GAN on plain nnx convolutions (config.fast_conv=False)')
  p.add_argument('--arms', default=None,
                 help='arms to run, in ARMS order (cumulative); empty: none (default: '
                 'all of them, or none with --variants)')
  p.add_argument('--variants', default='',
                 help="arms of the quick config plus overrides, e.g. "
                 "\"base;improved.class_weight=0.3&loss_weights.kl=1.0\" (see above)")
  p.add_argument('--budget', default='', help='iterations of the budget curve of the '
                 'last arm, e.g. 800,1600,3200,6400 (empty: no curve)')
  p.add_argument('--wide', type=float, default=0.0, help='also the last arm at this width')
  p.add_argument('--signs', default='GGO,CV', help='signs of the binary pre-training')
  p.add_argument('--per_sign', type=int, default=256, help='generated patches per sign')
  p.add_argument('--match_intensities', action='store_true',
                 help='also measure every arm with its generated set intensity-matched '
                 'per sign to the real training patches (configs/generate.py), one GAN')
  args = p.parse_args(argv)
  if args.arms is None:
    args.arms = '' if args.variants else ','.join(a for a, _ in ARMS)
  try:
    variants = parse_variants(args.variants)
  except ValueError as e:
    p.error(str(e))
  wanted = [a for a in args.arms.split(',') if a]
  unknown = set(wanted) - {a for a, _ in ARMS}
  if unknown:
    p.error(f'unknown arm(s) {sorted(unknown)}; known: {[a for a, _ in ARMS]}')
  work = pathlib.Path(args.workdir)
  real = input_pipeline.load_split(args.data_dir, 'phantom',
                                   [f for f in range(3) if f != args.fold])
  held = input_pipeline.load_split(args.data_dir, 'phantom', [args.fold])
  feat_dir = work / 'features_ten_scratch'
  classifier.train_and_evaluate(classifier_config(args, num_steps=160), str(feat_dir))
  features = quality_stage.classifier_features(str(feat_dir))

  runs, pieces, last = [], None, None  # (name, the GAN's config)
  for name, add in ARMS:
    if name == '+modeseek' and args.mode_seeking_weight is not None:
      add = dict(mode_seeking_weight=args.mode_seeking_weight)
    pieces = None if add is None else {**(pieces or {}), **add}
    if name in wanted:
      runs.append((name, gan_config(args, pieces, args.steps, args.width)))
      last = pieces
  last = pieces if not wanted else last
  for steps in [int(s) for s in args.budget.split(',') if s]:
    runs.append((f'budget {steps}', gan_config(args, last, steps, args.width)))
  if args.wide:
    runs.append((f'width {args.wide}', gan_config(args, last, args.steps, args.wide)))
  for name, overrides in variants:
    runs.append((name, variant_config(args, overrides, args.steps, args.width)))
  rows = []
  for name, config in runs:
    slug = re.sub(r'[^A-Za-z0-9._=-]', '_', name.replace('+', '').replace(' ', '_'))
    if name in dict(variants):
      slug = 'variant_' + slug  # apart from the cumulative arms' folders
    # The budget curve extends one run: budget_<n> folders share one GAN workdir.
    gan_dir = work / ('budget' if name.startswith('budget') else slug) / 'gan'
    train_gan(config, gan_dir)
    arm_dir = work / slug
    if name.startswith('budget'):
      # Measure a copy-free view: the generate/pretrain stages of this budget live apart.
      arm_dir.mkdir(parents=True, exist_ok=True)
      link = arm_dir / 'gan'
      if not link.exists():
        link.symlink_to(gan_dir.resolve())
    rows.append(measure(args, name, arm_dir / 'gan', real, held, features))
    if args.match_intensities:
      rows.append(measure(args, name, arm_dir / 'gan', real, held, features, matched=True))
    (work / 'ablation.json').write_text(json.dumps(rows, indent=1))
  load = ' / '.join(f'{x:.1f}' for x in os.getloadavg())
  batch = args.batch_size or common.load_config('train_gan', 'quick').batch_size
  ms = '' if args.mode_seeking_weight is None else \
      f', +modeseek at weight {args.mode_seeking_weight:g}'
  ms += '' if args.upsample is None else f', upsample {args.upsample!r} from +resize on'
  ms += '' if args.diffaugment is None else f', DiffAugment {args.diffaugment!r}'
  ms += ', plain nnx convolutions' if args.plain else ''
  ms += ("; ', matched': the same GAN's set intensity-matched per sign"
         if args.match_intensities else '')
  ms += ('; variant arms: configs/train_gan.py:quick plus the overrides named (base: none)'
         if variants else '')
  text = (f'Phantom data, fold {args.fold}, seed {args.seed}, {args.steps} iterations at width '
          f'{args.width} and GAN batch {batch} unless named{ms}; load average at the end '
          f'{load}.\n\n{table(rows)}\n')
  (work / 'ablation.md').write_text(text)
  print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
