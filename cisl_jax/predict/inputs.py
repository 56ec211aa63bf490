"""What predict reads: one DICOM slice, a folder of series, or a manifest (boxes optional).

Every slice is one single-frame CT image; slices are grouped into series by their
SeriesInstanceUID and ordered by position (then instance number) within each. Boxes
come from manifest rows that have one, or from `--config.box` for every slice.
Refusals raise `InputError` naming the file and the fix.
"""
import dataclasses
import os

import numpy as np
import pydicom

from cisl_jax.data import ct_check
from cisl_jax.data import dicom
from cisl_jax.data.sources import manifest as manifest_lib

MANIFEST_NAMES = ('manifest.csv', 'manifest.json')
DICOM_EXTENSIONS = ('.dcm', '.dicom')


class InputError(ValueError):
  """An input that predict cannot read; the message names the file and the fix."""


@dataclasses.dataclass
class Box:
  """A box to classify, half-open pixel coordinates [x0, x1) x [y0, y1)."""
  x0: int
  y0: int
  x1: int
  y1: int
  sign: str | None = None  # the manifest's sign, when it gives one (kept in the CSV)

  @property
  def xyxy(self) -> tuple[int, int, int, int]:
    return (self.x0, self.y0, self.x1, self.y1)


@dataclasses.dataclass
class Slice:
  path: str
  dataset: pydicom.Dataset  # header and pixels, the source a DICOM output references
  hu: np.ndarray  # float32 (rows, cols)
  boxes: list[Box]

  @property
  def sop_uid(self) -> str:
    return str(self.dataset.SOPInstanceUID)

  @property
  def series_uid(self) -> str:
    return str(self.dataset.get('SeriesInstanceUID', ''))


def _is_dicom_file(path: str) -> bool:
  """DICOM by extension, or (files without one) by the 'DICM' marker at byte 128."""
  ext = os.path.splitext(path)[1].lower()
  if ext in DICOM_EXTENSIONS:
    return True
  if ext:
    return False
  try:
    with open(path, 'rb') as f:
      return f.read(132)[128:] == b'DICM'
  except OSError:
    return False


def read_slice(path: str, boxes: list[Box]) -> Slice:
  """One DICOM CT slice; DicomError (named file, fix) for non-DICOM, non-CT, multi-frame
  or implausible HU (cisl_jax.data.ct_check)."""
  ds = dicom.read_dataset(path)
  hu = dicom.to_hounsfield(ds, path)
  try:
    ct_check.check(hu, path, 'dicom')
  except ct_check.ImplausibleCT as e:
    raise dicom.DicomError(str(e)) from None
  if 'SOPInstanceUID' not in ds:
    raise dicom.DicomError(f'{path}: no SOP Instance UID; predict needs it to reference the '
                           'slice from its outputs. Export the slice with its full header.')
  return Slice(path, ds, hu, boxes)


def parse_box(text: str) -> Box:
  try:
    x0, y0, x1, y1 = (int(v) for v in str(text).split(','))
  except ValueError:
    raise InputError(f'--config.box={text!r}: give four integers x0,y0,x1,y1 (pixel columns '
                     'and rows, x1/y1 exclusive).') from None
  if x1 <= x0 or y1 <= y0:
    raise InputError(f'--config.box={text!r}: x1 must exceed x0 and y1 exceed y0.')
  return Box(x0, y0, x1, y1)


def _manifest_entries(path: str) -> list[tuple[str, list[Box]]]:
  try:
    records, _ = manifest_lib.load(path)
  except ValueError as e:
    raise InputError(str(e)) from None
  by_path: dict[str, list[Box]] = {}
  for r in records:
    boxes = by_path.setdefault(r.path, [])
    if r.sign is not None:
      boxes.append(Box(r.x0, r.y0, r.x1, r.y1, r.sign))
  for p in by_path:
    if not _is_dicom_file(p):
      raise InputError(f'{path}: {p} is not a DICOM slice; predict reads DICOM (its outputs '
                       'reference the source images), so list .dcm files.')
  return sorted(by_path.items())


def entries(input_path: str) -> list[tuple[str, list[Box]]]:
  """(slice path, boxes) of every slice the input names, in path order."""
  input_path = os.path.abspath(input_path)
  if os.path.isdir(input_path):
    for name in MANIFEST_NAMES:
      if os.path.isfile(os.path.join(input_path, name)):
        return _manifest_entries(os.path.join(input_path, name))
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(input_path) for f in fs)
    found = [(f, []) for f in files if _is_dicom_file(f)]
    if not found:
      raise InputError(f'{input_path}: no DICOM files (.dcm, .dicom, or files with the DICM '
                       'marker) in this folder or below; give a slice, a series folder or a '
                       'manifest.')
    return found
  if not os.path.isfile(input_path):
    raise InputError(f'{input_path}: no such file or folder; check --input.')
  if input_path.lower().endswith(('.csv', '.json')):
    return _manifest_entries(input_path)
  dicom.read_dataset(input_path)  # refuse a non-DICOM file before the model is loaded
  return [(input_path, [])]


def _position(s: Slice) -> tuple[float, int, str]:
  pos = s.dataset.get('ImagePositionPatient')
  z = float(pos[2]) if pos is not None and len(pos) == 3 else 0.0
  return (z, int(s.dataset.get('InstanceNumber', 0) or 0), s.path)


def group_series(slices: list[Slice]) -> list[list[Slice]]:
  """Slices grouped by SeriesInstanceUID (first-seen order), each ordered by position."""
  groups: dict[str, list[Slice]] = {}
  for s in slices:
    groups.setdefault(s.series_uid or s.path, []).append(s)
  return [sorted(g, key=_position) for g in groups.values()]
