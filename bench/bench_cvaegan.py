"""Throughput of the project's CVAE-GAN iteration (cisl_jax.train.gan).

  python bench/bench_cvaegan.py --batch 64 --steps 10
One iteration updates the auxiliary classifier, the discriminator and encoder+decoder
(width 1.0, latent 64, 9 signs): the work of `peer_keras.py --model cvaegan`.
"""
import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top

from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top


def make_step_fn(batch: int, width: float = 1.0, fast_conv: bool = True):
  """(jitted iteration, its arguments (graphdef, state, batch, key)) on a random batch."""
  config = common.load_config('train_gan', 'paper')
  config.unlock()
  config.width, config.batch_size, config.fast_conv = width, batch, fast_conv
  init_key, _, train_key = train_common.split_keys(config.seed)
  tx = gan.make_optimizer(config)
  graphdef, state = gan.init_state(config, init_key, tx)
  step_fn = gan.make_train_step(config, tx)
  kx, ky = jax.random.split(jax.random.key(1))
  data = {'image': jax.random.uniform(kx, (batch, 64, 64, 1), minval=-1, maxval=1),
          'label': jax.random.randint(ky, (batch,), 0, signs.NUM_SIGNS)}
  return step_fn, (graphdef, state, data, train_key)


def make_step(batch: int, width: float = 1.0, fast_conv: bool = True):
  """A no-argument callable running one real iteration on a fixed batch."""
  step_fn, (graphdef, state, data, train_key) = make_step_fn(batch, width, fast_conv)
  holder = {'state': state}

  def step():
    holder['state'], metrics = step_fn(graphdef, holder['state'], data, train_key)
    return metrics['loss_g']

  return step


if __name__ == '__main__':
  common.step_benchmark_main('cvaegan', make_step, default_steps=10)
