"""Builds the TFDS dataset `cisl_patches/<source>` and prints its card's path last.

  python launch/make_dataset.py --source=phantom --data_dir=data
  python launch/make_dataset.py --source=manifest --input=../shared/fixtures/lung_pet_ct_dx \
      --data_dir=data --config.manifest.voc_sign=GGO --config.num_folds=2
  python launch/make_dataset.py --source=lidc --input=/path/LIDC-IDRI --data_dir=data
  python launch/make_dataset.py --source=liss --input=/path/liss_manual_dir --data_dir=data

Writes `<data_dir>/cisl_patches/<source>/1.0.0/` (TFDS files, dataset_card.json,
examples.png) only when the build is complete. For LIDC a short summary (patients,
nodules by number of readers, signs, contours on absent slices) comes before the path.
Bad inputs stop the build with the file and line and the fix; `--skip_bad` skips them,
lists them in the card and on the terminal. What a user must know about the build
(skipped inputs, signs without patches, tiny folds) is printed before the card's path.
A dataset that is already built is not rebuilt (runs trained on it would silently read
other data): pass --overwrite.
"""
import json
import os
import sys

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)

from absl import app
from absl import flags
from ml_collections import config_flags

from cisl_jax.data import card as card_lib
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
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Rebuild a dataset that is already '
                               'built (runs trained on it then read the new one).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  terminal.quiet_libraries()
  card = tfds_builder.built_card(_DATA_DIR.value, _SOURCE.value)
  if card and not _OVERWRITE.value:
    print(f'{os.path.dirname(card)} is already built; not rebuilding (pass --overwrite '
          'to replace it: runs trained on it would then read the new data).',
          file=sys.stderr, flush=True)
  else:
    try:
      card = tfds_builder.build_dataset(_SOURCE.value, _INPUT.value, _DATA_DIR.value,
                                        _CONFIG.value, skip_bad=_SKIP_BAD.value)
    except (ValueError, FileNotFoundError) as e:
      # Bad input (DICOM, manifest, XML, folds): its message names the file and the fix,
      # and is the last thing on the terminal; nothing was written.
      print(f'make_dataset: {e}', file=sys.stderr, flush=True)
      sys.exit(1)
    with open(card) as f:
      built = json.load(f)
    if _SOURCE.value == 'lidc':
      print('\n'.join(lidc.summary_lines(built['lidc'])))
    for warning in card_lib.warnings(built):
      print(f'WARNING: {warning}', file=sys.stderr, flush=True)
  print(card, flush=True)


if __name__ == '__main__':
  app.run(main)
