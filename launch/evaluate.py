r"""Restores a classifier checkpoint and evaluates it on the fold it held out.

  python launch/evaluate.py --config=configs/evaluate.py:quick \
      --workdir=workdir/quick/fold0/ten_scratch_eval \
      --config.classifier_workdir=workdir/quick/fold0/ten_scratch

The data (data_dir, source, fold, task, sign) are the trained run's own unless set
(configs/evaluate.py says how other data and training data are scored and labelled).

Thin: parses --config and --workdir and calls `cisl_jax.train.classifier.evaluate(config, workdir)`, which
reproduce also calls in-process. A workdir holding metrics.json is finished and is
not re-run. Multi-host: add --config.coordinator_address=HOST:PORT
--config.num_processes=N --config.process_id=I (or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID) and run the same command on every host.
"""
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cisl_jax.train import classifier

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), '..', 'configs', 'evaluate.py'),
    'Evaluation config (configs/evaluate.py:quick|paper).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder: metrics.json and predictions.npz.', required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  classifier.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
