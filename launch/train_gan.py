r"""Trains the CVAE-GAN on the training folds of one fold split.

  python launch/train_gan.py --config=configs/train_gan.py:quick --workdir=workdir/quick/fold0/gan

Runs `cisl_jax.train.gan.train_and_evaluate(config, workdir)`
(cisl_jax/cli.py: what every stage launcher shares, multi-host flags, --verbosity).
"""
from cisl_jax import cli  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)
from cisl_jax.train import gan

if __name__ == '__main__':
  cli.stage_main(gan.train_and_evaluate, 'train_gan',
                 'CVAE-GAN config (configs/train_gan.py:quick|paper).',
                 'Stage folder: checkpoints/, TensorBoard events, metrics.json.')
