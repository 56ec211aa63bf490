"""A trained classifier restored from its workdir, as a function of 64x64 patches.

The model is rebuilt from the run's own config.json (task, sign, width, mode) and its
latest checkpoint, and run through the same jitted evaluation step and batching that
`evaluate.py` uses (`cisl_jax.train.classifier.predict`), so that a patch gets the same
probabilities here as there.
"""
import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from cisl_jax import run_config
from cisl_jax import signs


class ModelError(ValueError):
  """A workdir that does not hold a usable classifier; the message names it and the fix."""


def _checkpoint_shapes(directory: str, step: int) -> dict[str, tuple[int, ...]]:
  """Parameter name -> shape in a saved checkpoint."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      create=False)) as manager:
    raw = manager.restore(step, args=ocp.args.StandardRestore())
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(raw.get('params', {}))[0]:
    name = '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)
    out[name.removesuffix('/value')] = tuple(np.shape(leaf))
  return out


def _mismatch(config, directory: str, step: int, error: Exception) -> ModelError:
  """Which of task / width the checkpoint disagrees on with config.json, as an error."""
  from cisl_jax.models import classifier as model_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
  found = []
  try:
    shapes = _checkpoint_shapes(directory, step)
  except Exception:  # pylint: disable=broad-except
    shapes = {}
  out_heads = [v[-1] for k, v in shapes.items() if k.startswith('fc6') and len(v) == 2]
  firsts = [v[-1] for k, v in shapes.items() if k.startswith('conv1') and len(v) == 4]
  if out_heads and out_heads[0] != classifier.num_classes_of(config):
    found.append(f'{out_heads[0]} classes in the checkpoint but task={config.task!r} '
                 f'({classifier.num_classes_of(config)} classes) in config.json')
  if firsts and firsts[0] != model_lib.scaled(32, config.width):
    found.append(f'{firsts[0]} first-layer channels in the checkpoint but width='
                 f'{config.width} ({model_lib.scaled(32, config.width)}) in config.json')
  what = '; '.join(found) or str(error).splitlines()[0]
  return ModelError(f'{directory}/{step}: the checkpoint is of another model than its '
                    f'config.json says ({what}). The checkpoint and config.json must come from '
                    'the same train_classifier.py run: point --classifier_workdir at that run.')


@dataclasses.dataclass
class Classifier:
  """A restored classifier: `probs(images)` gives class probabilities (N, C)."""
  workdir: str
  config: ml_collections.ConfigDict  # the training run's config
  step: int
  class_names: list[str]
  mapped_signs: list[str]  # the signs this model maps: all nine, or the binary one
  batch_size: int
  _graphdef: Any
  _state: Any
  _eval_step: Any
  _mesh: Any

  @property
  def task(self) -> str:
    from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
    return common.task_name(self.config)

  def probs(self, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) of patches (N, 64, 64) or (N, 64, 64, 1) in [-1, 1]."""
    from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
      images = images[..., None]
    if not len(images):
      return np.zeros((0, len(self.class_names)), np.float32)
    return classifier.predict(self._graphdef, self._state, self._eval_step, images,
                              np.zeros(len(images), np.int32), self.batch_size, self._mesh)

  def sign_probs(self, probs: np.ndarray) -> np.ndarray:
    """(N, len(mapped_signs)): each mapped sign's probability from class probabilities."""
    if self.task == 'binary':
      return probs[:, 1:2]
    return probs[:, :signs.NUM_SIGNS]


def restore(workdir: str, batch_size: int = 256) -> Classifier:
  """The classifier of a train_classifier.py workdir, at its latest checkpoint."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from cisl_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from cisl_jax import sharding  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  config = run_config.classifier_config(workdir, flag='--classifier_workdir')
  try:
    task = common.task_name(config)
    sign = signs.SIGNS[common.sign_code(config)] if task == 'binary' else None
  except ValueError as e:
    raise ModelError(f'{workdir}/config.json: {e}') from None
  directory = checkpointing.checkpoint_dir(workdir)
  step = None
  if os.path.isdir(directory):
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        create=False)) as manager:
      step = manager.latest_step()
  if step is None:
    raise ModelError(f'{directory}: no finished checkpoint; train the classifier first '
                     '(launch/train_classifier.py with this --workdir) or point '
                     '--classifier_workdir at a finished run.')
  mesh = sharding.make_mesh()
  init_key, _, _ = common.split_keys(config.seed)
  graphdef, state, _, preprocess_fn = classifier.init_state(config, init_key)
  try:
    state['params'], state['batch_stats'], step = checkpointing.init_from(
        workdir, state['params'], state['batch_stats'])
  except ValueError as e:
    raise _mismatch(config, directory, step, e) from None
  state = sharding.replicate(state, mesh)
  mapped = [sign] if sign else list(signs.SIGNS)
  return Classifier(workdir, config, step, classifier.class_names(config), mapped,
                    int(batch_size), graphdef, state, classifier.make_eval_step(preprocess_fn),
                    mesh)
