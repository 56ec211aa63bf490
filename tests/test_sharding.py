"""Data parallelism: a step sharded over 4 forced host devices equals a 1-device step."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from cisl_jax import sharding

_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, numpy as np, optax
    from cisl_jax import sharding
    from cisl_jax.train import classifier, common
    import ml_collections
    assert jax.device_count() == 4, jax.devices()
    c = ml_collections.ConfigDict(dict(mode='scratch', task='ten', sign='GGO', width=0.125,
                                       dropout=0.5, learning_rate=1e-3,
                                       finetune_learning_rate=1e-3))
    ik, _, tk = common.split_keys(0)
    rng = np.random.default_rng(0)
    batches = [{'image': rng.normal(size=(8, 64, 64, 1)).astype(np.float32),
                'label': rng.integers(0, 10, 8).astype(np.int32)} for _ in range(2)]
    out = {}
    for name, devices in (('single', jax.devices()[:1]), ('sharded', jax.devices())):
      mesh = sharding.make_mesh(devices)
      graphdef, state, tx, pre = classifier.init_state(c, ik)
      state = sharding.replicate(state, mesh)
      # SGD, not Adam: Adam turns the rounding noise of gradients that are zero in exact
      # arithmetic (conv biases before BatchNorm) into full-size +-lr steps.
      step = classifier.make_train_step(optax.sgd(0.1), pre)
      state['opt_state'] = optax.sgd(0.1).init(state['params'])
      for b in batches:
        batch = sharding.shard_batch(b, mesh)
        state, metrics = step(graphdef, state, batch, tk)
      leaves = jax.tree.leaves(state['params']) + jax.tree.leaves(state['batch_stats'])
      out[name] = {'loss': float(metrics['loss']),
                   'params': [np.asarray(x).ravel()[:64].tolist() for x in leaves],
                   'devices': len(batch['image'].sharding.device_set),
                   'param_devices': len(leaves[0].sharding.device_set)}
    print('RESULT' + json.dumps(out))
''')


def test_sharded_step_matches_single_device():
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _SCRIPT], env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT')][-1]
  out = json.loads(line[len('RESULT'):])
  assert out['single']['devices'] == 1
  assert out['sharded']['devices'] == 4 and out['sharded']['param_devices'] == 4
  np.testing.assert_allclose(out['sharded']['loss'], out['single']['loss'], rtol=1e-5)
  for a, b in zip(out['sharded']['params'], out['single']['params']):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_must_divide_over_devices():
  mesh = sharding.make_mesh()
  sharding.check_batch_size(mesh.devices.size * 3, mesh)
  if mesh.devices.size > 1:
    import pytest  # pylint: disable=g-import-not-at-top
    with pytest.raises(ValueError, match='multiple of'):
      sharding.check_batch_size(mesh.devices.size + 1, mesh)


def test_no_coordinator_means_single_host(monkeypatch):
  monkeypatch.delenv('JAX_COORDINATOR_ADDRESS', raising=False)
  assert sharding.initialize_distributed() is False


def test_coordinator_without_process_id_is_a_clear_error(monkeypatch):
  monkeypatch.delenv('JAX_NUM_PROCESSES', raising=False)
  monkeypatch.delenv('JAX_PROCESS_ID', raising=False)
  import pytest  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='JAX_PROCESS_ID'):
    sharding.initialize_distributed('localhost:1234')
