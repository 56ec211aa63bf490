"""Classifier stages: scratch, pretrain, finetune, augment and transfer; evaluation.

Modes (config.mode, one row each of the `MODES` table), for the 10-class task or the
binary task of one sign:
  scratch:  the paper's CNN on the real training folds.
  pretrain: on generated sign patches (config.generated_dir) plus real background
            patches, `pretrain_per_class` per class (input_pipeline.pretrain_task).
  finetune: params and BatchNorm statistics from config.init_from (a pretrain workdir),
            a fresh Adam at config.finetune_learning_rate, on the real training folds.
  augment:  the real training folds with the paper's traditional augmentation applied on
            device to every batch, for as many samples as the pretrain set holds.
  transfer: an ImageNet network from cisl_jax.train.transfer, fine-tuned as the paper.
Training runs through the shared fit loop (cisl_jax/train/loop.py). Each stage ends by
evaluating on the held-out fold: `<workdir>/metrics.json` and
`<workdir>/predictions.npz` (labels, preds, probs for bootstrap intervals, and per patch
its patient_id, slice_path, sop_uid, box and kind, to trace an error to the scan).

State: {'step', 'params', 'batch_stats', 'rngs', 'opt_state'}; steps are pure jitted
functions of (graphdef, state, batch, key) with the state donated.
"""
import dataclasses
import functools
import math
import os
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from cisl_jax import augment
from cisl_jax import checkpointing
from cisl_jax import input_pipeline
from cisl_jax import losses
from cisl_jax import metrics as metrics_lib
from cisl_jax import run_config
from cisl_jax import sharding
from cisl_jax import signs
from cisl_jax import terminal
from cisl_jax import workdir as workdir_lib
from cisl_jax.models import classifier as classifier_lib
from cisl_jax.train import common
from cisl_jax.train import loop

@dataclasses.dataclass(frozen=True)
class Mode:
  """What a classifier mode changes; every other step is the same for all modes."""
  generated: bool = False  # trains on generated sign patches + real backgrounds
  augment: bool = False  # traditional augmentation on device, pretrain-sized epochs
  init_from: bool = False  # starts from config.init_from's params and BN statistics
  learning_rate: str = 'learning_rate'  # the config field of its Adam learning rate
  epochs: str = 'num_epochs'  # the config field of its epoch count (unless num_steps)
  transfer: bool = False  # an ImageNet network (cisl_jax/train/transfer.py)


MODES = {
    'scratch': Mode(),
    'pretrain': Mode(generated=True, epochs='pretrain_epochs'),
    'finetune': Mode(init_from=True, learning_rate='finetune_learning_rate'),
    'augment': Mode(augment=True, epochs='pretrain_epochs'),
    'transfer': Mode(transfer=True),
}


def num_classes_of(config: ml_collections.ConfigDict) -> int:
  return signs.NUM_CLASSES if common.task_name(config) == 'ten_class' else 2


def class_names(config: ml_collections.ConfigDict) -> list[str]:
  if common.task_name(config) == 'ten_class':
    return list(signs.CLASS_NAMES)
  name = signs.SIGNS[common.sign_code(config)]
  return [f'non-{name}', name]


def mode_of(config: ml_collections.ConfigDict) -> Mode:
  if config.mode not in MODES:
    raise ValueError(f'config.mode={config.mode!r}: use one of {", ".join(MODES)}.')
  return MODES[config.mode]


def create_model(config: ml_collections.ConfigDict, key: jax.Array):
  """(model, tx, preprocess_fn) for the stage; preprocess_fn maps batches to inputs."""
  n = num_classes_of(config)
  rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
  mode = mode_of(config)
  if mode.transfer:
    from cisl_jax.train import transfer  # pylint: disable=g-import-not-at-top
    return transfer.make_model_and_optimizer(config, n, rngs)
  model = classifier_lib.Classifier(n, width=config.width, dropout=config.dropout,
                                    fast_conv=config.get('fast_conv', True), rngs=rngs)
  return model, common.adam(float(config[mode.learning_rate])), None


def init_state(config: ml_collections.ConfigDict, key: jax.Array):
  """(graphdef, state, tx, preprocess_fn) of a fresh run."""
  model, tx, preprocess_fn = create_model(config, key)
  graphdef, state = common.split_model(model)
  state['opt_state'] = tx.init(state['params'])
  state['step'] = jnp.zeros((), jnp.int32)
  return graphdef, state, tx, preprocess_fn


def make_train_step(tx: optax.GradientTransformation, preprocess_fn: Callable | None = None,
                    augment_cfg: Any = None, grad_norm: Callable = common.global_norm):
  """`train_step(graphdef, state, batch, key) -> (state, metrics)`, jitted, state donated.

  `key` is the run's train key; the step folds in its own step count for dropout and
  augmentation, so a resumed run draws exactly what an uninterrupted one would.
  `grad_norm(grads)` gives the logged grad_norm (transfer: the trained layers' only, so
  that XLA drops the frozen layers' gradients). Steps are cached per (tx, preprocess,
  augmentation, grad_norm): stages in one process share them.
  """
  ranges = None if augment_cfg is None else augment.ranges_from(augment_cfg)
  return _make_train_step(tx, preprocess_fn, ranges, grad_norm)


def grad_norm_of(config: ml_collections.ConfigDict) -> Callable:
  """The stage's logged gradient norm: over all gradients, or the trained layers'."""
  if mode_of(config).transfer:
    from cisl_jax.train import transfer  # pylint: disable=g-import-not-at-top
    return transfer.grad_norm_fn(config.transfer.arch)
  return common.global_norm


@functools.lru_cache(maxsize=32)
def _make_train_step(tx, preprocess_fn, ranges, grad_norm):
  @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
  def train_step(graphdef, state, batch, key):
    common.TRACES['classifier_train'] += 1
    key = jax.random.fold_in(key, state['step'])
    k_drop, k_aug = jax.random.split(key)
    x, y = batch['image'], batch['label']
    if ranges is not None:
      x = augment.augment_batch(k_aug, x, ranges._asdict())
    if preprocess_fn is not None:
      x = preprocess_fn(x)

    def loss_fn(params):
      model = common.merge_model(graphdef, {**state, 'params': params}, key=k_drop)
      model.train()
      logits = model(x)
      return losses.softmax_cross_entropy(logits, y), (logits, common.new_batch_stats(model))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    new_state = {**state, 'step': state['step'] + 1,
                 'params': optax.apply_updates(state['params'], updates),
                 'batch_stats': batch_stats, 'opt_state': opt_state}
    metrics = {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, -1) == y),
               'grad_norm': grad_norm(grads)}
    return new_state, metrics

  return train_step


@functools.lru_cache(maxsize=32)
def make_eval_step(preprocess_fn: Callable | None = None):
  """`eval_step(graphdef, state, batch) -> probs` (inference BatchNorm, no dropout)."""

  @functools.partial(jax.jit, static_argnums=0)
  def eval_step(graphdef, state, batch):
    common.TRACES['classifier_eval'] += 1
    model = common.merge_model(graphdef, state)
    model.eval()
    x = batch['image'] if preprocess_fn is None else preprocess_fn(batch['image'])
    return jax.nn.softmax(model(x).astype(jnp.float32), axis=-1)

  return eval_step


def predict(graphdef, state, eval_step, images: np.ndarray, labels: np.ndarray,
            batch_size: int, mesh) -> np.ndarray:
  """Class probabilities (N, C) of every image, in order."""
  out = []
  for batch in input_pipeline.eval_batches(images, labels, batch_size):
    probs = sharding.to_host(eval_step(graphdef, state, sharding.shard_batch(batch, mesh)))
    out.append(probs[batch['mask'] > 0])
  return np.concatenate(out)


def training_data(config: ml_collections.ConfigDict,
                  data_seed: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(images, labels, samples per epoch) of the stage's training set."""
  folds = common.training_folds(config)
  real = input_pipeline.load_training(config.data_dir, config.source, folds,
                                      config.get('train_share', 1.0), config.seed)
  task = common.task_name(config)
  sign = common.sign_code(config) if task == 'binary' else None
  n_classes = num_classes_of(config)
  mode = mode_of(config)
  if mode.generated:
    if not config.generated_dir:
      raise ValueError('mode pretrain needs --config.generated_dir (the --workdir of a '
                       'generate.py run).')
    generated = input_pipeline.load_generated(generated_set_dir(config.generated_dir))
    images, labels = input_pipeline.pretrain_task(generated, real, task, sign,
                                                  config.pretrain_per_class, data_seed)
    return images, labels, len(labels)
  if task == 'binary':
    try:
      images, labels = input_pipeline.binary_task(real, sign, data_seed)
    except signs.AbsentClass as e:
      raise signs.AbsentClass(f'training folds {folds}: {e}') from None
  else:
    images, labels = input_pipeline.ten_class_task(real)
  if mode.augment:
    # As many (augmented) samples per epoch as the pretrain set holds.
    return images, labels, config.pretrain_per_class * n_classes
  return images, labels, len(labels)


def test_data(config: ml_collections.ConfigDict, data_seed: int):
  """(images, labels, trace) of the held-out fold for the task (binary: balanced).

  `trace` holds, per patch, what leads back to the scan (input_pipeline.TRACE_FEATURES
  present in the dataset): patient, slice path and SOP Instance UID, box, patch kind.
  """
  held_out = input_pipeline.load_split(config.data_dir, config.source, config.fold)
  if common.task_name(config) == 'binary':
    try:
      idx, labels = input_pipeline.binary_indices(held_out, common.sign_code(config),
                                                  data_seed + 1)
    except signs.AbsentClass as e:
      raise signs.AbsentClass(f'held-out fold {config.fold}: {e}') from None
  else:
    idx = np.arange(len(held_out['label']))
    labels = np.asarray(held_out['label'], np.int32)
  trace = {k: np.asarray(held_out[k])[idx] for k in input_pipeline.TRACE_FEATURES
           if k in held_out}
  return np.asarray(held_out['image'], np.float32)[idx], labels, trace


def generated_set_dir(path: str) -> str:
  """A generate.py workdir or the generated-set folder itself."""
  inner = os.path.join(path, workdir_lib.GENERATED_DIR)
  return inner if os.path.isdir(inner) else path


def schedule(config: ml_collections.ConfigDict, epoch_size: int) -> tuple[int, int]:
  """(batch size, number of steps) of the stage."""
  mode = mode_of(config)
  if mode.transfer:
    batch_size = config.transfer.batch_size
    epochs = config.transfer.epochs
  else:
    batch_size = config.batch_size
    epochs = config[mode.epochs]
  if config.num_steps is not None:
    return batch_size, config.num_steps
  return batch_size, max(1, math.ceil(epochs * epoch_size / batch_size))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains one classifier stage, then evaluates it on the held-out fold.

  Resumes from the latest checkpoint in `workdir`; a workdir holding metrics.json is
  finished and is returned as is.
  """
  mode = mode_of(config)
  if (done := workdir_lib.finished(workdir, config)) is not None:
    return done
  mesh = common.start_stage(config, workdir)
  init_key, data_seed, train_key = common.split_keys(config.seed)
  if common.task_name(config) == 'binary':
    test_data(config, data_seed)  # a held-out fold that cannot test the sign fails first
  images, labels, epoch_size = training_data(config, data_seed)
  batch_size, num_steps = schedule(config, epoch_size)
  sharding.check_batch_size(batch_size, mesh)
  logging.info('classifier %s/%s: %d training patches, batch %d, %d steps', config.mode,
               config.task, len(labels), batch_size, num_steps)

  graphdef, state, tx, preprocess_fn = init_state(config, init_key)
  if mode.init_from:
    if not config.init_from:
      raise ValueError('mode finetune needs --config.init_from (the --workdir of the '
                       'pretrain run).')
    fresh = [f for f in str(config.init_from_fresh or '').split(',') if f]
    state['params'], state['batch_stats'], _ = checkpointing.init_from(
        config.init_from, state['params'], state['batch_stats'], fresh)
    state['opt_state'] = tx.init(state['params'])
  augment_cfg = config.augment if mode.augment else None
  run = loop.fit(config, workdir, name=f'classifier/{config.mode}', graphdef=graphdef,
                 state=state, train_step=make_train_step(tx, preprocess_fn, augment_cfg,
                                                         grad_norm_of(config)),
                 images=images, labels=labels, batch_size=batch_size, num_steps=num_steps,
                 data_seed=data_seed, train_key=train_key, mesh=mesh,
                 scalar_prefix='train/',
                 after_step=_log_patches_once(images, labels, class_names(config)))
  logging.info('classifier %s: wrote checkpoints to %s', config.mode, run.checkpoint_dir)

  result = _evaluate_and_write(config, workdir, graphdef, run.state, preprocess_fn, mesh,
                               data_seed, extra={'train': run.logged, 'steps': num_steps})
  run.summaries.scalars(num_steps, {'test/accuracy': result['accuracy']})
  run.summaries.close()
  return result


def _log_patches_once(images, labels, names, per_class: int = 8):
  """An after_step that logs `train_patches/<class>` (a row of the stage's first training
  patches per class) at step 1: what the stage trained on, labelled, in TensorBoard."""
  def log(done, state, summaries):
    del state
    if done == 1:
      summaries.labelled_images(1, 'train_patches',
                                common.labelled_rows(images, labels, names, per_class))
  return log


def _held_out(config) -> dict[str, Any]:
  """The evaluation label of a stage's own test: its held-out fold."""
  where = f'fold {config.fold} of source {config.source!r} in {config.data_dir}'
  if common.task_name(config) == 'binary':
    where += f', sign {signs.SIGNS[common.sign_code(config)]}'
  return {'data_dir': config.data_dir, 'source': config.source, 'fold': config.fold,
          'task': config.task, 'sign': config.sign, 'split': 'held-out',
          'description': f'held-out {where}'}


def _evaluate_and_write(config, workdir, graphdef, state, preprocess_fn, mesh, data_seed,
                        extra=None, target=None) -> dict[str, Any]:
  """Scores the data of `config` (data_dir, source, fold, task, sign); `target` labels
  them (run_config.evaluation_target; default: the stage's own held-out fold)."""
  target = target or _held_out(config)
  images, labels, trace = test_data(config, data_seed)
  eval_step = make_eval_step(preprocess_fn)
  probs = predict(graphdef, state, eval_step, images, labels, config.batch_size, mesh)
  preds = probs.argmax(-1)
  n = num_classes_of(config)
  result = metrics_lib.classification_metrics(labels, preds, n)
  result.update({'stage': 'classifier', 'mode': config.mode, 'task': common.task_name(config),
                 'class_names': class_names(config), 'fold': config.fold,
                 'num_test': int(len(labels)), 'evaluated_on': target, **(extra or {})})
  if common.task_name(config) == 'binary':
    result['sign'] = signs.SIGNS[common.sign_code(config)]
  if mode_of(config).transfer:
    from cisl_jax.train import transfer  # pylint: disable=g-import-not-at-top
    result['transfer'] = transfer.describe(config)
  pred_path = workdir_lib.save_npz(os.path.join(workdir, workdir_lib.PREDICTIONS_FILE),
                                   labels=labels, preds=preds, probs=probs, **trace)
  path = workdir_lib.write_json(os.path.join(workdir, workdir_lib.METRICS_FILE), result)
  terminal.say(f'classifier {config.mode}: accuracy {result["accuracy"]:.3f} on {len(labels)} '
        f'patches: {target["description"]}; wrote {path} and {pred_path}')
  return result


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Restores a classifier checkpoint and writes metrics.json + predictions.npz.

  The checkpoint is the latest in config.classifier_workdir (default: `workdir`); the
  model (task, width, mode) is rebuilt from that run's config.json. The data are that
  run's held-out fold unless config.data_dir / source / fold / sign say otherwise
  (run_config.evaluation_target: other data are labelled, training data refused unless
  config.allow_training_data).
  """
  source = config.classifier_workdir or workdir
  in_place = os.path.abspath(source) == os.path.abspath(workdir)
  if in_place and any(config.get(k) is not None for k in run_config.DATA_FIELDS):
    raise ValueError(f'{workdir}: scoring other data than the run\'s held-out fold needs '
                     f'--config.classifier_workdir={workdir} and a new --workdir for the '
                     'scores (the run\'s own metrics.json is its held-out result).')
  # In place, the run's own metrics.json is its held-out result; elsewhere, a finished
  # evaluation of another config is refused by name.
  if (done := workdir_lib.finished(workdir, None if in_place else config)) is not None:
    return done
  train_config = run_config.classifier_config(source)
  target = run_config.evaluation_target(config, train_config)
  # The data to evaluate on come from the target; the model from the training run's.
  with train_config.unlocked():
    for field in run_config.DATA_FIELDS:
      train_config[field] = target[field]
    train_config.batch_size = config.batch_size
  sharding.initialize_distributed(config.coordinator_address, config.num_processes,
                                  config.process_id)
  mesh = sharding.make_mesh()
  init_key, data_seed, _ = common.split_keys(train_config.seed)
  graphdef, state, _, preprocess_fn = init_state(train_config, init_key)
  state['params'], state['batch_stats'], step = checkpointing.init_from(
      source, state['params'], state['batch_stats'])
  state = sharding.replicate(state, mesh)
  if not in_place:
    workdir_lib.record_config(workdir, config)
  return _evaluate_and_write(train_config, workdir, graphdef, state, preprocess_fn, mesh,
                             data_seed, extra={'checkpoint': f'{source} step {step}'},
                             target=target)
