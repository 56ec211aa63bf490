"""Throughput of the project's classifier train step (cisl_jax.train.classifier).

  python bench/bench_classifier.py --batch 64 --steps 20
One Adam update of the paper's 10-class CNN (width 1.0) on a fixed random batch, the
same work as `peer_keras.py --model classifier`.
"""
import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top

from cisl_jax.train import classifier as train_lib  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top


def make_step_fn(batch: int, width: float = 1.0, fast_conv: bool = True):
  """(jitted train step, its arguments (graphdef, state, batch, key)) on a random batch."""
  config = common.load_config('train_classifier', 'paper')
  config.unlock()
  config.width, config.batch_size, config.fast_conv = width, batch, fast_conv
  init_key, _, train_key = train_common.split_keys(config.seed)
  graphdef, state, tx, preprocess_fn = train_lib.init_state(config, init_key)
  step_fn = train_lib.make_train_step(tx, preprocess_fn)
  kx, ky = jax.random.split(jax.random.key(1))
  data = {'image': jax.random.normal(kx, (batch, 64, 64, 1)),
          'label': jax.random.randint(ky, (batch,), 0, 10)}
  return step_fn, (graphdef, state, data, train_key)


def make_step(batch: int, width: float = 1.0, fast_conv: bool = True):
  """A no-argument callable running one real train step on a fixed batch."""
  step_fn, (graphdef, state, data, train_key) = make_step_fn(batch, width, fast_conv)
  holder = {'state': state}

  def step():
    holder['state'], metrics = step_fn(graphdef, holder['state'], data, train_key)
    return metrics['loss']

  return step


if __name__ == '__main__':
  common.step_benchmark_main('classifier', make_step, default_steps=20)
