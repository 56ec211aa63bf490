"""Evaluate a trained classifier on its held-out fold: metrics.json + predictions.npz.

Run (from the repo root):
  python launch/evaluate.py --config=configs/evaluate.py:quick \
      --workdir=workdir/quick/fold0/ten_finetune_eval \
      --config.classifier_workdir=workdir/quick/fold0/ten_finetune
Expected runtime: seconds (quick) to a minute (paper, GPU). The model (task, sign,
width, mode) and, by default, the data (data_dir, source, fold, task, sign) come from
the classifier run's own config.json: the model is scored on the fold it held out.
Other data (another fold or source) is scored only when asked for with
--config.fold / --config.source / --config.data_dir, and labelled so; the folds the
model trained on also need --config.allow_training_data=True and are labelled
training data.
"""
from ml_collections import config_dict

from cisl_jax import config_lib


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  c = config_lib.base(arg)
  # The data scored: unset = the trained run's own (its held-out fold). Set one to
  # score other data; the label in metrics.json and on the terminal says what it was.
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir; unset: the run's
  c.source = config_dict.placeholder(str)  # cisl_patches source; unset: the run's
  c.fold = config_dict.placeholder(int)  # fold scored; unset: the run's held-out fold
  c.task = config_dict.placeholder(str)  # must match the model's task if set
  c.sign = config_dict.placeholder(str)  # binary: sign scored; unset: the model's sign
  # Score patches the model trained on (labelled as training data, never as held-out).
  c.allow_training_data = False
  # The --workdir of the train_classifier.py run to restore; unset = --workdir itself.
  c.classifier_workdir = config_dict.placeholder(str)
  c.batch_size = 256  # evaluation batch (any size: the last batch is padded and masked)
  c.lock()
  return c
