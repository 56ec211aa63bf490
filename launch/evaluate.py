r"""Restores a classifier checkpoint and evaluates it on the fold it held out.

  python launch/evaluate.py --config=configs/evaluate.py:quick \
      --workdir=workdir/quick/fold0/ten_scratch_eval \
      --config.classifier_workdir=workdir/quick/fold0/ten_scratch

The data (data_dir, source, fold, task, sign) are the trained run's own unless set
(configs/evaluate.py says how other data and training data are scored and labelled).

Runs `cisl_jax.train.classifier.evaluate(config, workdir)`
(cisl_jax/cli.py: what every stage launcher shares, multi-host flags, --verbosity).
"""
from cisl_jax import cli  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)
from cisl_jax.train import classifier

if __name__ == '__main__':
  cli.stage_main(classifier.evaluate, 'evaluate',
                 'Evaluation config (configs/evaluate.py:quick|paper).',
                 'Output folder: metrics.json and predictions.npz.')
