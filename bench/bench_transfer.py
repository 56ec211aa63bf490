"""Throughput of the ImageNet transfer step (cisl_jax.train.classifier, mode transfer).

  python bench/bench_transfer.py --arch vgg16 --batch 4 --steps 5 --norm trained
  python bench/bench_transfer.py --arch vgg16 --batch 4 --steps 5 --norm all
One Adam update of the fine-tuned layers on a fixed random batch of grey 64x64 patches
(randomly initialised weights: the work is the same as with converted ones). `--norm`
picks the logged gradient norm: `trained` (what the trainer uses: the fine-tuned
layers' gradients only, so XLA drops the frozen layers' backward pass) or `all` (a
norm over every gradient, which keeps the whole backward pass alive: the before).
"""
import argparse

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top

from cisl_jax.train import classifier as train_lib  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--arch', default='vgg16', choices=('alexnet', 'vgg16', 'resnet101'))
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--image_size', type=int, default=112, help='input side (paper: 224/227)')
  p.add_argument('--norm', default='trained', choices=('trained', 'all'))
  a = p.parse_args()
  config = common.load_config('train_classifier', 'quick')
  config.mode, config.task, config.sign = 'transfer', 'binary', 'GGO'
  config.transfer.arch, config.transfer.allow_random_init = a.arch, True
  config.transfer.image_size = a.image_size
  init_key, _, train_key = train_common.split_keys(config.seed)
  graphdef, state, tx, preprocess_fn = train_lib.init_state(config, init_key)
  norm = train_lib.grad_norm_of(config) if a.norm == 'trained' else train_common.global_norm
  step_fn = train_lib.make_train_step(tx, preprocess_fn, grad_norm=norm)
  kx, ky = jax.random.split(jax.random.key(1))
  data = {'image': jax.random.uniform(kx, (a.batch, 64, 64, 1), minval=-1, maxval=1),
          'label': jax.random.randint(ky, (a.batch,), 0, 2)}
  holder = {'state': state}

  def step():
    holder['state'], metrics = step_fn(graphdef, holder['state'], data, train_key)
    return metrics['loss']

  seconds = common.time_steps(step, a.steps, warmup=2)
  common.report(f'transfer_{a.arch}', a.batch, a.steps, seconds, impl=f'jax-norm-{a.norm}',
                image_size=a.image_size)


if __name__ == '__main__':
  main()
