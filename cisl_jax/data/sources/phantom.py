"""The phantom source: a seeded generator of CT-like chest slices with the 9 signs.

`write_phantom(out_dir)` writes real DICOM slices (CT, 512x512, uint16 stored values,
RescaleIntercept -1024, HU) and a `manifest.csv` in the team format
(`patient_id,path,sign,x0,y0,x1,y1`, paths relative to the manifest, half-open boxes,
empty sign and box for a box-free slice), so the demo goes through the same reader as
real data. The default holds the paper's kept boxes per sign over 120 patients, plus
a few extra oversized OP boxes (drawn loosely around the whole chest, over half the
slice in width and height) that the patch rule must drop, so that the kept counts
equal the paper's. Every patient also has box-free slices.

Planning (which sign goes where, with which box) is separate from drawing, so
`plan_phantom` gives the full layout without rendering a pixel. The anatomy and the
signs are drawn by `phantom_anatomy` and `phantom_signs`; SIGNS.md describes the
looks they imitate. Results on the phantom are results on a phantom.
"""
import concurrent.futures
import contextlib
import csv
import dataclasses
import json
import multiprocessing
import os
import pathlib
import time
from collections.abc import Mapping

import ml_collections
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom import uid as pydicom_uid

from cisl_jax import signs as signs_lib
from cisl_jax import terminal
from cisl_jax import workdir
from cisl_jax.data.sources import phantom_anatomy as pa
from cisl_jax.data.sources import phantom_lung
from cisl_jax.data.sources import phantom_scanner
from cisl_jax.data.sources import phantom_signs as ps

MANIFEST = 'manifest.csv'
INFO = 'phantom.json'
COLUMNS = ('patient_id', 'path', 'sign', 'x0', 'y0', 'x1', 'y1')
RESCALE_INTERCEPT = -1024
_FORMAT_VERSION = 2
_UID_ROOT = 'cisl_jax phantom v2'


@dataclasses.dataclass(frozen=True)
class PlannedSign:
  sign: str
  box: tuple[int, int, int, int]  # half-open x0, y0, x1, y1
  params: dict
  oversized: bool = False  # a loose box the patch rule drops (over half the slice)


@dataclasses.dataclass(frozen=True)
class PlannedSlice:
  path: str  # relative to the manifest's folder
  number: int  # instance number within the patient's series
  signs: tuple[PlannedSign, ...]


@dataclasses.dataclass(frozen=True)
class PlannedPatient:
  patient_id: str
  index: int
  scan: phantom_scanner.Scan  # spacing, thickness, kernel and dose of the series
  slices: tuple[PlannedSlice, ...]

  @property
  def spacing(self) -> float:
    return self.scan.spacing

  @property
  def thickness(self) -> float:
    return self.scan.thickness


def default_config() -> ml_collections.ConfigDict:
  """The phantom's fields (keyword arguments of `write_phantom` besides seed/out_dir)."""
  c = ml_collections.ConfigDict()
  c.num_patients = 120  # patients (one series each); the paper's boxes are spread over them
  c.num_oversized = 4  # extra OP boxes over half the slice, for the patch rule to drop
  c.noise_hu = 18.0  # CT noise standard deviation (HU) at the median dose; varies per patient
  c.size = 512  # rows = columns of every slice
  c.signs_per_slice = 2  # at most this many boxes on one slice
  c.free_slices = (1, 2)  # (min, max) box-free slices per patient
  return c


def _assign(seed, num_patients, counts, num_oversized):
  """Spreads the boxes over patients round-robin after a seeded shuffle."""
  boxes = [(s, False) for s in signs_lib.SIGNS for _ in range(counts.get(s, 0))]
  boxes += [('OP', True)] * num_oversized
  rng = np.random.default_rng([seed, 7])
  order = rng.permutation(len(boxes))
  patients = rng.permutation(num_patients)
  per = [[] for _ in range(num_patients)]
  for i, j in enumerate(order):
    per[patients[i % num_patients]].append(boxes[j])
  return per


def _rngs(seed, index):
  """Independent streams per patient: anatomy, plan, base rendering."""
  return (np.random.default_rng([seed, 0, index]), np.random.default_rng([seed, 1, index]),
          np.random.default_rng([seed, 3, index]))


def patient_scan(seed: int, index: int, size: int = 512,
                 noise_hu: float = 18.0) -> phantom_scanner.Scan:
  """The acquisition (spacing, thickness, kernel, dose) of patient `index`."""
  return phantom_scanner.draw_scan(np.random.default_rng([seed, 4, index]), size, noise_hu)


def _plan_patient(seed, index, anat, scan, boxes, rng, signs_per_slice, free_slices):
  """Groups a patient's boxes into slices (up to signs_per_slice each, no overlap)."""
  groups = []
  for sign, oversized in boxes:
    placed = None
    if groups and not oversized and len(groups[-1]) < signs_per_slice and not any(
        g.oversized for g in groups[-1]):
      placed = ps.plan_sign(sign, anat, rng, [g.box for g in groups[-1]])
      if placed is not None:
        groups[-1].append(PlannedSign(sign, placed[1], placed[0]))
        continue
    placed = ps.plan_sign(sign, anat, rng, [], oversized, tries=400)
    if placed is None:
      raise RuntimeError(f'phantom: no room for a {sign} box in patient {index} (seed '
                         f'{seed}); try another seed or a larger slice size.')
    groups.append([PlannedSign(sign, placed[1], placed[0], oversized)])
  lo, hi = free_slices
  groups += [[] for _ in range(int(rng.integers(lo, hi + 1)))]
  order = rng.permutation(len(groups))
  pid = f'PH{index:04d}'
  slices = tuple(PlannedSlice(f'{pid}/IM{n:04d}.dcm', n, tuple(groups[g]))
                 for n, g in enumerate(order, start=1))
  return PlannedPatient(pid, index, scan, slices)


def _check_args(num_patients, counts, num_oversized, size, signs_per_slice, free_slices):
  counts = dict(signs_lib.PAPER_COUNTS if counts is None else counts)
  counts = {signs_lib.canonical(k): int(v) for k, v in counts.items()}
  if any(v < 0 for v in counts.values()):
    raise ValueError(f'phantom: counts must be >= 0, got {counts}.')
  if num_patients < 1:
    raise ValueError(f'phantom: num_patients must be >= 1, got {num_patients}.')
  if size < 128:
    raise ValueError(f'phantom: size must be >= 128 pixels, got {size}.')
  if num_oversized < 0 or signs_per_slice < 1:
    raise ValueError('phantom: num_oversized must be >= 0 and signs_per_slice >= 1.')
  if not 0 <= free_slices[0] <= free_slices[1]:
    raise ValueError(f'phantom: free_slices must be (min, max) with 0 <= min <= max, '
                     f'got {free_slices}.')
  return counts


def patient_anatomy(seed: int, index: int, size: int = 512) -> pa.Anatomy:
  """The anatomy (lung masks, hila) of patient `index` of the phantom of `seed`."""
  return pa.make_anatomy(_rngs(seed, index)[0], size, patient_scan(seed, index, size).spacing)


def _patient(seed, index, boxes, size, signs_per_slice, free_slices, noise_hu=18.0):
  """(PlannedPatient, Anatomy) of patient `index`: its own seeded streams only."""
  scan = patient_scan(seed, index, size, noise_hu)
  anat = pa.make_anatomy(_rngs(seed, index)[0], size, scan.spacing)
  plan_rng = _rngs(seed, index)[1]
  return _plan_patient(seed, index, anat, scan, boxes, plan_rng, signs_per_slice,
                       free_slices), anat


def _patients(seed, num_patients, counts, num_oversized, size, signs_per_slice,
              free_slices, noise_hu=18.0):
  """Yields (PlannedPatient, Anatomy) per patient, in order."""
  for index, boxes in enumerate(_assign(seed, num_patients, counts, num_oversized)):
    yield _patient(seed, index, boxes, size, signs_per_slice, free_slices, noise_hu)


def plan_phantom(*, seed: int = 0, num_patients: int = 120,
                 counts: Mapping[str, int] | None = None, num_oversized: int = 4,
                 size: int = 512, signs_per_slice: int = 2,
                 free_slices: tuple[int, int] = (1, 2)) -> list[PlannedPatient]:
  """The phantom's layout (patients, slices, boxes) without rendering; see write_phantom."""
  counts = _check_args(num_patients, counts, num_oversized, size, signs_per_slice,
                       free_slices)
  return [p for p, _ in _patients(seed, num_patients, counts, num_oversized, size,
                                  signs_per_slice, free_slices)]


def render_slice(seed: int, patient: PlannedPatient, planned: PlannedSlice,
                 anat: pa.Anatomy, base: np.ndarray) -> np.ndarray:
  """HU pixels of one planned slice: the object (anatomy, then signs), then the scanner."""
  rng = np.random.default_rng([seed, 2, patient.index, planned.number])
  obj = phantom_lung.render_object(anat, base, rng, patient.scan)
  for sign in planned.signs:
    ps.paint_sign(obj, sign.sign, sign.params, anat, rng, patient.scan)
  return phantom_scanner.image(obj, patient.scan, rng)


def iter_slices(*, seed: int = 0, num_patients: int = 120,
                counts: Mapping[str, int] | None = None, num_oversized: int = 4,
                size: int = 512, noise_hu: float = 18.0, signs_per_slice: int = 2,
                free_slices: tuple[int, int] = (1, 2)):
  """Yields (PlannedPatient, PlannedSlice, HU pixels) of every slice, in file order.

  What `write_phantom` writes, without the files (the calibration bench reads this).
  """
  counts = _check_args(num_patients, counts, num_oversized, size, signs_per_slice,
                       free_slices)
  for patient, anat in _patients(seed, num_patients, counts, num_oversized, size,
                                 signs_per_slice, free_slices, noise_hu):
    for planned, hu in _patient_slices(seed, patient, anat):
      yield patient, planned, hu


def _patient_slices(seed, patient: PlannedPatient, anat: pa.Anatomy):
  """Yields (PlannedSlice, HU pixels) of one patient's slices, in file order."""
  base = pa.render_base(anat, _rngs(seed, patient.index)[2])
  for planned in patient.slices:
    yield planned, render_slice(seed, patient, planned, anat, base)


def _uid(seed, *parts):
  return pydicom_uid.generate_uid(entropy_srcs=[_UID_ROOT, str(seed), *map(str, parts)])


def write_dicom(path, hu, *, seed, patient: PlannedPatient, planned: PlannedSlice):
  """Writes one CT slice: uint16 stored = HU + 1024 (clipped to 12 bits)."""
  stored = np.clip(np.rint(hu) - RESCALE_INTERCEPT, 0, 4095).astype('<u2')
  sop = _uid(seed, patient.patient_id, planned.number)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = pydicom_uid.CTImageStorage
  meta.MediaStorageSOPInstanceUID = sop
  meta.TransferSyntaxUID = pydicom_uid.ExplicitVRLittleEndian
  meta.ImplementationClassUID = pydicom_uid.PYDICOM_IMPLEMENTATION_UID
  ds = FileDataset(os.fspath(path), {}, file_meta=meta, preamble=b'\0' * 128)
  ds.SOPClassUID = pydicom_uid.CTImageStorage
  ds.SOPInstanceUID = sop
  ds.StudyInstanceUID = _uid(seed, patient.patient_id, 'study')
  ds.SeriesInstanceUID = _uid(seed, patient.patient_id, 'series')
  ds.FrameOfReferenceUID = _uid(seed, patient.patient_id, 'frame')
  ds.Modality = 'CT'
  ds.Manufacturer = 'cisl_jax phantom'
  ds.PatientID = patient.patient_id
  ds.PatientName = f'Phantom^{patient.patient_id}'
  ds.StudyID = '1'
  ds.SeriesNumber = 1
  ds.InstanceNumber = planned.number
  ds.ImageType = ['DERIVED', 'SECONDARY', 'AXIAL']
  ds.BodyPartExamined = 'CHEST'
  ds.SliceThickness = f'{patient.thickness:g}'
  z = -planned.number * patient.thickness * 4
  ds.ImagePositionPatient = [f'{-hu.shape[1] / 2 * patient.spacing:.2f}',
                             f'{-hu.shape[0] / 2 * patient.spacing:.2f}', f'{z:.2f}']
  ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
  ds.SliceLocation = f'{z:.2f}'
  ds.PixelSpacing = [f'{patient.spacing:.4f}', f'{patient.spacing:.4f}']
  ds.Rows, ds.Columns = hu.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
  ds.PixelRepresentation = 0
  ds.RescaleIntercept = RESCALE_INTERCEPT
  ds.RescaleSlope = 1
  ds.RescaleType = 'HU'
  ds.WindowCenter, ds.WindowWidth = -600, 1500
  ds.PixelData = stored.tobytes()
  ds.save_as(path, enforce_file_format=True)


def _manifest_rows(patient: PlannedPatient):
  for planned in patient.slices:
    if not planned.signs:
      yield (patient.patient_id, planned.path, '', '', '', '', '')
    for s in planned.signs:
      yield (patient.patient_id, planned.path, s.sign, *s.box)


def _write_patient(tmp: pathlib.Path, seed: int, index: int, boxes, patient_kw: dict):
  """Renders and writes one patient's slices (one worker task); returns its manifest
  rows, its oversized boxes and its slice count."""
  patient, anat = _patient(seed, index, boxes, **patient_kw)
  (tmp / patient.patient_id).mkdir(exist_ok=True)
  for planned, hu in _patient_slices(seed, patient, anat):
    write_dicom(tmp / planned.path, hu, seed=seed, patient=patient, planned=planned)
  oversized = [dict(path=p.path, box=s.box) for p in patient.slices for s in p.signs
               if s.oversized]
  return list(_manifest_rows(patient)), oversized, len(patient.slices)


@contextlib.contextmanager
def _patient_map(workers: int):
  """`map` over patients: in this process for one worker, else over spawned processes.

  Spawned, not forked: the caller may hold TensorFlow's or JAX's threads. Every patient
  draws from its own seeded streams, so the files do not depend on the worker count.
  """
  if workers <= 1:
    yield map
    return
  pool = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'))
  try:
    yield pool.map
  finally:  # after a failure, the patients not yet started are dropped, not rendered
    pool.shutdown(cancel_futures=True)


def default_workers() -> int:
  """The cores this process may use."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
      os.cpu_count() or 1)


def write_phantom(out_dir: str | os.PathLike, *, seed: int = 0, num_patients: int = 120,
                  counts: Mapping[str, int] | None = None, num_oversized: int = 4,
                  size: int = 512, noise_hu: float = 18.0, signs_per_slice: int = 2,
                  free_slices: tuple[int, int] = (1, 2),
                  overwrite: bool = False, workers: int | None = None) -> pathlib.Path:
  """Writes the phantom (DICOM slices + manifest.csv + phantom.json) to `out_dir`.

  Args:
    out_dir: folder to create; built beside it in a temporary folder and renamed into
      place only when whole.
    seed: the same seed gives byte-identical files; different seeds differ.
    num_patients: patients (one series each); the boxes are spread round-robin.
    counts: kept boxes per sign; default `cisl_jax.signs.PAPER_COUNTS` (696).
    num_oversized: extra OP boxes drawn loosely around the whole chest (over half the
      slice in width and height), listed in the manifest for the patch rule to drop.
    size: slice rows = columns (pixels); anatomy and signs scale with it.
    noise_hu: standard deviation of the scanner-like noise (HU), scaled per patient
      by 0.75-1.3 (different doses).
    signs_per_slice: at most this many boxes on one slice.
    free_slices: (min, max) box-free slices per patient.
    overwrite: replace an existing non-empty `out_dir`.
    workers: processes rendering patients side by side (default: every core this process
      may use, at most one per patient); the files are the same for any number.

  Returns:
    The path of the manifest CSV.
  """
  counts = _check_args(num_patients, counts, num_oversized, size, signs_per_slice,
                       free_slices)
  out_dir = pathlib.Path(out_dir)
  if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
    raise FileExistsError(f'{out_dir}: folder exists and is not empty; remove it, choose '
                          'another folder or pass overwrite=True.')
  with workdir.atomic_dir(out_dir) as tmp:
    tmp = pathlib.Path(tmp)
    rows, oversized, n_slices = [], [], 0
    start = time.time()
    patient_kw = dict(size=size, signs_per_slice=signs_per_slice, free_slices=free_slices,
                      noise_hu=noise_hu)
    assigned = _assign(seed, num_patients, counts, num_oversized)
    workers = min(default_workers() if workers is None else workers, num_patients)
    with _patient_map(workers) as map_fn:
      written = map_fn(_write_patient, [tmp] * num_patients, [seed] * num_patients,
                       range(num_patients), assigned, [patient_kw] * num_patients)
      for done, (patient_rows, patient_oversized, count) in enumerate(written, start=1):
        rows += patient_rows
        oversized += patient_oversized
        n_slices += count
        if done % 20 and done != num_patients:
          continue
        rate = n_slices / max(time.time() - start, 1e-6)
        eta = (num_patients - done) * (time.time() - start) / done
        terminal.status(f'phantom: {done}/{num_patients} patients, {n_slices} slices, '
                        f'{rate:.1f} slices/s on {workers} processes, ETA {eta:.0f} s')
    with open(tmp / MANIFEST, 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(COLUMNS)
      writer.writerows(rows)
    info = dict(format_version=_FORMAT_VERSION, seed=seed, num_patients=num_patients,
                counts=counts, num_oversized=num_oversized, size=size, noise_hu=noise_hu,
                signs_per_slice=signs_per_slice, free_slices=list(free_slices),
                num_slices=n_slices, oversized=oversized,
                note=('Synthetic phantom, not patient data. The oversized OP boxes exceed '
                      'half the slice in width and height and are dropped by the patch '
                      'rule, so the kept counts equal `counts`.'))
    (tmp / INFO).write_text(json.dumps(info, indent=1) + '\n')
  return out_dir / MANIFEST
