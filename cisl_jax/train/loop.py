"""The one fit loop both trainers run: restore, resume the batch stream, shard, NaN guard,
checkpoint, progress and TensorBoard.

A trainer builds its state and its jitted `train_step(graphdef, state, batch, key)`, then
calls `fit`; everything between the first and the last step happens here, so the GAN
and the classifiers resume, log and fail the same way:
  * the latest checkpoint in the workdir is restored, and the tf.data stream starts at
    its step, so a resumed run sees exactly the batches an uninterrupted one would;
  * the metrics are fetched and checked (NaN guard) at every log step, before every
    checkpoint and at the end; in between steps are only dispatched, so the host never
    waits on a step it does not need to read (a NaN spreads into the state, so a later
    check still sees it, and nothing non-finite is ever saved);
  * checkpoints every `config.checkpoint_every` steps and at the end;
  * every `config.log_every` steps: a progress line (steps/s, time left) and scalars.
"""
import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from cisl_jax import checkpointing
from cisl_jax import input_pipeline
from cisl_jax import sharding
from cisl_jax.train import common


@dataclasses.dataclass
class Fit:
  """What `fit` hands back: the final state, the last logged metrics (floats), the open
  TensorBoard writer (the trainer logs its evaluation, then closes it) and the
  checkpoint folder."""
  state: dict[str, Any]
  logged: dict[str, float]
  summaries: common.Summaries
  checkpoint_dir: str


def fit(config: Any, workdir: str, *, name: str, graphdef: Any, state: dict[str, Any],
        train_step: Callable, images: np.ndarray, labels: np.ndarray, batch_size: int,
        num_steps: int, data_seed: int, train_key: jax.Array, mesh: Any,
        shown: Sequence[str] | None = None, scalar_prefix: str = '',
        after_step: Callable[[int, dict[str, Any], common.Summaries], None] | None = None
        ) -> Fit:
  """Trains `state` to `num_steps` steps, resuming from the workdir's latest checkpoint.

  Args:
    config: the stage config (checkpoint_every, keep_checkpoints, log_every).
    workdir: the stage folder (checkpoints/ and TensorBoard events go there).
    name: the progress line's name, e.g. 'gan' or 'classifier/pretrain'.
    graphdef, state, train_step: the model's graph, a fresh state and the jitted step.
    images, labels, batch_size, data_seed: the training set and its batch stream.
    num_steps: steps of the whole run (a resumed run does the remaining ones).
    train_key: the run's train key; each step folds in its own step count.
    mesh: the device mesh; the state is replicated, batches sharded over 'data'.
    shown: metric names on the progress line (None: all).
    scalar_prefix: prefix of the TensorBoard scalar names, e.g. 'train/'.
    after_step: `after_step(done, state, summaries)`, called after every step (e.g. the
      GAN's sample grids).
  """
  state = sharding.replicate(state, mesh)
  ckpt = checkpointing.Checkpoints(workdir, save_every=config.checkpoint_every,
                                   keep=config.keep_checkpoints)
  state, start = ckpt.restore_latest(state)
  start = start or 0
  # tf.data feeds the patches; starting at `start` resumes the exact batch stream.
  batches = input_pipeline.train_batches(images, labels, batch_size, data_seed,
                                         start_step=start)
  summaries = common.Summaries(workdir)
  progress = common.Progress(name, num_steps, start, config.log_every)
  logged: dict[str, float] = {}
  checked = start - 1  # the last step whose metrics were checked
  for step in range(start, num_steps):
    batch = sharding.shard_batch(next(batches), mesh)
    state, metrics = train_step(graphdef, state, batch, train_key)
    done = step + 1
    log = done % config.log_every == 0 or done == num_steps
    if log or ckpt.due(done):  # nothing non-finite may be saved
      metrics = sharding.to_host(metrics)  # (device_get refuses multi-host arrays)
      common.check_finite(step, metrics, ckpt.last_good(), checked_after=checked)
      checked = step
    ckpt.maybe_save(done, state)
    if log:
      rate = progress.update(done, metrics if shown is None
                             else {k: metrics[k] for k in shown})
      logged = {k: float(v) for k, v in metrics.items()}
      summaries.scalars(done, {**{f'{scalar_prefix}{k}': v for k, v in logged.items()},
                               'steps_per_sec': rate or 0.0})
    if after_step is not None:
      after_step(done, state, summaries)
  ckpt.maybe_save(num_steps, state, force=True)
  ckpt.close()
  return Fit(state, logged, summaries, ckpt.directory)
