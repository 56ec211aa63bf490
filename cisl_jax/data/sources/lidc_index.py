"""The DICOM side of a LIDC-IDRI folder: every slice's header, series and usable slices.

One walk reads the header (no pixels) of every `*.dcm` file under the root, so that a
contour finds its slice by SOP Instance UID wherever the XML lies (beside its series, or
in TCIA's separate `tcia-lidc-xml` tree), and so that what is not axial CT is seen and
counted instead of read: CR/DX radiograph series (LIDC folders hold them, with their own
`IdriReadMessage` XML) and localiser / scout images (ImageType LOCALIZER, or an image
plane that is not axial) inside CT series.
"""
import collections
import dataclasses
import os
import time

from absl import logging
import numpy as np
import pydicom

_HEADER_TAGS = ['SOPInstanceUID', 'PatientID', 'SeriesInstanceUID', 'Modality', 'Rows',
                'Columns', 'ImagePositionPatient', 'ImageOrientationPatient', 'ImageType',
                'InstanceNumber']


@dataclasses.dataclass(frozen=True)
class Slice:
  """The header fields of one DICOM file that the reader needs."""
  path: str
  patient_id: str
  series_uid: str
  modality: str
  rows: int
  cols: int
  z: float
  localiser: bool  # a scout / localiser image or a plane that is not axial

  @property
  def usable(self) -> bool:
    """An axial CT slice: the only kind that gives records."""
    return self.modality == 'CT' and not self.localiser


def _is_localiser(ds) -> bool:
  image_type = [str(v).upper() for v in (ds.get('ImageType') or [])]
  if 'LOCALIZER' in image_type or 'SCOUT' in image_type:
    return True
  orientation = ds.get('ImageOrientationPatient')
  if orientation and len(orientation) == 6:
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    return abs(normal[2]) < 0.9 * max(np.linalg.norm(normal), 1e-9)
  return False


def read_header(path: str, root: str) -> tuple[str, Slice]:
  """(SOP Instance UID, slice) of one file; raises on an unreadable header."""
  ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
  sop = str(ds.SOPInstanceUID)
  position = ds.get('ImagePositionPatient')
  z = float(position[2]) if position else float(ds.get('InstanceNumber', 0) or 0)
  # LIDC's PatientID is LIDC-IDRI-xxxx; without one, the top folder under the root is.
  patient = (str(ds.get('PatientID', '') or '').strip()
             or os.path.relpath(path, root).split(os.sep)[0])
  return sop, Slice(path=path, patient_id=patient,
                    series_uid=str(ds.get('SeriesInstanceUID', '')),
                    modality=str(ds.get('Modality', '')), rows=int(ds.get('Rows', 0) or 0),
                    cols=int(ds.get('Columns', 0) or 0), z=z, localiser=_is_localiser(ds))


class SliceIndex:
  """SOP Instance UID -> slice header, for every DICOM file under the root."""

  def __init__(self, root: str, bad):
    """Reads every header; `bad(path, reason)` is told of each unreadable one."""
    self.by_sop: dict[str, Slice] = {}
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root)
                   for f in files if f.lower().endswith('.dcm'))
    start = time.time()
    for n, path in enumerate(paths, 1):
      try:
        sop, info = read_header(path, root)
      except Exception as e:  # pydicom raises many kinds on corrupt headers
        bad(path, f'unreadable DICOM header ({type(e).__name__}: {e})')
        continue
      self.by_sop[sop] = info
      if n % 5000 == 0:
        rate = n / max(time.time() - start, 1e-9)
        logging.info('lidc: %d/%d DICOM headers, %.0f files/s, ETA %.0f s', n, len(paths),
                     rate, (len(paths) - n) / rate)
    self.series: dict[str, list[Slice]] = collections.defaultdict(list)
    self.by_path: dict[str, Slice] = {}
    for s in self.by_sop.values():
      self.series[s.series_uid].append(s)
      self.by_path[s.path] = s

  def modality(self, series_uid: str) -> str:
    """The series' modality ('' when none of its files is here)."""
    found = {s.modality for s in self.series.get(series_uid, [])}
    return 'CT' if 'CT' in found else ','.join(sorted(found))

  def not_ct_series(self) -> dict[str, int]:
    """Series with no CT slice, counted by modality."""
    kinds = collections.Counter(self.modality(uid) for uid in self.series)
    return {m or '?': n for m, n in sorted(kinds.items()) if m != 'CT'}

  def localisers(self) -> list[Slice]:
    return sorted((s for s in self.by_sop.values() if s.modality == 'CT' and s.localiser),
                  key=lambda s: s.path)

  def usable(self, series_uid: str) -> list[Slice]:
    """The series' axial CT slices, by z."""
    return sorted((s for s in self.series.get(series_uid, []) if s.usable),
                  key=lambda s: (s.z, s.path))


def background(series: list[Slice], marked: set[str], taken: set[str], k: int) -> list[Slice]:
  """k slices of one series (sorted by z) for background patches, by preference:

  1. slices no reader marked, picked evenly from the middle half by z (the lungs are
     widest there); 2. other unmarked slices, nearest the middle first (a partial series
     may have none in its middle half); 3. marked slices holding no sign record yet,
     nearest the middle first (background patches there keep off every mark), so that a
     series with slices always gives normal patches.
  """
  if k <= 0 or not series:
    return []
  lo, hi = len(series) // 4, len(series) - len(series) // 4
  middle = [s for s in series[lo:hi] if s.path not in marked]
  picks = []
  if middle:
    at = np.unique(np.linspace(0, len(middle) - 1, min(k, len(middle))).round())
    picks = [middle[int(i)] for i in at]
  centre = (len(series) - 1) / 2.0
  by_centre = sorted(range(len(series)), key=lambda i: (abs(i - centre), i))
  for tier in (lambda s: s.path not in marked,
               lambda s: s.path in marked and s.path not in taken):
    for i in by_centre:
      if len(picks) >= k:
        return picks
      if tier(series[i]) and series[i] not in picks:
        picks.append(series[i])
  return picks
