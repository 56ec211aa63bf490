r"""The signs on new scans: a trained classifier's maps, detections and box classes.

  python launch/predict.py --classifier_workdir=workdir/quick/fold0/ten_finetune \
      --input=path/to/series_or_slice_or_manifest --out=predictions/run1 \
      [--config.stride=8] [--config.threshold=0.5] [--config.box=x0,y0,x1,y1]

Thin: parses the flags and calls `cisl_jax.predict.run.predict`. Writes <out>/
predictions.csv, png/, dicom/ and summary.json all at once at the end; a failure
leaves nothing at --out and ends with the message that names the file and the fix.
"""
import os
import sys

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)
from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), '..', 'configs', 'predict.py'),
    'Predict config (configs/predict.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string('classifier_workdir', None, 'The --workdir of a finished '
                               'train_classifier.py run.', required=True)
_INPUT = flags.DEFINE_string('input', None, 'A DICOM slice, a folder of series, or a '
                             'manifest .csv/.json (boxes optional).', required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (must not exist, or be empty).',
                           required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  terminal.quiet_libraries()  # progress lines and results; library INFO with --verbosity=0
  from cisl_jax.predict import run  # pylint: disable=g-import-not-at-top
  try:
    run.predict(_CONFIG.value, _WORKDIR.value, _INPUT.value, _OUT.value)
  except (ValueError, FileNotFoundError) as e:
    # Bad input: the message (file and fix) is the last thing on the terminal.
    print(f'predict: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
