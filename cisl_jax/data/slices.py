"""Reads one CT slice of any supported format to float32 Hounsfield units.

Formats, by file extension:
- DICOM (`.dcm`, `.dicom`, or no extension): through `cisl_jax.data.dicom.read_hu`
  (rescale slope/intercept, MONOCHROME1, padding; non-CT and multi-frame refused).
- 16-bit PNG (`.png`): greyscale, HU = stored value + `png_hu_offset`. The default
  offset -32768 is the DeepLesion convention (uint16 = HU + 32768); a PNG written as
  HU + 1024 needs `png_hu_offset=-1024`.
- NPY (`.npy`): a 2-D array already in HU.
Every slice must look like CT (air near -1000 HU and a body near 0..100 HU,
`cisl_jax.data.ct_check`): a wrong offset would otherwise give an all-black dataset.
Every refusal raises `SliceError` (a ValueError) naming the file and what to do.
"""
import os

import numpy as np
from PIL import Image

from cisl_jax.data import ct_check
from cisl_jax.data import dicom

DEFAULT_PNG_HU_OFFSET = -32768
SLICE_EXTENSIONS = ('.dcm', '.dicom', '.png', '.npy')


class SliceError(ValueError):
  """A slice file that cannot be read as one CT slice; the message names the file."""


def is_slice_file(path: str) -> bool:
  """Whether `path` has a slice extension this module reads."""
  return os.path.splitext(path)[1].lower() in SLICE_EXTENSIONS


def _read_png(path: str, offset: float) -> np.ndarray:
  try:
    with Image.open(path) as im:
      mode = im.mode
      arr = np.asarray(im)
  except Exception as e:  # PIL raises many kinds for truncated or foreign files
    raise SliceError(f'{path}: unreadable PNG ({type(e).__name__}: {e}); copy it again '
                     'or pass --skip_bad.') from e
  if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32, np.int16):
    raise SliceError(f'{path}: PNG mode {mode!r} with shape {arr.shape}; a 16-bit '
                     'greyscale PNG (stored HU + offset) is needed: 8-bit or colour '
                     'images carry no Hounsfield units.')
  return arr.astype(np.float32) + np.float32(offset)


def _read_npy(path: str) -> np.ndarray:
  try:
    arr = np.load(path, allow_pickle=False)
  except Exception as e:
    raise SliceError(f'{path}: unreadable NPY ({type(e).__name__}: {e}); save the slice '
                     'with numpy.save as a 2-D array in HU.') from e
  if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
    raise SliceError(f'{path}: NPY array of shape {arr.shape} and dtype {arr.dtype}; one '
                     '2-D numeric slice in HU is needed.')
  return arr.astype(np.float32)


def read_slice(path: str | os.PathLike, *,
               png_hu_offset: float = DEFAULT_PNG_HU_OFFSET) -> np.ndarray:
  """Reads one slice file to float32 HU, shape (rows, cols)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise SliceError(f'{path}: no such file; check the path in the manifest or folder.')
  ext = os.path.splitext(path)[1].lower()
  if ext == '.png':
    hu, kind = _read_png(path, png_hu_offset), 'png'
  elif ext == '.npy':
    hu, kind = _read_npy(path), 'npy'
  else:
    hu, kind = dicom.read_hu(path), 'dicom'
  if not np.all(np.isfinite(hu)):
    raise SliceError(f'{path}: the slice holds NaN or infinite values; fix or remove it.')
  try:
    ct_check.check(hu, path, kind, png_hu_offset)
  except ct_check.ImplausibleCT as e:
    raise SliceError(str(e)) from None
  return hu
