"""One process of tests/test_multihost.py: a few data-parallel train steps, as JSON.

  python tests/multihost_worker.py PORT NUM_PROCESSES PROCESS_ID
With NUM_PROCESSES > 1 it joins `jax.distributed` on 127.0.0.1:PORT (CPU collectives
over gloo) through cisl_jax.sharding, exactly as a multi-host stage does; with 1 it
runs alone. Every process builds the same global batches and feeds only its own rows
(sharding.shard_batch). Runs 2 classifier steps (SGD) and 2 CVAE-GAN iterations
(the project's Adam) at width 0.125 and prints one line 'RESULT {json}'.
"""
import importlib.util
import json
import os
import pathlib
import sys

os.environ['JAX_PLATFORMS'] = 'cpu'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

jax.config.update('jax_cpu_collectives_implementation', 'gloo')

import ml_collections  # pylint: disable=g-import-not-at-top
import optax  # pylint: disable=g-import-not-at-top

from cisl_jax import sharding  # pylint: disable=g-import-not-at-top
from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top

GLOBAL_BATCH = 8
CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'


def first_values(tree, n=32):
  """The first n values of every leaf, from this process's replica."""
  return [np.asarray(x.addressable_data(0)).ravel()[:n].tolist() for x in jax.tree.leaves(tree)]


def classifier_steps(mesh, rng):
  config = ml_collections.ConfigDict(dict(mode='scratch', task='ten', sign='GGO', width=0.125,
                                          dropout=0.5, learning_rate=1e-3,
                                          finetune_learning_rate=1e-3))
  init_key, _, train_key = common.split_keys(0)
  graphdef, state, _, preprocess = classifier.init_state(config, init_key)
  # SGD, not Adam: Adam turns the rounding noise of gradients that are zero in exact
  # arithmetic (conv biases before BatchNorm) into full-size +-lr steps.
  tx = optax.sgd(0.1)
  state['opt_state'] = tx.init(state['params'])
  state = sharding.replicate(state, mesh)
  step = classifier.make_train_step(tx, preprocess)
  losses = []
  for _ in range(2):
    batch = {'image': rng.normal(size=(GLOBAL_BATCH, 64, 64, 1)).astype(np.float32),
             'label': rng.integers(0, 10, GLOBAL_BATCH).astype(np.int32)}
    batch = sharding.shard_batch(batch, mesh)
    state, metrics = step(graphdef, state, batch, train_key)
    losses.append(float(metrics['loss'].addressable_data(0)))
  return {'losses': losses, 'params': first_values(state['params']),
          'batch_stats': first_values(state['batch_stats']),
          'batch_devices': len(batch['image'].sharding.device_set)}


def gan_steps(mesh, rng):
  spec = importlib.util.spec_from_file_location('train_gan_config', CONFIGS / 'train_gan.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('quick')
  config.unlock()
  config.width = 0.125
  init_key, _, train_key = common.split_keys(0)
  tx = gan.make_optimizer(config)
  graphdef, state = gan.init_state(config, init_key, tx)
  state = sharding.replicate(state, mesh)
  step = gan.make_train_step(config, tx)
  losses = []
  for _ in range(2):
    batch = {'image': rng.uniform(-1, 1, (GLOBAL_BATCH, 64, 64, 1)).astype(np.float32),
             'label': rng.integers(0, signs.NUM_SIGNS, GLOBAL_BATCH).astype(np.int32)}
    state, metrics = step(graphdef, state, sharding.shard_batch(batch, mesh), train_key)
    losses.append([float(metrics[k].addressable_data(0)) for k in ('loss_c', 'loss_d', 'loss_g')])
  return {'losses': losses, 'class_means': first_values(state['class_means'])}


def main():
  port, num_processes, process_id = (int(v) for v in sys.argv[1:4])
  if num_processes > 1:
    sharding.initialize_distributed(f'127.0.0.1:{port}', num_processes, process_id)
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(0)
  out = {'process_count': jax.process_count(), 'devices': jax.device_count(),
         'classifier': classifier_steps(mesh, rng), 'gan': gan_steps(mesh, rng)}
  print('RESULT' + json.dumps(out), flush=True)
  if num_processes > 1:
    jax.distributed.shutdown()


if __name__ == '__main__':
  main()
