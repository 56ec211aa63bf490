"""A DICOM Segmentation per series: each mapped sign's probability map as one segment.

FRACTIONAL (PROBABILITY) segmentations through highdicom reference their source CT
images (by SOP Instance UID, on the sources' frame of reference), so the maps open over
the scan in 3D Slicer or OHIF. Signs are coded in a private scheme ('99CISL'), as DICOM
allows for concepts without a standard code.
"""
import copy
import logging
import warnings

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from cisl_jax import signs

# highdicom logs every module it copies at INFO; the terminal shows only progress.
logging.getLogger('highdicom').setLevel(logging.WARNING)

CODING_SCHEME = '99CISL'
SEG_FILE = 'seg_{index:03d}_{series}.dcm'
# Type 2 attributes (present, possibly empty) that highdicom copies from the first source
# image; anonymised scans (and the phantom) often drop them altogether.
_COPIED_TYPE2 = ('PatientID', 'PatientName', 'PatientBirthDate', 'PatientSex',
                 'AccessionNumber', 'StudyID', 'StudyDate', 'StudyTime')


def _with_type2(ds: pydicom.Dataset) -> pydicom.Dataset:
  """`ds`, or a copy with every attribute of _COPIED_TYPE2 it lacks set empty."""
  missing = [k for k in _COPIED_TYPE2 if k not in ds]
  if not missing:
    return ds
  ds = copy.deepcopy(ds)
  for k in missing:
    setattr(ds, k, '')
  return ds


def _description(number: int, sign: str) -> hd.seg.SegmentDescription:
  long_name = signs.LONG_NAMES[signs.SIGNS.index(sign)]
  return hd.seg.SegmentDescription(
      segment_number=number,
      segment_label=sign,
      segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
      segmented_property_type=hd.sr.CodedConcept(sign, CODING_SCHEME, long_name),
      algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
      algorithm_identification=hd.AlgorithmIdentificationSequence(
          name='cisl_jax predict', version='0.1.0',
          family=codes.cid7162.ArtificialIntelligence))


def segmentation(sources: list[pydicom.Dataset], maps: np.ndarray, names: list[str],
                 series_number: int, description: str) -> hd.seg.Segmentation:
  """A FRACTIONAL Segmentation of one series; maps (slices, S, rows, cols) in [0, 1]."""
  pixels = np.ascontiguousarray(np.moveaxis(np.clip(maps, 0.0, 1.0), 1, -1), np.float32)
  with warnings.catch_warnings():
    # highdicom warns when the copied PatientName has one component ("Lung_Dx-A0001" in
    # Lung-PET-CT-Dx): it is the scan's own value, copied as it is, not ours to rewrite.
    warnings.filterwarnings('ignore', message='The string .* is unlikely to represent the '
                            'intended person name', category=UserWarning)
    return hd.seg.Segmentation(
        source_images=[_with_type2(s) for s in sources],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        segment_descriptions=[_description(i + 1, n) for i, n in enumerate(names)],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer='cisl_jax',
        manufacturer_model_name='cisl_jax predict',
        software_versions='0.1.0',
        device_serial_number='none',
        content_description=description[:64],
        content_label='CISL_MAPS',
        omit_empty_frames=False)
