"""The DICOM reader: real scanner slices in, HU out, clear refusals."""
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from cisl_jax.data import dicom


def test_real_slice_is_in_hounsfield_units(fixture_dir):
  path = fixture_dir / 'A0001' / '013.dcm'
  hu = dicom.read_hu(path)
  ds = pydicom.dcmread(path)
  assert hu.dtype == np.float32 and hu.shape == (512, 512)
  expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  np.testing.assert_array_equal(hu, expected)
  # A chest slice: outside air near -1000 HU, and soft tissue or bone above 0.
  assert hu.min() <= -950 and hu.max() > 100
  assert np.median(hu[:20, :20]) < -900


def test_pydicom_ct_small_applies_padding_value():
  path = get_testdata_file('CT_small.dcm')
  ds = pydicom.dcmread(path)
  hu = dicom.read_hu(path)
  assert hu.shape == (128, 128)
  pad = ds.pixel_array == ds.PixelPaddingValue
  rescaled = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  np.testing.assert_allclose(hu[~pad], rescaled[~pad])
  assert np.all(hu[pad] == dicom.AIR_HU)


def test_monochrome1_is_inverted(tmp_path, fixture_dir):
  ds = pydicom.dcmread(fixture_dir / 'A0001' / '013.dcm')
  mono2 = dicom.to_hounsfield(ds)
  ds.PhotometricInterpretation = 'MONOCHROME1'
  ds.PixelData = ((1 << int(ds.BitsStored)) - 1 - ds.pixel_array).astype(np.uint16).tobytes()
  path = tmp_path / 'mono1.dcm'
  ds.save_as(path)
  np.testing.assert_array_equal(dicom.read_hu(path), mono2)


def test_refuses_non_dicom(tmp_path):
  path = tmp_path / 'notes.dcm'
  path.write_text('not a scan')
  with pytest.raises(dicom.DicomError, match=r'notes\.dcm: not a DICOM file'):
    dicom.read_hu(path)


def test_refuses_missing_file(tmp_path):
  with pytest.raises(dicom.DicomError, match='no such file'):
    dicom.read_hu(tmp_path / 'absent.dcm')


def test_refuses_truncated_file(tmp_path, fixture_dir):
  data = (fixture_dir / 'A0001' / '013.dcm').read_bytes()
  path = tmp_path / 'cut.dcm'
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(dicom.DicomError, match=r'cut\.dcm'):
    dicom.read_hu(path)


def test_refuses_non_ct(tmp_path, fixture_dir):
  ds = pydicom.dcmread(fixture_dir / 'A0001' / '013.dcm')
  ds.Modality = 'PT'
  path = tmp_path / 'pet.dcm'
  ds.save_as(path)
  with pytest.raises(dicom.DicomError, match=r"pet\.dcm: Modality is 'PT', not CT"):
    dicom.read_hu(path)


def test_refuses_no_pixel_data(tmp_path, fixture_dir):
  ds = pydicom.dcmread(fixture_dir / 'A0001' / '013.dcm')
  del ds.PixelData
  path = tmp_path / 'header.dcm'
  ds.save_as(path)
  with pytest.raises(dicom.DicomError, match='no pixel data'):
    dicom.read_hu(path)


def test_refuses_multiframe(tmp_path, fixture_dir):
  ds = pydicom.dcmread(fixture_dir / 'A0001' / '013.dcm')
  frames = np.stack([ds.pixel_array, ds.pixel_array])
  ds.NumberOfFrames = 2
  ds.PixelData = frames.tobytes()
  path = tmp_path / 'multi.dcm'
  ds.save_as(path)
  with pytest.raises(dicom.DicomError, match=r'multi\.dcm: 2 frame'):
    dicom.read_hu(path)
