"""Builds the TFDS dataset `cisl_patches/<source>` and prints its card's path last.

  python launch/make_dataset.py --source=phantom --data_dir=data
  python launch/make_dataset.py --source=manifest --input=../shared/fixtures/lung_pet_ct_dx \
      --data_dir=data --config.manifest.voc_sign=GGO --config.num_folds=2
  python launch/make_dataset.py --source=lidc --input=/path/LIDC-IDRI --data_dir=data
  python launch/make_dataset.py --source=liss --input=/path/liss_manual_dir --data_dir=data

Writes `<data_dir>/cisl_patches/<source>/1.0.0/` (TFDS files, dataset_card.json,
examples.png) only when the build is complete. For LIDC a short summary (patients,
nodules by number of readers, signs, contours on absent slices) comes before the path. Bad inputs stop the build with the
file or row and the fix; `--skip_bad` skips them and lists them in the card.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cisl_jax.data import tfds_builder
from cisl_jax.data.sources import lidc

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), '..', 'configs', 'make_dataset.py'),
    'Dataset config (patch rules, folds, source options).', lock_config=True)
_SOURCE = flags.DEFINE_enum('source', 'phantom', list(tfds_builder.SOURCES),
                            'Where the boxed slices come from.')
_INPUT = flags.DEFINE_string('input', None, 'Manifest file/folder, LIDC-IDRI folder or '
                             'LISS manual_dir (not needed for the phantom).')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data', 'TFDS data_dir to build into.')
_SKIP_BAD = flags.DEFINE_bool('skip_bad', False, 'Skip bad inputs (listed in the card) '
                              'instead of stopping.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  card = tfds_builder.build_dataset(_SOURCE.value, _INPUT.value, _DATA_DIR.value,
                                    _CONFIG.value, skip_bad=_SKIP_BAD.value)
  if _SOURCE.value == 'lidc':
    with open(card) as f:
      print('\n'.join(lidc.summary_lines(json.load(f)['lidc'])))
  print(card, flush=True)


if __name__ == '__main__':
  app.run(main)
