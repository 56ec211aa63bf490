"""Orbax checkpoints of a stage: save every N steps and at the end, resume, init_from.

A stage's train state is a dict {'step', 'params', 'batch_stats', 'opt_state', ...}
(see cisl_jax/train/common.py). Everything in it is saved except 'rngs' (the NNX
RNG streams, which every step reseeds from `fold_in(train_key, step)` anyway), so a
restored state continues exactly as an uninterrupted run.

Layout: `<workdir>/checkpoints/<step>/`. Orbax writes each checkpoint to a temporary
folder and renames it when complete, so a run killed while saving leaves the previous
checkpoint as the latest. Preservation policy: the latest `keep` checkpoints.
"""
import os
from typing import Any, Sequence

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as ocp_policy

from cisl_jax import workdir as wd

NOT_SAVED = ('rngs',)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), wd.CHECKPOINTS_DIR)


def _saved_part(state: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in state.items() if k not in NOT_SAVED}


class Checkpoints:
  """The checkpoints of one stage's workdir."""

  def __init__(self, workdir: str, *, save_every: int, keep: int = 2):
    if save_every < 1:
      raise ValueError(f'config.checkpoint_every must be >= 1, got {save_every}.')
    self.directory = checkpoint_dir(workdir)
    self.save_every = save_every
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=False,  # a step's save is complete when save returns
        preservation_policy=ocp_policy.LatestN(keep),
        create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def due(self, step: int) -> bool:
    """Whether `maybe_save` saves at `step` (every `save_every`-th step)."""
    return step % self.save_every == 0

  def maybe_save(self, step: int, state: dict[str, Any], *, force: bool = False) -> bool:
    """Saves at every `save_every`-th step, or now when `force` (the end of a run)."""
    if not (force or self.due(step)):
      return False
    if self.manager.latest_step() == step:
      return False
    self.manager.save(step, args=ocp.args.StandardSave(_saved_part(state)), force=True)
    self.manager.wait_until_finished()
    return True

  def restore_latest(self, state: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """Returns (state from the latest checkpoint, its step), or (state, None) if none.

    `state` is a freshly initialised state: it gives the structure, shapes, dtypes and
    shardings to restore into, and the parts that are never saved.
    """
    step = self.manager.latest_step()
    if step is None:
      return state, None
    saved = _saved_part(state)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, saved)
    # Compare names and shapes with the checkpoint's metadata first: a failed restore
    # leaves Orbax reads pending, which print tracebacks at exit over the message.
    if problems := _differences(_flat(target), self._saved_shapes(step)):
      shown = '; '.join(problems[:8]) + (f'; and {len(problems) - 8} more'
                                          if len(problems) > 8 else '')
      raise ValueError(
          f'checkpoint {self.directory}/{step} does not match this run\'s model or '
          f'optimizer ({shown}); use a new --workdir, or the config that wrote it.')
    try:
      restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
    except (ValueError, KeyError) as e:
      raise ValueError(
          f'checkpoint {self.directory}/{step} does not match this run\'s model or '
          f'optimizer ({e}); use a new --workdir, or the config that wrote it.') from e
    logging.info('Resumed from %s/%d', self.directory, step)
    return {**state, **restored}, step

  def _saved_shapes(self, step: int) -> dict[str, tuple[int, ...]] | None:
    """Leaf name -> shape of checkpoint `step`, from its metadata (None if unreadable)."""
    try:
      with ocp.CheckpointManager(self.directory, item_handlers=ocp.StandardCheckpointHandler(),
                                 options=ocp.CheckpointManagerOptions(create=False)) as m:
        metadata = m.item_metadata(step)
    except Exception:  # pylint: disable=broad-except
      return None  # the restore below then reports what is wrong
    if metadata is None:
      return None
    return {k: tuple(v.shape) for k, v in _flat(metadata).items() if hasattr(v, 'shape')}

  def last_good(self) -> str:
    """A description of the newest checkpoint on disk, for error messages."""
    step = self.manager.latest_step()
    return 'none saved yet' if step is None else f'{self.directory}/{step}'

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _path_name(path: Sequence[Any]) -> str:
  names = []
  for k in path:
    name = getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))
    names.append(str(name))
  if names and names[-1] == 'value':  # nnx.Variable leaves; raw restores spell it as a key
    names = names[:-1]
  return '/'.join(names)


def _flat(tree: Any) -> dict[str, Any]:
  return {_path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _differences(expected: dict[str, Any], saved: dict[str, tuple] | None) -> list[str]:
  """What differs between the leaves this run expects and those a checkpoint holds."""
  if saved is None:
    return []
  problems = [f'{k}: missing in the checkpoint' for k in expected if k not in saved]
  problems += [f'{k}: not in this model' for k in saved if k not in expected]
  problems += [f'{k}: shape {saved[k]} in the checkpoint, {tuple(v.shape)} in this model'
               for k, v in expected.items()
               if k in saved and tuple(saved[k]) != tuple(v.shape)]
  return problems


def _match(name: str, current: Any, saved: dict[str, Any], fresh: Sequence[str],
           source: str) -> tuple[Any, list[str]]:
  """Copies every leaf of `current` from `saved`; returns (tree, problems)."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(current)
  leaves, problems = [], []
  for path, leaf in flat:
    key = _path_name(path)
    keep_fresh = any(key == f or key.startswith(f + '/') for f in fresh)
    value = saved.get(key)
    if keep_fresh:
      logging.info('init_from: %s/%s left freshly initialised (init_from_fresh)', name, key)
      leaves.append(leaf)
    elif value is None:
      problems.append(f'{name}/{key}: missing in {source}')
      leaves.append(leaf)
    elif tuple(np.shape(value)) != tuple(leaf.shape):
      problems.append(f'{name}/{key}: shape {tuple(np.shape(value))} in {source} but '
                      f'{tuple(leaf.shape)} in this model')
      leaves.append(leaf)
    else:
      sharding = getattr(leaf, 'sharding', None)
      value = np.asarray(value, dtype=leaf.dtype)
      leaves.append(jax.device_put(value, sharding) if sharding is not None else value)
  return jax.tree_util.tree_unflatten(treedef, leaves), problems


def init_from(source: str, params: Any, batch_stats: Any,
              fresh: Sequence[str] = ()) -> tuple[Any, Any, int]:
  """Loads params and BatchNorm statistics from another stage's latest checkpoint.

  `source` is that stage's workdir (or its checkpoints/ folder). The optimizer state
  is not loaded: the caller starts a fresh one (fine-tuning at its own learning rate).
  Every parameter must exist in the source with the same shape, except those under
  a path prefix listed in `fresh` (e.g. 'fc6', a new head), which keep their fresh
  initialisation. Returns (params, batch_stats, source step).
  """
  directory = source if os.path.basename(os.path.normpath(source)) == wd.CHECKPOINTS_DIR \
      else checkpoint_dir(source)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f'config.init_from={source!r}: no checkpoints/ folder at {directory}; point it at '
        'the workdir of the stage to start from (e.g. the pretrain run) after that '
        'stage has finished.')
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      create=False)) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'config.init_from={source!r}: {directory} holds no '
                              'finished checkpoint; run that stage first.')
    raw = manager.restore(step, args=ocp.args.StandardRestore())
  src = f'{directory}/{step}'
  params, p1 = _match('params', params, _flat(raw.get('params', {})), fresh, src)
  batch_stats, p2 = _match('batch_stats', batch_stats, _flat(raw.get('batch_stats', {})),
                           fresh, src)
  problems = p1 + p2
  if problems:
    shown = '\n  '.join(problems[:20])
    raise ValueError(
        f'cannot initialise from {src}: the model differs from the checkpoint:\n  {shown}\n'
        'Use the same task/width as that stage, or list a new head to initialise '
        "afresh, e.g. --config.init_from_fresh='fc6'.")
  logging.info('Initialised params and batch_stats from %s (fresh optimizer)', src)
  return params, batch_stats, step
