"""Writes `<workdir>/report/` for a reproduce run: README.md, tables (Markdown + CSV), PNGs.

Entry point: `write_report(workdir) -> path of README.md`. Reads what the stages wrote
(see results.py for the layout) plus `<workdir>/reproduce.json` (the run's settings,
written by cisl_jax/reproduce.py) and `<workdir>/status.json` (stage states and errors).
Sections whose stages have not run say so instead of showing numbers.
"""
import json
import math
import pathlib
import shutil

import numpy as np

from cisl_jax import paper_results
from cisl_jax import signs
from cisl_jax import workdir as wd
from cisl_jax.report import figures
from cisl_jax.report import results
from cisl_jax.report import small_data
from cisl_jax.report import tables
from cisl_jax.report import unmeasured

TRANSFER_ARCHS = ('alexnet', 'vgg16', 'resnet101')
NO_TRANSFER_REASON = (
    'no ImageNet weights were configured (config.transfer.weights is empty). Convert '
    'keras.applications or torchvision weight files with launch/convert_weights.py and set '
    '--config.transfer.weights=<folder>; randomly initialised networks are never reported '
    'as transfer learning')


def _random_init_archs(workdir, archs) -> list[str]:
  """Archs whose transfer stages ran without converted ImageNet weights."""
  out = []
  for arch in archs:
    for path in pathlib.Path(workdir).glob(f'fold*/*transfer_{arch}/{wd.METRICS_FILE}'):
      info = json.loads(path.read_text()).get('transfer', {})
      if not info.get('pretrained', False):
        out.append(arch)
        break
  return out


def first_line(source: str, data_dir: str = '') -> str:
  """The README's first line: names the data source; on the phantom, warns."""
  where = f' ({data_dir})' if data_dir else ''
  if source == 'phantom':
    return ('# Results on SYNTHETIC PHANTOM data (source `phantom`): they say nothing '
            'about patients')
  return f'# Results on data source `{source}`{where}'


def _status_section(status: dict) -> str:
  """Stages that raised, and those that could not run because a stage they need did not
  finish (from status.json)."""
  bad = {k: v for k, v in status.items() if v.get('state') in ('failed', 'blocked')}
  if not bad:
    return ''
  lines = ['## Failed stages', '',
           'These stages did not finish; their cells show `–`. Rerun the same command to '
           'retry them (finished stages are kept).', '']
  for k, v in sorted(bad.items()):
    err = str(v.get('error', '')).strip().splitlines()
    lines.append(f'- `{k}` ({v["state"]}): {err[-1] if err else "error"}')
  return '\n'.join(lines) + '\n'


def verdict(a, b) -> str:
  """How cell `a`'s accuracy stands to `b`'s: above or below only where their 95%
  intervals do not overlap, else indistinguishable (equal figures are never 'above')."""
  (a_lo, a_hi), (b_lo, b_hi) = a.ci[0], b.ci[0]
  if any(math.isnan(x) for x in (a_lo, a_hi, b_lo, b_hi)):
    if a.mean[0] == b.mean[0]:
      return 'level with it'
    return ('above' if a.mean[0] > b.mean[0] else 'below') + ' it, with no 95% intervals ' \
        'to judge the gap'
  if a_lo > b_hi:
    return 'above it; the 95% intervals do not overlap'
  if b_lo > a_hi:
    return 'below it; the 95% intervals do not overlap'
  return 'indistinguishable from it; the 95% intervals overlap'


def _compare(table: tables.Table, ours: str, others) -> str:
  """One sentence per baseline: does `ours` beat it on the mean-row accuracy, and do the
  95% intervals separate the two."""
  a = table.cells['mean', ours]
  if math.isnan(a.mean[0]):
    return ''
  out = []
  for o in others:
    b = table.cells['mean', o]
    if math.isnan(b.mean[0]):
      continue
    out.append(f'{tables.METHOD_TITLES[ours]} mean AC {a.mean[0]:.3f} against '
               f'{tables.METHOD_TITLES[o].lower()} {b.mean[0]:.3f}: {verdict(a, b)}.')
  return ' '.join(out)


def versus_chance(cell, chance: float) -> str:
  """A flag for an accuracy that its 95% interval does not separate from `chance`."""
  lo = cell.ci[0][0]
  if math.isnan(cell.mean[0]):
    return ''
  if math.isnan(lo):
    return f' **Not judged against chance ({chance:.3f}): no 95% interval.**'
  if lo <= chance:
    return (f' **Not distinguishable from chance ({chance:.3f}): the 95% interval starts at '
            f'{lo:.3f}.**')
  return ''


def _bullet(text: str, why: str) -> str:
  """A headline bullet's text, or why there is none (never an empty bullet)."""
  return text or f'not measured: {why}.'


def _chance_share(workdir) -> float | None:
  """The 10-class chance accuracy: the share of the most frequent held-out class."""
  for m in paper_results.TABLE2_METHODS:
    preds = results.stage_predictions(workdir, wd.ten_stage(m))
    if preds:
      labels = np.concatenate([y for y, _ in preds.values()])
      return float(np.bincount(labels, minlength=signs.NUM_CLASSES).max() / max(len(labels), 1))
  return None


def _chance(workdir) -> str:
  """Chance levels of the 10-class held-out sets: the accuracy of always answering the
  most frequent class, and the mean SE (balanced accuracy) of any constant answer."""
  for m in paper_results.TABLE2_METHODS:
    preds = results.stage_predictions(workdir, wd.ten_stage(m))
    if preds:
      labels = np.concatenate([y for y, _ in preds.values()])
      share = np.bincount(labels, minlength=signs.NUM_CLASSES) / max(len(labels), 1)
      return (f'Chance: AC {share.max():.3f} by always answering '
              f'`{signs.CLASS_NAMES[int(share.argmax())]}` (its share of the held-out '
              f'patches), mean SE {1 / signs.NUM_CLASSES:.3f}.')
  return ''


def _transfer(workdir, cfg: dict, sign_names, ft1: tables.Table, ft2: tables.Table,
              report: pathlib.Path) -> str:
  """Fig. 5 section: the ImageNet transfer baselines beside our fine-tuned model."""
  tcfg = cfg.get('transfer', {}) or {}
  archs = tuple(tcfg.get('archs') or TRANSFER_ARCHS)
  random_init = _random_init_archs(workdir, archs)
  archs = tuple(a for a in archs if a not in random_init)
  bars = {'(a) binary, mean over signs': {}, '(b) 10-class': {}}
  lines, ran = [], []
  for arch in archs:
    b = results.binary_mean_cell(workdir, [wd.transfer_stage(arch, s) for s in sign_names])
    t = results.class_cell(workdir, wd.transfer_stage(arch), None)
    if b.num_folds:
      bars['(a) binary, mean over signs'][arch] = b.mean
    if t.num_folds:
      bars['(b) 10-class'][arch] = t.mean
    if b.num_folds or t.num_folds:
      ran.append(arch)
      lines.append(f'| {arch} | ' + ' | '.join(
          tables.fmt(x) for x in list(b.mean) + list(t.mean)) + ' |')
  not_run = [a for a in archs if a not in ran]
  notes = ''
  if random_init:
    notes += (f'\n{", ".join(random_init)}: run with randomly initialised weights, so not '
              'reported as ImageNet transfer learning.\n')
  if not lines:
    reason = tcfg.get('reason') or NO_TRANSFER_REASON
    return ('## Transfer learning (Fig. 5)\n\nThe ImageNet transfer baselines (AlexNet, '
            f'VGG16, ResNet-101) were not run: {reason}.\n' + notes)
  if not_run:
    notes += (f'\n{", ".join(not_run)}: not run (no converted weights folder for it under '
              'config.transfer.weights).\n')
  bars['(a) binary, mean over signs']['ours (fine-tuned)'] = ft1.cells['mean', 'finetune'].mean
  bars['(b) 10-class']['ours (fine-tuned)'] = ft2.cells['mean', 'finetune'].mean
  png = figures.fig5(bars, report / 'fig5_transfer.png')
  ours = ('| ours (fine-tuned) | ' + ' | '.join(tables.fmt(x) for x in list(
      ft1.cells['mean', 'finetune'].mean) + list(ft2.cells['mean', 'finetune'].mean)) + ' |')
  return ('## Transfer learning (Fig. 5)\n\n| model | binary AC | binary SE | binary SP | '
          '10-class AC | 10-class SE | 10-class SP |\n|---|---:|---:|---:|---:|---:|---:|\n'
          + '\n'.join(lines + [ours]) + '\n\n'
          + (f'![Fig. 5]({png.name})\n' if png else '') + notes)


def _quality(workdir, report: pathlib.Path) -> str:
  """Generated-sample quality: the section cisl_jax/quality/section.py wrote for each fold's
  `quality` stage (`fold<k>/quality/quality.md`, figure `memorisation.png`)."""
  parts = []
  for k, d in wd.fold_dirs(workdir).items():
    md = d / wd.QUALITY / wd.QUALITY_MD
    if not md.exists():
      continue
    text = md.read_text()
    fig = d / wd.QUALITY / wd.MEMORISATION_PNG
    if fig.exists():
      name = f'quality_memorisation_fold{k}.png'
      shutil.copyfile(fig, report / name)
      text = text.replace(f'({wd.MEMORISATION_PNG})', f'({name})')
    parts.append(text.replace('## Quality of the generated patches',
                              f'### Fold {k}', 1))
  if not parts:
    return ('## Generated-sample quality\n\nNo quality stage results in this run '
            '(`fold<k>/quality/quality.md` absent).\n')
  csvs = [d / wd.QUALITY / wd.QUALITY_CSV for d in wd.fold_dirs(workdir).values()]
  csvs = [c.read_text().splitlines() for c in csvs if c.exists()]
  head = ''
  if csvs:  # one table of every fold's rows beside the report
    wd.write_text(report / wd.QUALITY_CSV, '\n'.join(csvs[0][:1] + [r for c in csvs for r in c[1:]]) + '\n')
    head = 'Every fold\'s rows: [quality.csv](quality.csv).\n\n'
  return '## Generated-sample quality\n\n' + _recipe(workdir) + head + '\n'.join(parts)


def _recipe(workdir) -> str:
  """Which CVAE-GAN objective made the samples (config.gan.recipe of the GAN stages)."""
  for d in wd.fold_dirs(workdir).values():
    path = d / wd.GAN / wd.CONFIG_FILE
    if path.exists():
      config = json.loads(path.read_text())
      gan = config.get('gan', {})
      recipe = gan.get('recipe', 'paper')
      if recipe == 'paper':
        text = ('Samples from the CVAE-GAN recipe `paper`: the paper\'s objective '
                '(cisl_jax/gan_recipes.py).')
      else:
        pieces = ', '.join(f'{k}={v}' for k, v in sorted(gan.get('improved', {}).items()))
        text = (f'Samples from the CVAE-GAN recipe `improved` (cisl_jax/gan_recipes.py): '
                f'{pieces}.')
      return f'{text} {_gan_size(config)}{_intensity_match(d)}\n\n'
  return ''


def _intensity_match(fold_dir: pathlib.Path) -> str:
  """Whether the fold's generate stage intensity-matched its set (configs/generate.py)."""
  metrics = wd.read_json(fold_dir / wd.GENERATE / wd.METRICS_FILE) or {}
  if not metrics.get('intensity_match'):
    return ''
  return (' The generate stage then mapped each sign\'s pixel values onto the quantiles of '
          'that sign\'s real training patches (`match_intensities`, '
          'cisl_jax/intensity_match.py): the classifiers pre-train on the matched set, '
          'and each automated Turing test below scores it beside the decoder\'s own '
          'output.')


def _gan_size(config: dict) -> str:
  """The GAN's widths and budget, which decide its samples as much as the recipe."""
  gan = config.get('gan', {})
  widths = f'width {config.get("width")}' + ''.join(
      f', {name} {gan[f"{name}_width"]}' for name in ('decoder', 'discriminator', 'classifier')
      if gan.get(f'{name}_width'))
  return (f'Networks at {widths}; {config.get("num_steps")} iterations at batch '
          f'{config.get("batch_size")}.')


def _fig3(workdir, report: pathlib.Path) -> str:
  """Copies the generate stage's real-vs-generated grid (Fig. 3) of the first fold."""
  for k, d in wd.fold_dirs(workdir).items():
    pngs = sorted((d / wd.GENERATE).glob('*.png'))
    if pngs:
      dst = report / f'fig3_real_vs_generated_fold{k}.png'
      shutil.copyfile(pngs[0], dst)
      return (f'## Fig. 3: real vs generated patches (fold {k})\n\n'
              f'![Fig. 3]({dst.name})\n')
  return '## Fig. 3: real vs generated patches\n\nNo generate stage has finished yet.\n'


def _fig4(workdir, cfg: dict, report: pathlib.Path, why: str = '') -> str:
  """Fine-tuned GGO AC/SE/SP against the number of generated pre-training patches."""
  sizes = [int(n) for n in cfg.get('sweep_sizes', [])]
  full = cfg.get('generated_per_sign')
  cells = {n: results.binary_cell(workdir, wd.sweep_stage(n, 'finetune')) for n in sizes}
  if full:
    cells[int(full)] = results.binary_cell(workdir, wd.binary_stage('GGO', 'finetune'))
  png = figures.fig4(list(cells), cells, report / 'fig4_pretraining_size.png')
  if png is None:
    return ('## Fig. 4: pre-training set size\n\nThe size sweep has not run'
            + (f': {why}' if why else '') + '.\n')
  rows = '\n'.join(
      f'| {n} | ' + ' | '.join(f'{tables.fmt(c.mean[i])} ± {tables.fmt(c.std[i])}'
                               for i in range(3)) + ' |'
      for n, c in sorted(cells.items()) if c.num_folds)
  return ('## Fig. 4: pre-training set size (GGO, after fine-tuning)\n\n'
          f'The paper reports a plateau at about {paper_results.FIG4_PLATEAU} patches.\n\n'
          '| generated GGO patches | AC | SE | SP |\n|---:|---:|---:|---:|\n' + rows
          + f'\n\n![Fig. 4]({png.name})\n')


def write_report(workdir) -> pathlib.Path:
  """Writes `<workdir>/report/` and returns the path of its README.md."""
  workdir = pathlib.Path(workdir)
  report = wd.report_dir(workdir)
  report.mkdir(parents=True, exist_ok=True)
  cfg = wd.read_json(workdir / wd.SETTINGS_FILE) or {}
  status = wd.read_json(workdir / wd.STATUS_FILE) or {}
  source = cfg.get('source', 'unknown')
  sign_names = tuple(cfg.get('signs') or signs.SIGNS)

  t1 = tables.table1(workdir, sign_names)
  t2 = tables.table2(workdir)
  wd.write_text(report / 'table1_binary.csv', tables.to_csv(t1))
  wd.write_text(report / 'table2_ten_class.csv', tables.to_csv(t2))
  titles = tables.METHOD_TITLES
  cm2 = figures.confusion_ten(workdir, paper_results.TABLE2_METHODS, titles,
                              report / 'confusion_ten_class.png')
  cm1 = figures.confusion_binary(workdir, sign_names, paper_results.TABLE1_METHODS, titles,
                                 report / 'confusion_binary.png')
  curves = figures.training_curves(workdir, {
      'CVAE-GAN': wd.GAN, '10-class pre-training': wd.ten_stage('pretrain'),
      '10-class fine-tuning': wd.ten_stage('finetune'),
      '10-class scratch': wd.ten_stage('scratch'),
      '10-class traditional': wd.ten_stage('traditional'),
      f'binary {sign_names[0]} fine-tuning': wd.binary_stage(sign_names[0], 'finetune')},
      report / 'training_curves.png')

  folds = sorted(wd.fold_dirs(workdir))
  unfinished = lambda prefix: sorted(k for k, v in status.items() if prefix in k
                                     and v.get('state') != 'done')
  def why(prefix):
    failed = [k for k in unfinished(prefix) if status[k].get('state') != 'skipped']
    if failed:
      return f'the stages {", ".join(failed[:6])} did not finish (see below)'
    if (found := unmeasured.causes(status, prefix)):
      more = f'; and {len(found) - 2} more' if len(found) > 2 else ''
      return (f'the data cannot feed them: {"; ".join(found[:2])}{more} (see "Not measured '
              'on this data")')
    return 'no such stage finished'

  no_binary, no_ten = why('/binary_'), why('/ten_')
  t2m = t2.cells['mean', 'finetune']
  parts = [
      first_line(source, cfg.get('data_dir', '')),
      '',
      (f'Protocol of the paper, {cfg.get("num_folds", len(folds))}-fold cross-validation by '
       f'patient (folds present: {folds}); config variant `{cfg.get("variant", "?")}`. '
       'Cells: ours as mean ± std over folds, the paper\'s figure in parentheses; '
       'a second table gives 95% bootstrap intervals over the held-out patches pooled '
       'over the folds. `–`: not run, failed, not measurable on this data, or undefined '
       '(the paper\'s text leaves most of Table II\'s AC cells empty).'),
      '',
      '## Headline',
      '',
      (f'- Binary, mean over signs, fine-tuned: AC/SE/SP '
       f'{" / ".join(tables.fmt(x) for x in t1.cells["mean", "finetune"].mean)} '
       f'(paper {" / ".join(tables.fmt(x) for x in paper_results.table1("mean", "finetune"))}).'
       + versus_chance(t1.cells['mean', 'finetune'], 0.5)),
      (f'- 10-class, fine-tuned: AC {tables.fmt(t2m.mean[0])}, mean SE '
       f'{tables.fmt(t2m.mean[1])}, mean SP {tables.fmt(t2m.mean[2])} (paper '
       f'{" / ".join(tables.fmt(x) for x in paper_results.TABLE2_TEXT_MEANS["finetune"])}). '
       f'{_chance(workdir)}'
       + (versus_chance(t2m, share) if (share := _chance_share(workdir)) is not None else '')),
      f'- Binary: {_bullet(_compare(t1, "finetune", ("scratch", "pretrain", "traditional")), no_binary)}',
      f'- 10-class: {_bullet(_compare(t2, "finetune", ("scratch", "pretrain", "traditional")), no_ten)}',
      '',
      _status_section(status),
      unmeasured.section(status),
      '## Table I: binary classification per sign',
      '',
      'Scratch: the real training folds only (the paper\'s text: about 0.5); '
      'pre-training: generated patches only; fine-tuning: then the real training folds; '
      'traditional: classical augmentation of the real folds to the same number of '
      'patches. SE: the sign; SP: non-sign patches. CSV: `table1_binary.csv`.',
      '',
      tables.markdown(t1),
      '\n'.join(unmeasured.binary_notes(status, sign_names)
                + unmeasured.chance_flags(t1, t1.methods, tables.METHOD_TITLES)),
      '',
      '## Table II: 10-class classification',
      '',
      'Per class: AC is one class against the rest, SE and SP likewise; the mean row is '
      'the overall 10-class accuracy and the mean SE and SP over classes. '
      'CSV: `table2_ten_class.csv`.',
      '',
      tables.markdown(t2),
      '\n'.join(unmeasured.ten_class_note(
          unmeasured.absent_classes(workdir, wd.ten_stage('finetune')), folds)
                + unmeasured.untrained_classes(_card(cfg), folds,
                                               int(cfg.get('num_folds', len(folds))))),
      '',
      _fig3(workdir, report),
      _fig4(workdir, cfg, report, why('/sweep_') if unfinished('/sweep_')
            else why('/binary_GGO_') if unfinished('/binary_GGO_') else ''),
      small_data.section(workdir, cfg, status, report, _card(cfg)),
      '## Confusion matrices (summed over folds)',
      '',
      f'![10-class]({cm2.name})' if cm2 else 'No 10-class stage has finished.',
      '',
      f'![binary]({cm1.name})' if cm1 else f'No binary stage has finished: {no_binary}.',
      '',
      '## Training curves',
      '',
      f'![curves]({curves.name})' if curves else 'No stage logged training scalars.',
      '',
      _quality(workdir, report),
      _transfer(workdir, cfg, sign_names, t1, t2, report),
      _timings(status),
  ]
  readme = report / 'README.md'
  wd.write_text(readme, '\n'.join(parts).rstrip() + '\n')
  return readme


def _card(cfg: dict) -> dict | None:
  """The run's dataset card (counts per class and fold), if the dataset is still there."""
  if not cfg.get('data_dir') or not cfg.get('source'):
    return None
  return wd.read_json(pathlib.Path(cfg['data_dir'], 'cisl_patches', cfg['source'], '1.0.0',
                                   'dataset_card.json'))


def _timings(status: dict) -> str:
  """Wall and CPU time per stage kind, summed over folds (skipped stages excluded)."""
  done = {k: v for k, v in status.items() if v.get('state') == 'done' and 'seconds' in v}
  if not done:
    return ''
  by_kind: dict[str, list[tuple[float, float]]] = {}
  for k, v in done.items():
    stage = k.split('/', 1)[-1]
    kind = ('binary ' + stage.rsplit('_', 1)[-1] if stage.startswith('binary_')
            else 'sweep ' + stage.rsplit('_', 1)[-1] if stage.startswith('sweep_')
            else 'small-data ' + stage.split('_', 1)[-1] if stage.startswith('share') else stage)
    by_kind.setdefault(kind, []).append((float(v['seconds']),
                                         float(v.get('cpu_seconds', float('nan')))))
  num = lambda x: '–' if math.isnan(x) else f'{x:.0f}'
  rows = '\n'.join(f'| {k} | {len(v)} | {sum(w for w, _ in v):.0f} | '
                   f'{num(sum(c for _, c in v))} |' for k, v in sorted(by_kind.items()))
  wall = sum(w for v in by_kind.values() for w, _ in v)
  cpu = sum(c for v in by_kind.values() for _, c in v)
  return ('## Stage times\n\nWall seconds depend on the machine\'s load; CPU seconds (all '
          'threads of this process) on the work.\n\n| stage | runs | wall s | CPU s |\n'
          '|---|---:|---:|---:|\n' + rows + f'\n| **all** | {len(done)} | {wall:.0f} | {num(cpu)} |\n')
