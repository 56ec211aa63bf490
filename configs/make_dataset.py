"""Config of `launch/make_dataset.py`: the patch rules, folds and source options.

Run (phantom: about 40 s of CPU to write the phantom, then the patches; see MEASUREMENTS.md):
  python launch/make_dataset.py --source=phantom --data_dir=data
Your own boxed data (a manifest CSV/JSON or a folder of slices with VOC boxes):
  python launch/make_dataset.py --source=manifest --input=path/to/manifest.csv \
      --data_dir=data [--skip_bad] [--config.manifest.voc_sign=GGO]
Variants: `--config=configs/make_dataset.py:quick` (default) and `:paper` (more
background patches per slice, for pre-training pools at the paper's scale).
Every field is documented where it is defined: `cisl_jax.data.tfds_builder.default_config`,
`patches.default_config`, `lung_mask.default_config`, `sources.manifest.default_config`.
"""
import ml_collections

from cisl_jax.data import tfds_builder
from cisl_jax.data.sources import lidc


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the dataset config; `arg` picks the variant ('quick' or 'paper')."""
  variant = arg or 'quick'
  if variant not in ('quick', 'paper'):
    raise ValueError(f"unknown variant {variant!r}; use 'quick' or 'paper'.")
  config = tfds_builder.default_config()
  if variant == 'paper':
    config.patches.backgrounds_per_slice = 8  # larger normal pools for 16k pre-training sets
  config.lidc = lidc.default_thresholds()  # LIDC ratings -> signs (documented in lidc.py)
  return config.lock()
