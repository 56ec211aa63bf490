"""Probe: does keeping the generated patches that the GAN's own critics rate most real
lower the automated Turing test (C2ST)? A generation-time lever, measured, not built in.

  python bench/probe_critic_selection.py --data_dir=DATA --ablation_dir=W/s0_f0 \
      --fold=0 --seed=0

Reads the base GAN that `bench/ablate_gan.py --variants=base ...` trained in
<ablation_dir>/variant_base/gan and the feature classifier in
<ablation_dir>/features_ten_scratch. Generates --pool x --per_sign candidates per sign,
scores each with D's logit and with C's log-probability of its own sign (inference
BatchNorm), and keeps --per_sign per sign three ways from the same pool: at random, the
top by D, the top by C. Each set is intensity-matched as the quick generation does and
measured by ablate_gan.py's own `set_measures` and `pretrain_scores` (FD, precision,
recall, memorised share, C2ST, pre-training-only binary SE / AC on --signs). Prints one Markdown table and writes it
with the sets under <ablation_dir>/critic_selection/. PHANTOM figures only.
Expected runtime, 2 quiet CPU cores: ~4 minutes per seed-fold.
"""
import argparse
import json
import pathlib
import sys

import common  # bench/common.py  # pylint: disable=g-bad-import-order,unused-import

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import ablate_gan  # pylint: disable=g-import-not-at-top
from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
from cisl_jax import intensity_match  # pylint: disable=g-import-not-at-top
from cisl_jax import signs  # pylint: disable=g-import-not-at-top
from cisl_jax.quality import stage as quality_stage  # pylint: disable=g-import-not-at-top
from cisl_jax.train import common as train_common  # pylint: disable=g-import-not-at-top
from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top
from cisl_jax.train import generate  # pylint: disable=g-import-not-at-top


def critic_scores(graphdef, state, images: np.ndarray, labels: np.ndarray,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """(D's logit, C's log-probability of each patch's own sign), inference BatchNorm."""
  @jax.jit
  def score(state, x):
    model = train_common.merge_model(graphdef, state)
    model.eval()
    return model.discriminator(x)[0][:, 0], jax.nn.log_softmax(model.classifier(x)[0], -1)

  d, c = [], []
  for i in range(0, len(images), batch_size):
    di, ci = score(state, jnp.asarray(images[i:i + batch_size]))
    d.append(np.asarray(di))
    c.append(np.asarray(ci)[np.arange(len(di)), labels[i:i + batch_size]])
  return np.concatenate(d), np.concatenate(c)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data_dir', default='data')
  p.add_argument('--ablation_dir', required=True, help="an ablate_gan.py --workdir")
  p.add_argument('--fold', type=int, default=0)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--per_sign', type=int, default=256)
  p.add_argument('--pool', type=int, default=4, help='candidates per kept patch')
  p.add_argument('--signs', default='GGO,CV', help='signs of the binary pre-training')
  args = p.parse_args(argv)
  work = pathlib.Path(args.ablation_dir)
  out = work / 'critic_selection'
  out.mkdir(parents=True, exist_ok=True)
  graphdef, state, _ = gan.restore(str(work / 'variant_base' / 'gan'))
  labels = np.repeat(np.arange(signs.NUM_SIGNS, dtype=np.int32), args.per_sign * args.pool)
  _, _, key = train_common.split_keys(args.seed)
  images = generate.generate_images(graphdef, state, key, labels, 256)
  d_score, c_score = critic_scores(graphdef, state, images, labels)
  real = input_pipeline.load_split(args.data_dir, 'phantom',
                                   [f for f in range(3) if f != args.fold])
  held = input_pipeline.load_split(args.data_dir, 'phantom', [args.fold])
  features = quality_stage.classifier_features(str(work / 'features_ten_scratch'))
  xr, yr = gan.sign_patches(real)
  rng = np.random.default_rng(args.seed)
  rows = []
  for arm in ('random', 'D', 'C'):
    keep = []
    for s in range(signs.NUM_SIGNS):
      idx = np.flatnonzero(labels == s)
      score = {'random': rng.random(len(idx)), 'D': d_score[idx], 'C': c_score[idx]}[arm]
      keep.append(idx[np.argsort(-score)[:args.per_sign]])
    keep = np.concatenate(keep)
    x, _ = intensity_match.match(images[keep], labels[keep], xr, yr)
    y = labels[keep]
    gen_dir = out / f'generate_{arm}'
    input_pipeline.write_generated(str(gen_dir / 'generated'), x, y)
    generate.fig3(xr, yr, x, y, 8, str(out / f'fig3_{arm}.png'), args.seed)
    row = {'kept': arm, 'mean_D_logit': float(d_score[keep].mean()),
           **ablate_gan.set_measures(args, x, y, real, held, features),
           **ablate_gan.pretrain_scores(args, gen_dir, out / f'pretrain_{arm}')}
    rows.append(row)
    (out / 'rows.json').write_text(json.dumps(rows, indent=1))
  text = (f'PHANTOM data, fold {args.fold}, seed {args.seed}: {args.per_sign} of '
          f'{args.per_sign * args.pool} candidates per sign, intensity-matched.\n\n'
          f'{ablate_gan.table(rows)}\n')
  (out / 'selection.md').write_text(text)
  print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
