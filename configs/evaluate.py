"""Evaluate a trained classifier on the held-out fold: metrics.json + predictions.npz.

Run (from the repo root):
  python launch/evaluate.py --config=configs/evaluate.py:quick \
      --workdir=workdir/quick/fold0/ten/finetune_eval \
      --config.classifier_workdir=workdir/quick/fold0/ten/finetune
Expected runtime: seconds (quick) to a minute (paper, GPU). The model (task, sign,
width, mode) is rebuilt from the classifier run's own config.json.
"""
import importlib.util
import pathlib

from ml_collections import config_dict

_spec = importlib.util.spec_from_file_location(
    'cisl_configs_common', pathlib.Path(__file__).with_name('common.py'))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  c = common.base(arg)
  # The --workdir of the train_classifier.py run to restore; unset = --workdir itself.
  c.classifier_workdir = config_dict.placeholder(str)
  c.batch_size = 256  # evaluation batch (any size: the last batch is padded and masked)
  c.lock()
  return c
