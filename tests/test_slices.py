"""Tests of reading one slice (DICOM, 16-bit PNG, NPY) to HU, and of its refusals."""
import numpy as np
from PIL import Image
import pydicom
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


def _chest(size=128, seed=0):
  """A chest-like slice in HU: air around a soft-tissue body holding two lungs."""
  yy, xx = np.mgrid[:size, :size] / size
  hu = np.full((size, size), -1000.0, np.float32)
  hu[((xx - .5) / .45) ** 2 + ((yy - .5) / .4) ** 2 < 1] = 40.0
  for cx in (.3, .7):
    hu[((xx - cx) / .15) ** 2 + ((yy - .5) / .3) ** 2 < 1] = -850.0
  return hu + np.random.default_rng(seed).normal(0, 15, hu.shape).astype(np.float32)


def test_png_with_the_wrong_offset_is_refused_with_the_right_one(tmp_path):
  # HU + 1024 read with the default DeepLesion offset: every pixel far below air,
  # an all-black dataset before this check.
  path = tmp_path / 'hu_plus_1024.png'
  Image.fromarray(np.clip(_chest() + 1024, 0, None).astype(np.uint16)).save(path)
  with pytest.raises(slices.SliceError, match='not plausible CT') as e:
    slices.read_slice(path)
  assert str(path) in str(e.value)
  assert '--config.manifest.png_hu_offset=-1024' in str(e.value)
  hu = slices.read_slice(path, png_hu_offset=-1024)  # the suggested offset reads it
  assert hu.min() < -900 and np.median(hu) > -900


def test_npy_and_dicom_offsets_are_refused(tmp_path, fixture_dir):
  np.save(tmp_path / 'plus1024.npy', _chest() + 1024)
  with pytest.raises(slices.SliceError, match=r'plus1024.npy.*save array -1024'):
    slices.read_slice(tmp_path / 'plus1024.npy')
  np.save(tmp_path / 'unit.npy', (_chest() + 1000) / 2000)  # normalised to [0, 1]
  with pytest.raises(slices.SliceError, match='no constant offset makes it look like CT'):
    slices.read_slice(tmp_path / 'unit.npy')
  ds = pydicom.dcmread(fixture_dir / 'A0002' / '012.dcm')
  ds.RescaleIntercept = float(ds.RescaleIntercept) + 1024  # a wrong intercept
  ds.save_as(tmp_path / 'intercept.dcm')
  with pytest.raises(slices.SliceError, match=r'intercept.dcm.*RescaleIntercept'):
    slices.read_slice(tmp_path / 'intercept.dcm')


def test_plausible_slices_pass(tmp_path):
  np.save(tmp_path / 'chest.npy', _chest())
  assert slices.read_slice(tmp_path / 'chest.npy').shape == (128, 128)
