"""Compressed DICOM, as clinical exports often are: RLE, JPEG-LS and JPEG 2000.

The tests encode a real LIDC-IDRI slice themselves into each transfer syntax (in a tmp
folder) and read it back through the project's reader: lossless syntaxes must give the
very HU of the uncompressed slice, lossy ones a bounded error.
"""
import numpy as np
import pydicom
from pydicom import uid
from pydicom.pixels import get_decoder
import pytest

from cisl_jax.data import dicom

# A LIDC-IDRI-0001 slice (signed 16-bit, intercept -1024) through the spiculated nodule.
SLICE = 'LIDC-IDRI-0001/*/*/1-040.dcm'

LOSSLESS = {
    'RLE Lossless': (uid.RLELossless, {}),
    'JPEG-LS Lossless': (uid.JPEGLSLossless, {}),
    'JPEG 2000 Lossless': (uid.JPEG2000Lossless, {}),
}


@pytest.fixture
def real_slice(lidc_fixture):
  return next(lidc_fixture.glob(SLICE))


def _encode(src, tmp_path, syntax, **kwargs):
  ds = pydicom.dcmread(src)
  ds.compress(syntax, **kwargs)
  path = tmp_path / f'{syntax.name.replace(" ", "_")}.dcm'
  ds.save_as(path)
  assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
  return path


@pytest.mark.parametrize('name', sorted(LOSSLESS))
def test_lossless_syntax_gives_the_same_hu(tmp_path, real_slice, name):
  syntax, kwargs = LOSSLESS[name]
  path = _encode(real_slice, tmp_path, syntax, **kwargs)
  assert path.stat().st_size < real_slice.stat().st_size  # really compressed
  np.testing.assert_array_equal(dicom.read_hu(path), dicom.read_hu(real_slice))


@pytest.mark.parametrize('syntax', [uid.JPEGLSLossless, uid.JPEG2000Lossless])
def test_pinned_pylibjpeg_plugins_decode(tmp_path, real_slice, syntax):
  # pylibjpeg (with its libjpeg and openjpeg plugins) is the decoder setup.py pins.
  path = _encode(real_slice, tmp_path, syntax)
  ds = pydicom.dcmread(path)
  decoded, _ = get_decoder(syntax).as_array(ds, decoding_plugin='pylibjpeg')
  np.testing.assert_array_equal(decoded, pydicom.dcmread(real_slice).pixel_array)


def test_jpeg_ls_near_lossless_error_within_its_bound(tmp_path, real_slice):
  path = _encode(real_slice, tmp_path, uid.JPEGLSNearLossless, jls_error=3)
  err = np.abs(dicom.read_hu(path) - dicom.read_hu(real_slice))
  assert 0 < err.max() <= 3  # the bound JPEG-LS near-lossless guarantees (slope 1)


def test_jpeg_2000_lossy_error_is_bounded(tmp_path, real_slice):
  path = _encode(real_slice, tmp_path, uid.JPEG2000, j2k_cr=[10])
  ref = dicom.read_hu(real_slice)
  err = dicom.read_hu(path) - ref
  rms = float(np.sqrt(np.mean(err ** 2)))
  # Lossy, but at 10:1 far below the ~18 HU CT noise: tissue classes stay apart.
  assert 0 < rms < 12 and np.percentile(np.abs(err), 99) < 40
