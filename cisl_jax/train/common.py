"""Loop helpers shared by the training stages.

- Keys: one `config.seed` splits once into init, data and train keys; step `s` uses
  `fold_in(train_key, s)`, and batch `s` is a pure function of (data seed, s), so a
  run resumed at any step continues exactly as an uninterrupted one.
- `Progress`: steps/s and time left in the log; `Summaries`: TensorBoard scalars and
  image grids through tf.summary (TensorFlow kept off the GPUs).
- `check_finite`: the NaN guard.
- `start_stage`: multi-host join, config.json, the device mesh.
The stage folder's file names, the finished check and atomic writes are in
cisl_jax/workdir.py.
"""
import collections
import functools
import time
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax.nnx import graphlib

from cisl_jax import sharding
from cisl_jax import terminal
from cisl_jax import workdir as workdir_lib


# How many times each jitted step function has been traced (tests assert 1).
TRACES: collections.Counter = collections.Counter()


class NonFiniteError(FloatingPointError):
  """A loss or gradient norm became NaN or infinite."""


def split_keys(seed: int) -> tuple[jax.Array, int, jax.Array]:
  """(init key, data seed, train key) from one seed."""
  init_key, data_key, train_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  data_seed = int(jax.random.randint(data_key, (), 0, 2**31 - 1))
  return init_key, data_seed, train_key


class HashedGraphDef(graphlib.GraphDef):
  """An nnx.GraphDef whose hash is computed once, for the jitted steps' static argument.

  jax hashes a static argument on every call, and flax 0.12.8's GraphDef.__hash__ walks
  every node each time: at the quick GAN's sizes that was a third of the Python time of
  each dispatched iteration. Equality and merging are GraphDef's own.
  """
  # No __slots__ here (GraphDef's are fixed): the cached hash lives in the instance dict.

  def __hash__(self) -> int:
    return self.__dict__['hash']


def hashed(graphdef: nnx.GraphDef) -> HashedGraphDef:
  out = HashedGraphDef(graphdef.nodes, graphdef.attributes, graphdef.num_leaves)
  out.__dict__['hash'] = hash(graphdef)  # frozen dataclass: no attribute assignment
  return out


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict[str, Any]]:
  """(graphdef, {'params', 'batch_stats', 'rngs'}) of an NNX model."""
  graphdef, params, batch_stats, rngs = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  return hashed(graphdef), {'params': params, 'batch_stats': batch_stats, 'rngs': rngs}


def fresh(tree: Any) -> Any:
  """A copy of an NNX state tree with fresh Variables at the current trace level.

  States captured from an outer trace (jit around grad) could not be updated in place
  by the merged model otherwise.
  """
  return jax.tree.map(lambda a: a, tree)


def merge_model(graphdef: nnx.GraphDef, state: Mapping[str, Any],
                key: jax.Array | None = None) -> nnx.Module:
  """The NNX model of `state`; `key` reseeds its dropout stream (train mode)."""
  params, batch_stats, rngs = fresh((state['params'], state['batch_stats'], state['rngs']))
  model = nnx.merge(graphdef, params, batch_stats, rngs)
  if key is not None and jax.tree.leaves(state['rngs']):
    nnx.reseed(model, dropout=key)
  return model


@functools.lru_cache(maxsize=None)
def adam(lr: float, b1: float = 0.9) -> optax.GradientTransformation:
  """optax.adam, one object per setting: the jitted steps are cached per optimizer, so
  every stage of one process that trains with the same setting reuses them (no
  recompilation across stages)."""
  return optax.adam(lr, b1=b1)


def new_batch_stats(model: nnx.Module) -> Any:
  return nnx.state(model, nnx.BatchStat)


def global_norm(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


class Progress:
  """Logs step, steps/s and time left every `every` steps."""

  def __init__(self, name: str, total: int, start: int, every: int):
    self.name, self.total, self.every = name, total, max(1, every)
    self._t, self._s = time.perf_counter(), start

  def update(self, step: int, metrics: Mapping[str, float] | None = None) -> float | None:
    """Call after step `step` (1-based count of finished steps); returns steps/s if logged."""
    if step % self.every and step != self.total:
      return None
    now = time.perf_counter()
    rate = (step - self._s) / max(now - self._t, 1e-9)
    self._t, self._s = now, step
    left = (self.total - step) / rate if rate > 0 else float('inf')
    shown = ' '.join(f'{k}={v:.4g}' for k, v in (metrics or {}).items())
    terminal.status(f'{self.name} step {step}/{self.total}  {rate:.2f} steps/s  '
                    f'{_duration(left)} left  {shown}')
    return rate


def _duration(seconds: float) -> str:
  if not np.isfinite(seconds):
    return '?'
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m}:{s:02d}'


class Summaries:
  """TensorBoard event writer for `<workdir>` (process 0 only)."""

  def __init__(self, workdir: str):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')
    self._tf = tf
    self._writer = (tf.summary.create_file_writer(workdir) if jax.process_index() == 0
                    else None)

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    if self._writer is None:
      return
    with self._writer.as_default():
      for k, v in values.items():
        self._tf.summary.scalar(k, float(v), step=step)

  def images(self, step: int, name: str, images: np.ndarray, max_outputs: int = 1) -> None:
    """images: (N, H, W, C) in [0, 1]."""
    if self._writer is None:
      return
    with self._writer.as_default():
      self._tf.summary.image(name, np.asarray(images, np.float32), step=step,
                             max_outputs=max_outputs)

  def labelled_images(self, step: int, prefix: str, rows: Mapping[str, np.ndarray]) -> None:
    """One image summary per class, `<prefix>/<name>` (see `labelled_rows`)."""
    for name, row in rows.items():
      self.images(step, f'{prefix}/{name}', row)

  def close(self) -> None:
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()


def image_grid(images: np.ndarray, rows: int) -> np.ndarray:
  """Tiles (N, H, W, 1) images in [-1, 1] into one (rows*H, cols*W) array in [0, 1]."""
  images = np.asarray(images, np.float32)[..., 0]
  n, h, w = images.shape
  cols = -(-n // rows)
  grid = np.ones((rows * h, cols * w), np.float32)
  for i, im in enumerate(images):
    r, c = divmod(i, cols)
    grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = (np.clip(im, -1, 1) + 1) / 2
  return grid


def labelled_rows(images: np.ndarray, labels: np.ndarray, names: Sequence[str],
                  per_row: int = 8) -> dict[str, np.ndarray]:
  """{class name: one (1, H, per_row*W, 1) row in [0, 1] of its first `per_row` patches}
  for every class present: logged under `<prefix>/<name>`, TensorBoard labels each row."""
  labels = np.asarray(labels)
  rows = {}
  for code, name in enumerate(names):
    idx = np.flatnonzero(labels == code)[:per_row]
    if len(idx):
      rows[name] = image_grid(np.asarray(images)[idx], 1)[None, ..., None]
  return rows


def check_finite(step: int, metrics: Mapping[str, Any], last_good: str,
                 checked_after: int | None = None) -> None:
  """Raises NonFiniteError naming the step, the bad values and the last good checkpoint.

  `checked_after`: the previous step that was checked, when steps in between were not
  (the fit loop checks at log and checkpoint steps); the message then gives the range.
  """
  bad = {k: float(v) for k, v in metrics.items() if not np.isfinite(np.asarray(v)).all()}
  if bad:
    where = (f'step {step}' if checked_after is None or checked_after >= step - 1
             else f'step {step} (first seen; it arose in steps {checked_after + 1}-{step})')
    raise NonFiniteError(
        f'{where}: non-finite {", ".join(f"{k}={v}" for k, v in sorted(bad.items()))}. '
        f'Training stopped; last good checkpoint: {last_good}. Lower the learning rate or '
        'check the inputs; restarting in the same workdir resumes from that checkpoint.')


to_dict = workdir_lib.plain  # a ConfigDict as a plain JSON-able dict


def training_folds(config: Any) -> list[int]:
  """The folds a stage trains on: every fold but the held-out `config.fold`."""
  if not 0 <= config.fold < config.num_folds:
    raise ValueError(f'config.fold={config.fold} is not in 0..{config.num_folds - 1} '
                     f'(config.num_folds={config.num_folds}).')
  return [f for f in range(config.num_folds) if f != config.fold]


def sign_code(config: Any) -> int:
  from cisl_jax import signs  # pylint: disable=g-import-not-at-top
  try:
    return signs.code(config.sign)
  except ValueError as e:
    raise ValueError(f'config.sign: {e}') from e


def task_name(config: Any) -> str:
  """'ten_class' or 'binary' (config.task accepts 'ten' / 'ten_class' / 'binary')."""
  task = str(config.task)
  if task in ('ten', 'ten_class'):
    return 'ten_class'
  if task == 'binary':
    return 'binary'
  raise ValueError(f"config.task={task!r}: use 'ten' (10-class) or 'binary' (one sign, "
                   'set --config.sign).')


def validate(config: Any) -> None:
  """Raises ValueError for a bad shared field (task, sign, fold), before any file is
  written: a bad flag must leave no workdir behind."""
  task_name(config)
  if 'sign' in config:
    sign_code(config)
  if 'fold' in config and 'num_folds' in config:
    training_folds(config)


def start_stage(config: Any, workdir: str):
  """Joins a multi-host run if configured, records config.json in `workdir` (refusing a
  workdir recorded with another config), and returns the mesh of all devices."""
  validate(config)
  sharding.initialize_distributed(config.coordinator_address, config.num_processes,
                                  config.process_id)
  workdir_lib.record_config(workdir, config)
  return sharding.make_mesh()
