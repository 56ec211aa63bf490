r"""Trains one classifier stage (scratch|pretrain|finetune|augment|transfer) and evaluates it.

  python launch/train_classifier.py --config=configs/train_classifier.py:quick --workdir=workdir/quick/fold0/ten/scratch \
      --config.mode=scratch --config.task=ten

Runs `cisl_jax.train.classifier.train_and_evaluate(config, workdir)`
(cisl_jax/cli.py: what every stage launcher shares, multi-host flags, --verbosity).
"""
from cisl_jax import cli  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)
from cisl_jax.train import classifier

if __name__ == '__main__':
  cli.stage_main(classifier.train_and_evaluate, 'train_classifier',
                 'Classifier config (configs/train_classifier.py:quick|paper).',
                 'Stage folder: checkpoints/, TensorBoard events, metrics.json, predictions.npz.')
