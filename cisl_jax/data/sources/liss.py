"""The `liss` source: the LISS database for users who hold it, from a manual_dir.

LISS (Han et al., IEEE TBME 2015) cannot be downloaded here. Put the slices and a
manifest into one folder and pass it as `--input` (or as TFDS's manual_dir):

    <manual_dir>/
      manifest.csv            patient_id,path,sign,x0,y0,x1,y1  (see manifest.py)
      <patient_id>/<slice>.dcm | .png (16-bit) | .npy

`path` is relative to `<manual_dir>`. LISS sign names (e.g. 'GGO', 'Lobulation',
'Calcification', 'CV', 'Spiculation', 'PI', 'BMP', 'AB', 'OP', or their long names)
are accepted case-insensitively; unknown names are refused with the nearest sign.
A `manifest.json` with the same keys works too.
"""
import os

from cisl_jax.data.records import BoxedSlice
from cisl_jax.data.sources import manifest

MANUAL_DIR_LAYOUT = """\
Put the LISS slices and a manifest into one folder and pass it as manual_dir / --input:
  <manual_dir>/manifest.csv   columns patient_id,path,sign,x0,y0,x1,y1 (paths relative to
                              <manual_dir>; box x1,y1 exclusive; empty sign+box for a
                              slice without signs)
  <manual_dir>/<patient_id>/<slice>.dcm|.png|.npy
See cisl_jax/data/sources/manifest.py for the full format."""


def load(manual_dir: str, *, skip_bad: bool = False,
         **options) -> tuple[list[BoxedSlice], list[tuple[str, str]]]:
  """Reads `<manual_dir>/manifest.csv` (or .json); options as `manifest.load`."""
  manual_dir = os.fspath(manual_dir)
  if not any(os.path.isfile(os.path.join(manual_dir, n))
             for n in ('manifest.csv', 'manifest.json')):
    raise manifest.ManifestError(
        f'{manual_dir}: no manifest.csv or manifest.json for LISS.\n{MANUAL_DIR_LAYOUT}')
  return manifest.load(manual_dir, skip_bad=skip_bad, **options)
