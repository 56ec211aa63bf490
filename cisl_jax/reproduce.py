"""The paper's whole protocol, stage by stage, resumable, then the report.

For each held-out fold k: the CVAE-GAN on the other folds, generation, the 10-class task
(scratch, pre-training, pre-training + fine-tuning, traditional augmentation), the binary
task per sign (scratch, pre-training, fine-tuning, traditional), the Fig. 4 size sweep,
optional ImageNet transfer baselines, generated-sample quality and, where
config.small_data_shares is set, the small-data curve (the GAN and the 10-class methods
again on each share of the real training patches). Each stage runs in-process (the jit
caches carry over between stages of equal shapes) in its own folder
`<workdir>/fold<k>/<stage>/`; a stage whose folder holds metrics.json is done and is
skipped, so a killed run started again continues where it stopped. A stage that raises is
logged by name and recorded in `<workdir>/status.json`; the stages that need it are marked
blocked, every other stage still runs, and the report lists them. A stage the data cannot
feed (a sign without patches in its training or held-out fold, by the dataset card or
signs.AbsentClass from the stage) is skipped with the reason, as are the stages that need
it: printed, in status.json and in the report, never "failed".
"""
import copy
import dataclasses
import functools
import json
import pathlib
import time
import traceback
from typing import Any

from absl import logging
import ml_collections

from cisl_jax import signs
from cisl_jax import terminal
from cisl_jax import workdir as wd


@dataclasses.dataclass
class Stage:
  """One unit of work: runs `fn(config, workdir)` unless its metrics.json exists."""
  name: str  # 'fold<k>/<stage>', also the key in status.json
  kind: str  # what it does: gan, generate, ten_scratch, binary_pretrain, ... (for the ETA)
  runner: str  # which Runners method runs it
  config: Any
  workdir: pathlib.Path
  needs: tuple[str, ...] = ()  # stages that must have finished first


class Runners:
  """The stage functions, imported lazily so that the report and tests need no model code.

  Tests replace them with counting or failing versions.
  """

  def check_data(self, config):
    check_dataset(config)

  def gan(self, config, workdir):
    from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top
    return gan.train_and_evaluate(config, str(workdir))

  def generate(self, config, workdir):
    from cisl_jax.train import generate  # pylint: disable=g-import-not-at-top
    return generate.generate(config, str(workdir))

  def classifier(self, config, workdir):
    from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
    return classifier.train_and_evaluate(config, str(workdir))

  def quality(self, config, workdir):
    from cisl_jax.quality import stage  # pylint: disable=g-import-not-at-top
    return stage.run_stage(config, str(workdir))


def check_dataset(config) -> None:
  """Raises FileNotFoundError (with the make_dataset command) unless the dataset of
  config.data_dir / config.source is built with every fold of config.num_folds.

  Read from dataset_info.json, without TensorFlow: the check runs before any stage.
  """
  folder = pathlib.Path(config.data_dir, 'cisl_patches', config.source, '1.0.0')
  info = folder / 'dataset_info.json'
  build = (f'python launch/make_dataset.py --source={config.source} '
           f'--data_dir={config.data_dir}' + (' --input=PATH' if config.source != 'phantom'
                                              else ''))
  if not info.is_file():
    raise FileNotFoundError(f'{folder}: no built dataset, so no stage can run; build it '
                            f'first with `{build}` (or set --config.data_dir / '
                            '--config.source to a built one).')
  splits = {s.get('name') for s in json.loads(info.read_text()).get('splits', [])}
  missing = [f'fold{k}' for k in range(config.num_folds) if f'fold{k}' not in splits]
  if missing:
    raise FileNotFoundError(f'{folder} has splits {sorted(splits)} but '
                            f'--config.num_folds={config.num_folds} needs {missing}; set '
                            f'--config.num_folds={len(splits)} (and --config.folds) or '
                            f'rebuild with `{build} --config.num_folds={config.num_folds}`.')
  bad_folds = [k for k in config.folds if not 0 <= k < config.num_folds]
  if bad_folds:
    raise ValueError(f'--config.folds={tuple(config.folds)}: {bad_folds} not in '
                     f'0..{config.num_folds - 1}.')


def read_card(config) -> dict | None:
  """The built dataset's card (dataset_card.json: patches per class and fold), or None."""
  return wd.read_json(pathlib.Path(config.data_dir, 'cisl_patches', config.source, '1.0.0',
                                   'dataset_card.json'))


def absent_reason(stage: Stage, card: dict | None) -> str | None:
  """Why a stage cannot be measured on this dataset, from its card, else None: a binary
  stage whose sign has no patches in its training folds (nothing to train on; the GAN
  never saw it) or in its held-out fold (nothing to test on); a GAN without any sign
  patch to train on."""
  cfg = stage.config
  if card is None or 'fold' not in cfg or 'num_folds' not in cfg:
    return None
  per_fold = {int(k[4:]): v.get('per_class', {}) for k, v in card.get('folds', {}).items()
              if k.startswith('fold') and k[4:].isdigit()}
  train = [f for f in range(cfg.num_folds) if f != cfg.fold]
  count = lambda name, folds: sum(int(per_fold.get(f, {}).get(name, 0)) for f in folds)
  if stage.runner == 'gan' and not any(count(s, train) for s in signs.SIGNS):
    return f'no sign patches in the training folds {train} (dataset card)'
  if stage.runner != 'classifier' or cfg.get('task') != 'binary':
    return None
  sign = signs.canonical(cfg.sign)
  missing = ([f'the training folds {train}'] if not count(sign, train) else []) + (
      [f'the held-out fold {cfg.fold}'] if not count(sign, [cfg.fold]) else [])
  if missing:
    return f'no {sign} patches in {" or in ".join(missing)} (dataset card)'
  return None


def check_configs(stages: list[Stage]) -> None:
  """Raises ConfigChanged naming every stage whose workdir holds a run of another
  config (a finished result would otherwise be reported as this config's)."""
  changed = [(s, c) for s in stages if (c := wd.config_changes(s.workdir, s.config))]
  if changed:
    shown = '\n  '.join(f'{s.name}: {"; ".join(c[:4])}' for s, c in changed[:10])
    more = f'\n  ... and {len(changed) - 10} more' if len(changed) > 10 else ''
    raise wd.ConfigChanged(
        f'{len(changed)} stage(s) of this workdir were run with another config:\n  '
        f'{shown}{more}\nTheir results belong to that config: use a new --workdir for this '
        'one (or rerun with the overrides that wrote it).')


def _override(base: ml_collections.ConfigDict, where: str, **fields) -> ml_collections.ConfigDict:
  """A copy of `base` with `fields` set; a field the stage config lacks is an error
  naming the config, so that a renamed field fails loudly instead of being ignored."""
  c = copy.deepcopy(base)
  with c.unlocked():
    for k, v in fields.items():
      if k not in c:
        raise KeyError(f'{where} has no field {k!r} (fields: {sorted(c.keys())}); '
                       'the reproduce config and the stage config disagree.')
      setattr(c, k, v)
  return c


def _shared(config, fold: int) -> dict[str, Any]:
  """Fields every stage takes from the reproduce config."""
  return dict(data_dir=config.data_dir, source=config.source, num_folds=config.num_folds,
              fold=fold, seed=config.seed + fold)


def _classifier(config, fold: int, *, task: str, mode: str, method: str, sign: str = 'GGO',
                per_class: int = 0, generated_dir: str = '', init_from: str = '',
                transfer: dict | None = None, share: float = 1.0) -> ml_collections.ConfigDict:
  """The classifier stage config (configs/train_classifier.py) of one task and method;
  steps and learning rate come from config.methods[method]; `share` < 1 trains on that
  share of the real training patches (the small-data curve)."""
  m = config.methods[method]
  fields = dict(_shared(config, fold), task=task, sign=sign, mode=mode)
  if share != 1:
    fields.update(train_share=share)
  if m.num_steps:
    factor = config.ten_steps_factor if task == 'ten' else 1
    fields.update(num_steps=int(m.num_steps * factor))
  if mode == 'finetune':
    fields.update(finetune_learning_rate=m.learning_rate, init_from=init_from)
  elif mode != 'transfer':
    fields.update(learning_rate=m.learning_rate)
  if mode == 'pretrain':
    fields.update(generated_dir=generated_dir)
  if mode in ('pretrain', 'augment'):
    # Generated (pretrain) or augmented (augment) patches per class: the same number.
    fields.update(pretrain_per_class=per_class)
  c = _override(config.classifier, 'config.classifier', **fields)
  if transfer:
    c.transfer = _override(c.transfer, 'config.classifier.transfer', **transfer)
  return c


def small_data_shares(config) -> tuple[float, ...]:
  """config.small_data_shares, checked: fractions in (0, 1), each once (share 1 is the
  main run, whose stages the curve reuses)."""
  shares = tuple(float(x) for x in config.small_data_shares)
  bad = [x for x in shares if not 0 < x < 1]
  names = [wd.share_name(x) for x in shares]
  if bad or len(set(names)) != len(names):
    raise ValueError(
        f'--config.small_data_shares={shares}: give distinct fractions in (0, 1), e.g. '
        '--config.small_data_shares=0.25,0.5 (the 100% point is the main run\'s stages, '
        'reused).')
  return shares


def _small_data(config, fold: int, share: float, add, path) -> None:
  """The small-data curve's stages of one share and fold: a GAN and its generated set
  on that share only, then the 10-class scratch, pre-training + fine-tuning and
  traditional augmentation stages, all on the same share (train_share, seeded by the
  fold's seed: one subset for every method)."""
  name = functools.partial(wd.share_stage, share)
  ten = lambda method: name(wd.ten_stage(method))
  add(name(wd.GAN), 'gan', 'gan', _override(config.gan, 'config.gan', **_shared(config, fold),
                                             train_share=share))
  add(name(wd.GENERATE), 'generate', 'generate', _override(
      config.generate, 'config.generate', **_shared(config, fold),
      gan_workdir=path(name(wd.GAN)), num_per_sign=config.generated_per_class),
      (name(wd.GAN),))
  common = dict(task='ten', share=share)
  add(ten('scratch'), 'scratch', 'classifier', _classifier(
      config, fold, mode='scratch', method='scratch', **common))
  add(ten('pretrain'), 'pretrain', 'classifier', _classifier(
      config, fold, mode='pretrain', method='pretrain', per_class=config.generated_per_class,
      generated_dir=path(name(wd.GENERATE)), **common), (name(wd.GENERATE),))
  add(ten('finetune'), 'finetune', 'classifier', _classifier(
      config, fold, mode='finetune', method='finetune', init_from=path(ten('pretrain')),
      **common), (ten('pretrain'),))
  add(ten('traditional'), 'traditional', 'classifier', _classifier(
      config, fold, mode='augment', method='traditional',
      per_class=config.generated_per_class, **common))


def plan(config, workdir) -> list[Stage]:
  """Every stage of the protocol, in run order (fold by fold)."""
  workdir = pathlib.Path(workdir)
  shares = small_data_shares(config)
  stages = []
  sign_names = [signs.canonical(s) for s in config.signs]
  for fold in config.folds:
    # A classifier stage's kind names its task ('ten_pretrain', 'binary_pretrain'): the
    # 10-class stages train on ~3x the patches, and one mean over both misled the ETA.
    add = lambda name, kind, runner, cfg, needs=(): stages.append(Stage(  # pylint: disable=g-long-lambda
        wd.stage_key(fold, name), f'{cfg.task}_{kind}' if runner == 'classifier' else kind,
        runner, cfg, wd.stage_dir(workdir, fold, name),
        tuple(wd.stage_key(fold, n) for n in needs)))
    path = lambda name: str(wd.stage_dir(workdir, fold, name))
    gen_dir = path(wd.GENERATE)
    add(wd.GAN, 'gan', 'gan', _override(config.gan, 'config.gan', **_shared(config, fold)))
    add(wd.GENERATE, 'generate', 'generate', _override(
        config.generate, 'config.generate', **_shared(config, fold),
        gan_workdir=path(wd.GAN),
        num_per_sign=max([config.generated_per_sign, config.generated_per_class]
                          + list(config.sweep_sizes))), (wd.GAN,))

    def pair(stage, task, sign, n):
      # stage(method) names the folder: pre-training, then fine-tuning from it.
      add(stage('pretrain'), 'pretrain', 'classifier', _classifier(
          config, fold, task=task, sign=sign, mode='pretrain', method='pretrain',
          per_class=n, generated_dir=gen_dir), (wd.GENERATE,))
      add(stage('finetune'), 'finetune', 'classifier', _classifier(
          config, fold, task=task, sign=sign, mode='finetune', method='finetune',
          init_from=path(stage('pretrain'))), (stage('pretrain'),))

    if config.run_ten:
      add(wd.ten_stage('scratch'), 'scratch', 'classifier', _classifier(
          config, fold, task='ten', mode='scratch', method='scratch'))
      pair(wd.ten_stage, 'ten', 'GGO', config.generated_per_class)
      add(wd.ten_stage('traditional'), 'traditional', 'classifier', _classifier(
          config, fold, task='ten', mode='augment', method='traditional',
          per_class=config.generated_per_class))
    for s in sign_names:
      if config.run_binary_scratch:
        # Table I's baseline: without it the gain of pre-training cannot be judged.
        add(wd.binary_stage(s, 'scratch'), 'scratch', 'classifier', _classifier(
            config, fold, task='binary', sign=s, mode='scratch', method='scratch'))
      pair(functools.partial(wd.binary_stage, s), 'binary', s, config.generated_per_sign)
      add(wd.binary_stage(s, 'traditional'), 'traditional', 'classifier', _classifier(
          config, fold, task='binary', sign=s, mode='augment', method='traditional',
          per_class=config.generated_per_sign))
    if fold in config.sweep_folds:
      for n in config.sweep_sizes:
        if n != config.generated_per_sign:
          pair(functools.partial(wd.sweep_stage, n), 'binary', 'GGO', n)
    if config.transfer.weights:
      for arch in config.transfer.archs:
        tcfg = dict(arch=arch, weights=config.transfer.weights)
        for s in sign_names:
          add(wd.transfer_stage(arch, s), 'transfer', 'classifier', _classifier(
              config, fold, task='binary', sign=s, mode='transfer', method='transfer',
              transfer=tcfg))
        add(wd.transfer_stage(arch), 'transfer', 'classifier', _classifier(
            config, fold, task='ten', mode='transfer', method='transfer', transfer=tcfg))
    if config.quality.enabled and config.run_ten:
      # Features of the classifier trained on real patches only (cisl_jax/quality/).
      add(wd.QUALITY, 'quality', 'quality', ml_collections.ConfigDict(dict(
          _shared(config, fold), generated_dir=gen_dir,
          features_from=path(wd.ten_stage('scratch')),
          max_generated=config.quality.max_generated,
          c2st_steps=config.quality.c2st_steps)), (wd.GENERATE, wd.ten_stage('scratch')))
    if fold in config.small_data_folds:
      for share in shares:
        _small_data(config, fold, share, add, path)
  return stages


def settings(config) -> dict[str, Any]:
  """What the report needs to know about the run (written to reproduce.json)."""
  transfer_reason = '' if config.transfer.weights else (
      'no ImageNet weights were configured (config.transfer.weights is empty; convert them '
      'with launch/convert_weights.py and set --config.transfer.weights=<folder>)')
  return {
      'variant': config.variant, 'source': config.source, 'data_dir': config.data_dir,
      'num_folds': config.num_folds, 'folds': list(config.folds),
      'signs': [signs.canonical(s) for s in config.signs],
      'generated_per_sign': config.generated_per_sign,
      'generated_per_class': config.generated_per_class,
      'sweep_sizes': list(config.sweep_sizes), 'sweep_folds': list(config.sweep_folds),
      'small_data_shares': list(small_data_shares(config)),
      'small_data_folds': [k for k in config.small_data_folds if k in config.folds],
      'transfer': {'archs': list(config.transfer.archs), 'weights': config.transfer.weights,
                   'reason': transfer_reason},
  }


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s' if seconds >= 3600 \
      else f'{seconds // 60}m{seconds % 60:02d}s'


CLASSIFIER_KINDS = ('scratch', 'pretrain', 'finetune', 'traditional', 'transfer')


def _is_classifier(kind: str) -> bool:
  return kind.rsplit('_', 1)[-1] in CLASSIFIER_KINDS


def _eta(todo: list[Stage], status: dict[str, dict]) -> float | None:
  """Seconds left: each remaining stage costs the mean measured time of its kind (over
  every run of this workdir, in run order), leaving out the kind's first run once there
  are others: the first compiles the jitted steps, the rest reuse them (with the first
  in, the sixth session's demo showed 21 minutes left for 11). A classifier kind not
  measured yet costs the mean of the measured classifier stages of its task ('ten_',
  'binary_'), any other kind not measured yet the mean of all of them, chosen the same
  way. None while a remaining kind has no
  estimate: the GAN's minutes say nothing of a classifier stage's seconds (taking them
  gave "4h27m left" for 11 minutes)."""
  by_kind: dict[str, list[float]] = {}
  for v in status.values():
    if v.get('state') == 'done' and v.get('seconds') is not None:
      by_kind.setdefault(v['kind'], []).append(v['seconds'])
  warm = {k: v[1:] or v for k, v in by_kind.items()}
  mean = {k: sum(v) / len(v) for k, v in warm.items()}

  def classifier_mean(prefix: str) -> float | None:
    runs = [s for k, v in warm.items() if _is_classifier(k) and k.startswith(prefix)
            for s in v]
    return sum(runs) / len(runs) if runs else None

  left = 0.0
  for stage in todo:
    seconds = mean.get(stage.kind)
    if seconds is None and _is_classifier(stage.kind):
      task = stage.kind.rpartition('_')[0]  # '' for a kind that names no task
      seconds = classifier_mean(task + '_' if task else '')
    if seconds is None:  # any other kind not measured yet (e.g. the quality stage)
      seconds = classifier_mean('')
    if seconds is None:
      return None
    left += seconds
  return left


def run(config, workdir, runners: Runners | None = None,
        write_report: bool = True) -> tuple[pathlib.Path | None, list[str]]:
  """Runs every unfinished stage, then writes the report.

  Returns:
    (path of report/README.md or None, names of the stages that failed or were blocked).
  """
  runners = runners or Runners()
  workdir = pathlib.Path(workdir)
  # Problems every stage would hit stop the run once, before any stage or file.
  runners.check_data(config)
  check_configs(plan(config, workdir))
  workdir.mkdir(parents=True, exist_ok=True)
  wd.write_json(workdir / wd.SETTINGS_FILE, settings(config))
  status_path = workdir / wd.STATUS_FILE
  status = json.loads(status_path.read_text()) if status_path.exists() else {}
  stages = plan(config, workdir)
  card = read_card(config)
  start = time.time()
  not_ok: list[str] = []

  def todo(rest):  # what the estimate counts: unfinished stages the data can feed
    return [s for s in rest if not wd.is_done(s.workdir) and absent_reason(s, card) is None]

  def skip(stage, prefix, reason, cause=None):
    # Not measurable on this data (an absent class): neither failed nor to retry.
    status[stage.name] = {'state': 'skipped', 'kind': stage.kind, 'reason': reason,
                          'cause': cause or reason}
    terminal.say(f'{prefix}: skipped: {reason}')
    wd.write_json(status_path, status)

  for i, stage in enumerate(stages):
    prefix = f'[{i + 1}/{len(stages)}] {stage.name}'
    if wd.is_done(stage.workdir):
      prev = status.get(stage.name, {})
      if prev.get('state') != 'done':
        status[stage.name] = {'state': 'done', 'kind': stage.kind, 'skipped': True}
      terminal.say(f'{prefix}: already done, skipped')
      continue
    if (reason := absent_reason(stage, card)) is not None:
      skip(stage, prefix, reason)
      continue
    skipped_needs = [n for n in stage.needs if status.get(n, {}).get('state') == 'skipped']
    if skipped_needs:
      cause = status[skipped_needs[0]].get('cause') or status[skipped_needs[0]]['reason']
      skip(stage, prefix, f'needs {skipped_needs[0]}, skipped: {cause}', cause)
      continue
    missing = [n for n in stage.needs if status.get(n, {}).get('state') != 'done']
    if missing:
      status[stage.name] = {'state': 'blocked', 'kind': stage.kind,
                            'error': f'needs {", ".join(missing)}, which did not finish'}
      not_ok.append(stage.name)
      logging.error('%s: blocked: needs %s', prefix, ', '.join(missing))
      wd.write_json(status_path, status)
      continue
    eta = _eta(todo(stages[i:]), status)
    eta_text = _duration(eta) if eta is not None else 'after the first classifier stage'
    terminal.status(f'{prefix}: running (elapsed {_duration(time.time() - start)}, '
                    f'ETA {eta_text})')
    t0, cpu0 = time.time(), time.process_time()
    try:
      with terminal.inner():  # the stage's own lines go to the log; one line per stage here
        getattr(runners, stage.runner)(stage.config, stage.workdir)
      if not wd.is_done(stage.workdir):
        raise RuntimeError(f'{stage.workdir}: the stage returned without writing '
                           f'{wd.METRICS_FILE}')
    except signs.AbsentClass as e:  # found by the stage itself (e.g. no background pool)
      logging.info('%s: not measurable: %s', prefix, e)
      skip(stage, prefix, str(e))
      continue
    except Exception as e:  # pylint: disable=broad-except
      # One stage's failure must not cost the others' results: record it and go on.
      logging.exception('%s: FAILED after %.1fs: %s', prefix, time.time() - t0, e)
      status[stage.name] = {'state': 'failed', 'kind': stage.kind,
                            'seconds': time.time() - t0,
                            'error': ''.join(traceback.format_exception_only(e)).strip()}
      not_ok.append(stage.name)
    else:
      # CPU seconds (all threads) beside wall time: on a shared machine the wall time
      # measures the load, the CPU time the work.
      status[stage.name] = {'state': 'done', 'kind': stage.kind, 'seconds': time.time() - t0,
                            'cpu_seconds': time.process_time() - cpu0}
      left = _eta(todo(stages[i + 1:]), status)
      left_text = (f'about {_duration(left)} left' if left is not None
                   else 'time left known after the first classifier stage')
      terminal.say(f'{prefix}: done in {time.time() - t0:.1f}s '
                   f'({time.process_time() - cpu0:.1f} CPU s); elapsed '
                   f'{_duration(time.time() - start)}, {left_text}')
    wd.write_json(status_path, status)
  wd.write_json(status_path, status)
  num_skipped = sum(status.get(s.name, {}).get('state') == 'skipped' for s in stages)
  terminal.say(f'all {len(stages)} stages visited in {_duration(time.time() - start)}; '
               f'{len(not_ok)} failed or blocked, {num_skipped} not measurable on this data '
               '(skipped, the report says why)')
  readme = None
  if write_report:
    from cisl_jax.report import readme as readme_lib  # pylint: disable=g-import-not-at-top
    readme = readme_lib.write_report(workdir)
  return readme, not_ok

