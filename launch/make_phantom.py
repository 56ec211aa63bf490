"""Writes the phantom's DICOM series (one per patient) and its manifest; prints the manifest.

  python launch/make_phantom.py --out=phantom_dicom [--config.phantom.num_patients=N]
      [--config.seed=S] [--overwrite]

`<out>/<patient>/IM<n>.dcm` are CT slices (512x512, HU through RescaleIntercept) that
stack by ImagePositionPatient, so a DICOM viewer opens each patient as a series;
`<out>/manifest.csv` lists the boxes (`patient_id,path,sign,x0,y0,x1,y1`) and
`<out>/phantom.json` the settings. The folder appears only when complete. It is a
SYNTHETIC phantom, not patient data. The same source feeds
`make_dataset --source=phantom`, and `make_dataset --source=manifest --input=<out>`
reads this folder as a user's own data.
"""
import os

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)

from absl import app
from absl import flags
from ml_collections import config_flags

from cisl_jax.data.sources import phantom

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), '..', 'configs', 'make_phantom.py'),
    'Phantom config (configs/make_phantom.py).', lock_config=True)
_OUT = flags.DEFINE_string('out', None, 'Folder to write the series and manifest into.',
                           required=True)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing non-empty --out.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  terminal.quiet_libraries()
  cfg = _CONFIG.value
  try:
    path = phantom.write_phantom(_OUT.value, seed=cfg.seed, overwrite=_OVERWRITE.value,
                                 **cfg.phantom.to_dict())
  except (FileExistsError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  print(path, flush=True)


if __name__ == '__main__':
  app.run(main)
