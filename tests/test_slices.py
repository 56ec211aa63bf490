"""Tests of reading one slice (DICOM, 16-bit PNG, NPY) to HU, and of its refusals."""
import numpy as np
from PIL import Image
import pytest

from cisl_jax.data import slices


def test_dicom_fixture_in_hu(fixture_dir):
  hu = slices.read_slice(fixture_dir / 'A0002' / '012.dcm')
  assert hu.shape == (512, 512) and hu.dtype == np.float32
  assert hu.min() <= -900 and hu.max() >= 300  # air and bone in a chest slice


def test_png_uses_stated_offset(tmp_path):
  hu = np.array([[-1000, 0], [40, 1200]], np.int32)
  path = tmp_path / 's.png'
  Image.fromarray((hu + 1024).astype(np.uint16)).save(path)
  np.testing.assert_array_equal(slices.read_slice(path, png_hu_offset=-1024), hu)
  Image.fromarray((hu + 32768).astype(np.uint16)).save(path)
  np.testing.assert_array_equal(slices.read_slice(path), hu)  # DeepLesion default


def test_npy(tmp_path):
  hu = np.linspace(-1000, 500, 64 * 64, dtype=np.float64).reshape(64, 64)
  np.save(tmp_path / 's.npy', hu)
  got = slices.read_slice(tmp_path / 's.npy')
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, hu, rtol=1e-6)


@pytest.mark.parametrize('make,match', [
    (lambda p: None, 'no such file'),
    (lambda p: Image.fromarray(np.zeros((8, 8), np.uint8)).save(p.with_suffix('.png')),
     '16-bit greyscale'),
    (lambda p: np.save(p.with_suffix('.npy'), np.zeros((2, 8, 8))), '2-D'),
    (lambda p: np.save(p.with_suffix('.npy'), np.full((8, 8), np.nan)), 'NaN'),
    (lambda p: p.with_suffix('.npy').write_bytes(b'not numpy'), 'unreadable NPY'),
    (lambda p: p.with_suffix('.dcm').write_bytes(b'not dicom at all' * 20), 'DICOM'),
])
def test_refusals_name_the_file(tmp_path, make, match):
  base = tmp_path / 'bad'
  make(base)
  written = [p for p in tmp_path.iterdir()] or [base.with_suffix('.npy')]
  with pytest.raises(ValueError, match=match) as e:
    slices.read_slice(written[0])
  assert str(written[0]) in str(e.value)
