r"""Generates patches of every sign with a trained CVAE-GAN, plus the Fig. 3 grid.

  python launch/generate.py --config=configs/generate.py:quick --workdir=workdir/quick/fold0/generate \
      --config.gan_workdir=workdir/quick/fold0/gan

Runs `cisl_jax.train.generate.generate(config, workdir)`
(cisl_jax/cli.py: what every stage launcher shares, multi-host flags, --verbosity).
"""
from cisl_jax import cli  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)
from cisl_jax.train import generate

if __name__ == '__main__':
  cli.stage_main(generate.generate, 'generate',
                 'Generation config (configs/generate.py:quick|paper).',
                 'Output folder: generated/, fig3_real_vs_generated.png, metrics.json.')
