"""A/B of the decoder's nearest-resize upsampling: plain (repeat + 5x5 conv at full
resolution) against layers.resize_conv_stride1 (one 3x3 conv at low resolution to the
4 output phases), everything else the same (fast_conv on), in ONE process, interleaved.

  python bench/ab_resize_conv.py --rounds 3 --steps 20
The demo's GAN config (configs/train_gan.py:quick: width 0.125, batch 32, recipe
'improved', upsample 'resize') on a fixed random batch: per round, `steps` iterations of
each form (the order alternates between rounds), CPU ms (time.process_time, all threads)
and wall ms per iteration; then the same for generation (gan.sample at the quick
generate batch, configs/generate.py:quick), patches per CPU second. Both forms start from
the same state and run the same iterations, so their losses are printed side by side.
One JSON line per round and form, then a summary line (median and min-max per form).
"""
import argparse
import json
import os
import statistics

import common  # bench/common.py  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
from flax import nnx  # pylint: disable=g-import-not-at-top

from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax.models import cvae_gan  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top

FORMS = ('plain', 'subpixel')


def graphdefs(graphdef, state):
  """{form: graphdef}: the same model with its ResizeConv layers on each form."""
  out = {}
  for form in FORMS:
    model = train_common.merge_model(graphdef, state)
    layers = [m for _, m in nnx.iter_modules(model) if isinstance(m, cvae_gan.ResizeConv)]
    if not layers:
      raise SystemExit('the config has no resize upsampling; nothing to compare')
    for m in layers:
      m.fast_conv = form == 'subpixel'
    out[form] = train_common.split_model(model)[0]
  return out


def summary(rows, key):
  out = {}
  for form in FORMS:
    v = [r[key] for r in rows if r['form'] == form]
    out[form] = {'median': round(statistics.median(v), 2), 'min': round(min(v), 2),
                 'max': round(max(v), 2)}
  out['new_over_old'] = round(out['subpixel']['median'] / out['plain']['median'], 4)
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=20, help='GAN iterations per round and form')
  p.add_argument('--gen_calls', type=int, default=10, help='generate batches per round')
  a = p.parse_args()
  config = common.load_config('train_gan', 'quick')
  gen_batch = common.load_config('generate', 'quick').batch_size
  init_key, _, train_key = train_common.split_keys(config.seed)
  tx = gan.make_optimizer(config)
  graphdef, state0 = gan.init_state(config, init_key, tx)
  gdefs = graphdefs(graphdef, state0)
  step_fn = gan.make_train_step(config, tx)
  kx, ky = jax.random.split(jax.random.key(1))
  data = {'image': jax.random.uniform(kx, (config.batch_size, 64, 64, 1), minval=-1,
                                      maxval=1),
          'label': jax.random.randint(ky, (config.batch_size,), 0, signs.NUM_SIGNS)}
  states = {f: jax.tree.map(jnp.copy, state0) for f in FORMS}
  losses = {f: [] for f in FORMS}
  labels = jnp.arange(gen_batch) % signs.NUM_SIGNS

  def train(form):
    def step():
      states[form], metrics = step_fn(gdefs[form], states[form], data, train_key)
      losses[form].append(metrics['loss_g'])
      return metrics['loss_g']
    return step

  def generate(form):
    counter = {'i': 0}

    def step():
      counter['i'] += 1
      return gan.sample(gdefs[form], state0, jax.random.key(counter['i']), labels)
    return step

  rows, gen_rows = [], []
  print(json.dumps({'load_before': os.getloadavg()}), flush=True)
  for r in range(a.rounds):
    for form in (FORMS if r % 2 == 0 else FORMS[::-1]):
      wall, cpu = common.time_steps_with_cpu(train(form), a.steps)
      row = {'round': r, 'form': form, 'what': 'gan_iteration', 'steps': a.steps,
             'wall_ms': round(wall * 1e3, 2), 'cpu_ms': round(cpu * 1e3, 2)}
      rows.append(row)
      print(json.dumps(row), flush=True)
    for form in (FORMS if r % 2 == 0 else FORMS[::-1]):
      wall, cpu = common.time_steps_with_cpu(generate(form), a.gen_calls)
      row = {'round': r, 'form': form, 'what': 'generate', 'batch': gen_batch,
             'calls': a.gen_calls, 'wall_ms': round(wall * 1e3, 2),
             'cpu_ms': round(cpu * 1e3, 2),
             'patches_per_cpu_s': round(gen_batch / cpu, 1),
             'patches_per_s': round(gen_batch / wall, 1)}
      gen_rows.append(row)
      print(json.dumps(row), flush=True)
  # Same state, batch and keys: the two forms must train alike (float rounding only).
  pairs = list(zip(*(map(float, losses[f]) for f in FORMS)))
  rel = max(abs(x - y) / max(abs(x), 1e-6) for x, y in pairs)
  print(json.dumps({
      'config': 'train_gan.py:quick', 'width': config.width, 'batch': config.batch_size,
      'gan_cpu_ms': summary(rows, 'cpu_ms'), 'gan_wall_ms': summary(rows, 'wall_ms'),
      'gen_patches_per_cpu_s': summary(gen_rows, 'patches_per_cpu_s'),
      'gen_patches_per_s': summary(gen_rows, 'patches_per_s'),
      'loss_g_first_last': {f: [round(float(losses[f][0]), 5), round(float(losses[f][-1]), 5)]
                            for f in FORMS},
      'loss_g_max_rel_diff': float(f'{rel:.3g}'), 'load_after': os.getloadavg()}),
        flush=True)


if __name__ == '__main__':
  main()
