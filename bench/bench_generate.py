"""Generation throughput: decoder prior samples per second (cisl_jax.train.gan.sample).

  python bench/bench_generate.py --batch 64 --steps 20
Inference-mode decoder at width 1.0 on `batch` signs per call, as generate.py runs it.
"""
import argparse

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--plain', action='store_true',
                 help='plain nnx stride-2 convolutions (the straightforward version)')
  a = p.parse_args()
  config = common.load_config('train_gan', 'paper')
  config.fast_conv = not a.plain
  init_key, _, _ = train_common.split_keys(config.seed)
  graphdef, state = gan.init_state(config, init_key, gan.make_optimizer(config))
  labels = jnp.arange(a.batch) % signs.NUM_SIGNS
  counter = {'i': 0}

  def step():
    counter['i'] += 1
    return gan.sample(graphdef, state, jax.random.key(counter['i']), labels)

  seconds = common.time_steps(step, a.steps)
  common.report('generate', a.batch, a.steps, seconds, impl='jax-plain' if a.plain else 'jax')


if __name__ == '__main__':
  main()
