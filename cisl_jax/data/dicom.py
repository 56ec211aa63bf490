"""Reads one CT slice from DICOM into float32 Hounsfield units.

Every refusal raises `DicomError` naming the file and what is wrong with it, so that
a user with thousands of slices can find and fix (or `--skip_bad`) the one that broke.
Compressed pixel data (RLE Lossless, JPEG-LS, JPEG 2000 lossless and lossy, JPEG) is
decoded by pydicom's plugins pinned in setup.py (pylibjpeg with libjpeg and openjpeg).
"""
import os

import numpy as np
import pydicom
from pydicom import errors as pydicom_errors

# Pixels outside the scanner's field of view (padding) become air: they are outside
# the body, and air keeps them out of the lung mask and out of the HU window's range.
AIR_HU = -1000.0


class DicomError(ValueError):
  """A file that cannot be read as one CT slice; the message names the file."""


def read_dataset(path: str | os.PathLike) -> pydicom.Dataset:
  """Reads a DICOM file's header and pixel data, refusing non-DICOM files."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DicomError(f'{path}: no such file; check the path in the manifest or folder.')
  try:
    return pydicom.dcmread(path)
  except pydicom_errors.InvalidDicomError as e:
    raise DicomError(f'{path}: not a DICOM file ({e}); give DICOM, 16-bit PNG or NPY '
                     'slices, or pass --skip_bad to skip it.') from e
  except Exception as e:  # truncated or corrupt files raise many kinds of errors
    raise DicomError(f'{path}: unreadable DICOM ({type(e).__name__}: {e}); the file is '
                     'probably truncated or corrupt: copy it again or pass --skip_bad.') from e


def to_hounsfield(ds: pydicom.Dataset, path: str = '<dataset>') -> np.ndarray:
  """Converts a CT dataset's stored pixels to float32 HU, shape (rows, cols)."""
  modality = ds.get('Modality')
  if modality != 'CT':
    raise DicomError(f'{path}: Modality is {modality!r}, not CT; only CT slices carry '
                     'Hounsfield units. Remove it from the input or pass --skip_bad.')
  if 'PixelData' not in ds:
    raise DicomError(f'{path}: the file has no pixel data (a header-only or structured '
                     'report object); list only image slices.')
  frames = int(ds.get('NumberOfFrames', 1) or 1)
  samples = int(ds.get('SamplesPerPixel', 1) or 1)
  if frames != 1 or samples != 1:
    raise DicomError(f'{path}: {frames} frame(s) of {samples} sample(s) per pixel; one '
                     'single-channel 2-D frame is needed. Split multi-frame files into '
                     'slices first.')
  try:
    stored = ds.pixel_array
  except Exception as e:
    syntax = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', None)
    name = getattr(syntax, 'name', syntax) or 'unknown transfer syntax'
    raise DicomError(f'{path}: pixel data cannot be decoded ({name}; {type(e).__name__}: '
                     f'{e}); the file is truncated, or its codec is missing: `pip install '
                     '-e .` brings pylibjpeg with its libjpeg and openjpeg plugins.') from e
  if stored.ndim != 2:
    raise DicomError(f'{path}: pixel array has shape {stored.shape}; a 2-D slice is needed.')

  padding = ds.get('PixelPaddingValue')
  pad_mask = (stored == padding) if padding is not None else None
  if ds.get('PhotometricInterpretation') == 'MONOCHROME1':
    # MONOCHROME1 displays low values white; invert within the stored range so that
    # higher stored values again mean denser tissue before rescaling.
    bits = int(ds.get('BitsStored', 16))
    if int(ds.get('PixelRepresentation', 0)) == 1:
      lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
      lo, hi = 0, (1 << bits) - 1
    stored = (hi + lo) - stored.astype(np.int64)
  slope = float(ds.get('RescaleSlope', 1.0) or 1.0)
  intercept = float(ds.get('RescaleIntercept', 0.0) or 0.0)
  hu = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
  if pad_mask is not None:
    hu[pad_mask] = AIR_HU
  return hu


def read_hu(path: str | os.PathLike) -> np.ndarray:
  """Reads one DICOM CT slice as float32 Hounsfield units, shape (rows, cols)."""
  return to_hounsfield(read_dataset(path), os.fspath(path))
