"""A trained run's own config.json, and what kind of workdir a folder is.

Evaluation and prediction restore a classifier from its --workdir; pointed at another
kind of folder (a GAN run, a generated set, a whole reproduction, a dataset) they must
say what the folder is and what was expected, not fail on a missing field.
No JAX or TensorFlow here.
"""
import json
import os

import ml_collections

from cisl_jax import workdir as wd

CONFIG_FILE = wd.CONFIG_FILE
EXAMPLE = 'workdir/quick/fold0/ten_finetune'

# What each kind of workdir is, as the message names it.
KINDS = {
    'classifier': 'a train_classifier.py run',
    'gan': 'a train_gan.py run (the CVAE-GAN)',
    'generate': 'a generate.py run (a generated patch set)',
    'quality': 'a generated-sample quality stage',
    'reproduce': 'a whole reproduce.py run',
    'dataset': 'a make_dataset.py data folder',
}


class WrongWorkdir(ValueError):
  """A folder that is not the kind of workdir a command needs; the message says both."""


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, json.JSONDecodeError):
    return None
  return data if isinstance(data, dict) else None


def kind_of(workdir: str) -> str | None:
  """'classifier', 'gan', 'generate', 'quality', 'reproduce', 'dataset' or None."""
  metrics = _read_json(os.path.join(workdir, wd.METRICS_FILE)) or {}
  if metrics.get('stage') in KINDS:
    return metrics['stage']
  config = _read_json(os.path.join(workdir, CONFIG_FILE))
  if config is not None:
    if 'mode' in config:
      return 'classifier'
    if isinstance(config.get('gan'), dict):
      return 'gan'
    if 'gan_workdir' in config:
      return 'generate'
    if 'features_from' in config:
      return 'quality'
  if any(os.path.isfile(os.path.join(workdir, f)) for f in (wd.SETTINGS_FILE, wd.STATUS_FILE)):
    return 'reproduce'
  if os.path.isdir(os.path.join(workdir, 'cisl_patches')) or os.path.isfile(
      os.path.join(workdir, 'dataset_card.json')):
    return 'dataset'
  return None


def _classifier_runs_inside(workdir: str, limit: int = 3) -> list[str]:
  found = []
  for root, dirs, _ in os.walk(workdir):
    dirs.sort()
    if kind_of(root) == 'classifier':
      found.append(root)
      dirs[:] = []
    if len(found) >= limit:
      break
  return found


def classifier_config(workdir: str, flag: str = '--config.classifier_workdir'
                      ) -> ml_collections.ConfigDict:
  """The config.json of the train_classifier.py run in `workdir`.

  Raises:
    WrongWorkdir: naming what `workdir` is (a GAN run, a reproduction, ...) and what
      `flag` needs, with classifier runs found inside it where there are any.
  """
  expected = (f'{flag} must be the --workdir of a train_classifier.py run '
              f'(e.g. {EXAMPLE})')
  if not os.path.isdir(workdir):
    raise WrongWorkdir(f'{workdir}: no such folder; {expected}.')
  kind = kind_of(workdir)
  if kind == 'classifier':
    config = _read_json(os.path.join(workdir, CONFIG_FILE))
    if config is not None:
      return ml_collections.ConfigDict(config)
  if kind is None:
    what = f'has no readable {CONFIG_FILE} of a stage'
  else:
    what = f'is {KINDS[kind]}, not a classifier run'
  inside = _classifier_runs_inside(workdir) if kind in ('reproduce', None) else []
  hint = f'; classifier runs inside it: {", ".join(inside)}' if inside else ''
  raise WrongWorkdir(f'{workdir} {what}: {expected}{hint}.')


# Fields that say which patches an evaluation scores; unset (None) = the trained run's.
DATA_FIELDS = ('data_dir', 'source', 'fold', 'task', 'sign')


def _task(task: str) -> str:
  return 'ten_class' if task in ('ten', 'ten_class') else task


def evaluation_target(config: ml_collections.ConfigDict,
                      train_config: ml_collections.ConfigDict) -> dict:
  """Which patches an evaluation of the run `train_config` scores, and what they are.

  Each of config.data_dir, .source, .fold, .task, .sign left unset is the trained run's:
  by default a model is scored on its own held-out fold. Setting one scores other data
  (another fold, source or dataset); the label says so. The folds the model trained on
  are refused unless config.allow_training_data, and are then labelled training data.

  Returns:
    {'data_dir', 'source', 'fold', 'task', 'sign', 'split', 'description'} with split
    'held-out', 'training' or 'other'.
  """
  target = {k: train_config.get(k) if config.get(k) is None else config[k]
            for k in DATA_FIELDS}
  if config.get('sign') is not None:
    from cisl_jax import signs  # pylint: disable=g-import-not-at-top
    try:
      target['sign'] = signs.canonical(config.sign)
    except ValueError as e:
      raise ValueError(f'--config.sign: {e}') from None
  if _task(str(target['task'])) != _task(str(train_config.task)):
    raise ValueError(f'--config.task={config.task}: the model was trained for task '
                     f'{train_config.task!r} and its head gives that task\'s classes; '
                     'leave --config.task unset.')
  num_folds = int(train_config.num_folds)
  if not 0 <= int(target['fold']) < num_folds:
    raise ValueError(f'--config.fold={target["fold"]} is not in 0..{num_folds - 1} (the '
                     f'trained run\'s num_folds={num_folds}).')
  same_data = (target['source'] == train_config.source and os.path.abspath(
      target['data_dir']) == os.path.abspath(train_config.data_dir))
  binary = _task(str(target['task'])) == 'binary'
  same_sign = not binary or str(target['sign']).lower() == str(train_config.sign).lower()
  where = f'fold {target["fold"]} of source {target["source"]!r} in {target["data_dir"]}'
  if binary:
    where += f', sign {target["sign"]}'
  trained_folds = [f for f in range(num_folds) if f != int(train_config.fold)]
  if same_data and same_sign and int(target['fold']) == int(train_config.fold):
    split, text = 'held-out', f'held-out {where}'
  elif same_data and int(target['fold']) in trained_folds:
    if not config.get('allow_training_data'):
      raise ValueError(
          f'{where} is training data of this model (it trained on folds {trained_folds} '
          f'and holds out fold {train_config.fold}); scores on it are not held-out results. '
          'Leave --config.fold unset to score the held-out fold, or pass '
          '--config.allow_training_data=True to score training data, labelled as such.')
    split, text = 'training', f'TRAINING data ({where}; the model trained on it)'
  else:
    split = 'other'
    text = (f'other data: {where} (the model was trained on source '
            f'{train_config.source!r} in {train_config.data_dir}, holding out fold '
            f'{train_config.fold}' + (f', for sign {train_config.sign}' if binary else '')
            + ')')
  return {**target, 'split': split, 'description': text}
