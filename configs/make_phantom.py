"""Config of `launch/make_phantom.py`: the phantom's DICOM series and manifest alone.

Run (about a minute on 2 busy CPU cores for the default 120 patients):
  python launch/make_phantom.py --out=phantom_dicom
  python launch/make_phantom.py --out=/tmp/ph --config.phantom.num_patients=10 --config.seed=3
Every phantom field is documented in `cisl_jax.data.sources.phantom.default_config`;
`make_dataset --source=phantom` uses the same fields under `--config.phantom.*`.
"""
import ml_collections

from cisl_jax.data.sources import phantom


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The phantom's config; there are no variants (`arg` must be empty)."""
  if arg:
    raise ValueError(f'configs/make_phantom.py has no variants, got {arg!r}.')
  c = ml_collections.ConfigDict()
  c.seed = 0  # the same seed writes byte-identical files
  c.phantom = phantom.default_config()
  return c.lock()
