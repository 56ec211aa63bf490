"""Synthetic CT scans written as DICOM with pydicom, and a tiny trained classifier."""
import importlib.util
import os
import pathlib

import numpy as np
from pydicom import uid as pydicom_uid
from pydicom.dataset import FileDataset, FileMetaDataset

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 160


def load_config(name, arg='quick'):
  spec = importlib.util.spec_from_file_location(f'cfg_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def chest(seed: int, size: int = SIZE) -> np.ndarray:
  """A CT-like slice in HU: air, a soft-tissue body, two lungs, a dense nodule."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  hu = np.full((size, size), -1000.0, np.float32)
  hu[((xx - .5) / .48) ** 2 + ((yy - .5) / .44) ** 2 < 1] = 40.0
  for cx in (.29, .71):
    hu[((xx - cx) / .19) ** 2 + ((yy - .5) / .36) ** 2 < 1] = -850.0
  cy, cx = rng.uniform(.35, .65), rng.choice([.25, .75])
  hu[((xx - cx) ** 2 + (yy - cy) ** 2) < .05 ** 2] = 60.0
  return hu + rng.normal(0, 10, hu.shape).astype(np.float32)


def write_ct(path, hu, *, patient='P0', series='1', number=1, modality='CT', frames=1):
  """One CT slice (stored = HU + 1024) with the header predict and highdicom need."""
  root = '1.2.826.0.1.3680043.8.498.'
  make = lambda *p: pydicom_uid.generate_uid(prefix=root, entropy_srcs=list(map(str, p)))
  stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype('<u2')
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = pydicom_uid.CTImageStorage
  meta.MediaStorageSOPInstanceUID = make(patient, series, number)
  meta.TransferSyntaxUID = pydicom_uid.ExplicitVRLittleEndian
  ds = FileDataset(os.fspath(path), {}, file_meta=meta, preamble=b'\0' * 128)
  ds.SOPClassUID = pydicom_uid.CTImageStorage
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.StudyInstanceUID = make(patient, 'study')
  ds.SeriesInstanceUID = make(patient, series, 'series')
  ds.FrameOfReferenceUID = make(patient, 'frame')
  ds.Modality = modality
  ds.PatientID, ds.PatientName = patient, f'Test^{patient}'
  ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = '1', 1, number
  ds.StudyDate, ds.StudyTime, ds.AccessionNumber = '20260101', '120000', '1'
  ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = '', 'O', ''
  ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
  ds.SliceThickness = '2.5'
  ds.ImagePositionPatient = ['-100.0', '-100.0', f'{-2.5 * number:.1f}']
  ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
  ds.PixelSpacing = ['0.7', '0.7']
  ds.Rows, ds.Columns = hu.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
  ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
  if frames > 1:
    ds.NumberOfFrames = frames
    stored = np.stack([stored] * frames)
  ds.PixelData = stored.tobytes()
  ds.save_as(path, enforce_file_format=True)
  return path


# Per patient: slice 1 with a small GGO box, slice 2 with a large (windowed) OP box.
BOXES = {1: ('GGO', (30, 60, 50, 84)), 2: ('OP', (20, 40, 90, 110))}


def write_scans(root: pathlib.Path, num_patients: int = 4) -> pathlib.Path:
  """<root>/P<i>/s<n>.dcm, one series of two slices per patient, and manifest.csv."""
  rows = ['patient_id,path,sign,x0,y0,x1,y1']
  for i in range(num_patients):
    (root / f'P{i}').mkdir(parents=True, exist_ok=True)
    for n, (sign, box) in BOXES.items():
      name = f'P{i}/s{n}.dcm'
      write_ct(root / name, chest(10 * i + n), patient=f'P{i}', number=n)
      rows.append(f'P{i},{name},{sign},{",".join(map(str, box))}')
  (root / 'manifest.csv').write_text('\n'.join(rows) + '\n')
  return root / 'manifest.csv'


def build_and_train(tmp: pathlib.Path):
  """(manifest, data_dir, classifier workdir): a 2-fold dataset and a 1-step 10-class run."""
  from cisl_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
  manifest = write_scans(tmp / 'scans')
  cfg = tfds_builder.default_config()
  cfg.num_folds = 2
  cfg.require_classes = 'none'
  cfg.patches.backgrounds_per_slice = 1
  cfg.examples_per_class = 1
  data_dir = tmp / 'data'
  tfds_builder.build_dataset('manifest', str(manifest), str(data_dir), cfg)
  c = load_config('train_classifier')
  c.update(dict(data_dir=str(data_dir), source='manifest', num_folds=2, fold=0, width=0.125,
                batch_size=8, num_steps=1, checkpoint_every=1, log_every=1))
  workdir = tmp / 'ten_scratch'
  classifier.train_and_evaluate(c, str(workdir))
  return manifest, data_dir, workdir
