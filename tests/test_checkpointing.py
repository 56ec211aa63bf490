"""Checkpoints: save policy, latest-N preservation, resume, init_from with shape checks."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from cisl_jax import checkpointing
from cisl_jax.train import common


class Net(nnx.Module):

  def __init__(self, out, rngs):
    self.body = nnx.Linear(3, 4, rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.head = nnx.Linear(4, out, rngs=rngs)

  def __call__(self, x):
    return self.head(self.bn(self.body(x)))


def make_state(out=2, seed=0):
  _, state = common.split_model(Net(out, nnx.Rngs(seed)))
  state['opt_state'] = optax.adam(1e-3).init(state['params'])
  state['step'] = jnp.zeros((), jnp.int32)
  return state


def bump(state, step):
  state = dict(state)
  state['params'] = jax.tree.map(lambda x: x + step, state['params'])
  state['step'] = jnp.asarray(step, jnp.int32)
  return state


def test_save_every_keep_latest_and_resume(tmp_path):
  ckpt = checkpointing.Checkpoints(str(tmp_path), save_every=2, keep=2)
  assert ckpt.last_good() == 'none saved yet'
  state = make_state()
  saved = [s for s in range(1, 8) if ckpt.maybe_save(s, bump(state, s))]
  assert saved == [2, 4, 6]
  assert ckpt.maybe_save(7, bump(state, 7), force=True)
  assert sorted(int(d) for d in os.listdir(ckpt.directory) if d.isdigit()) == [6, 7]
  assert ckpt.last_good().endswith('checkpoints/7')
  ckpt.close()

  again = checkpointing.Checkpoints(str(tmp_path), save_every=2)
  restored, step = again.restore_latest(make_state(seed=1))
  assert step == 7 and int(restored['step']) == 7
  expected = bump(state, 7)
  for a, b in zip(jax.tree.leaves(restored['params']), jax.tree.leaves(expected['params'])):
    np.testing.assert_array_equal(a, b)
  assert 'rngs' in restored  # never saved, kept from the fresh state


def test_fresh_workdir_has_nothing_to_resume(tmp_path):
  state = make_state()
  restored, step = checkpointing.Checkpoints(str(tmp_path), save_every=1).restore_latest(state)
  assert step is None and restored is state


def test_init_from_loads_params_and_checks_shapes(tmp_path):
  ckpt = checkpointing.Checkpoints(str(tmp_path / 'pre'), save_every=1)
  source = bump(make_state(out=10), 5)
  ckpt.maybe_save(5, source, force=True)
  ckpt.close()

  target = make_state(out=10, seed=3)
  params, stats, step = checkpointing.init_from(str(tmp_path / 'pre'), target['params'],
                                                target['batch_stats'])
  assert step == 5
  np.testing.assert_array_equal(params['body']['kernel'][...],
                                source['params']['body']['kernel'][...])

  small = make_state(out=2, seed=3)
  with pytest.raises(ValueError, match=r'(?s)params/head/kernel: shape \(4, 10\).*init_from_fresh'):
    checkpointing.init_from(str(tmp_path / 'pre'), small['params'], small['batch_stats'])
  params, _, _ = checkpointing.init_from(str(tmp_path / 'pre'), small['params'],
                                         small['batch_stats'], fresh=['head'])
  np.testing.assert_array_equal(params['head']['kernel'][...],
                                small['params']['head']['kernel'][...])
  np.testing.assert_array_equal(params['body']['bias'][...],
                                source['params']['body']['bias'][...])


def test_init_from_missing_run_says_what_to_do(tmp_path):
  state = make_state()
  with pytest.raises(FileNotFoundError, match='pretrain run'):
    checkpointing.init_from(str(tmp_path / 'nope'), state['params'], state['batch_stats'])
