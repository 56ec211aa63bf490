"""Is a slice plausible CT? Air near -1000 HU and a body near 0..100 HU must be present.

A slice read with the wrong offset (a 16-bit PNG stored as HU + 1024 read with the
DeepLesion offset -32768, an NPY saved as HU + 1024, a DICOM with a wrong
RescaleIntercept) still has the right shape: every patch of it is clipped to black
by the HU window and a dataset of it trains to chance without an error. This check
refuses such a slice by name, with the offset that would make it CT.

One function for every reader: `check(hu, path, kind)` (slices.read_slice calls it for
DICOM, PNG and NPY; a source reading DICOM itself calls it too).
"""
import numpy as np

# Air outside the body and aerated lung; a little above -700 is still lung.
AIR_HU = (-1200.0, -700.0)
# Fat (-100) to soft tissue, blood and muscle (0..100), with noise around them.
TISSUE_HU = (-200.0, 200.0)
# Each must cover at least this fraction of the slice: a chest slice has far more
# (outside air and lungs: ~30-60 %, body wall and mediastinum: ~20-50 %).
MIN_FRACTION = 0.01
# Offsets that stored values commonly carry (HU + 1024, HU + 1000, DeepLesion HU + 32768,
# and the two confused); an estimated shift within SNAP_HU of one is reported as it.
COMMON_SHIFTS = (1024, 1000, 32768, 31744, 2048, 3024)
SNAP_HU = 100.0


class ImplausibleCT(ValueError):
  """A slice whose intensities are not Hounsfield units of a CT of a body."""


def _fractions(hu: np.ndarray) -> tuple[float, float]:
  air = np.mean((hu >= AIR_HU[0]) & (hu <= AIR_HU[1]))
  tissue = np.mean((hu >= TISSUE_HU[0]) & (hu <= TISSUE_HU[1]))
  return float(air), float(tissue)


def is_plausible(hu: np.ndarray) -> bool:
  air, tissue = _fractions(hu)
  return air >= MIN_FRACTION and tissue >= MIN_FRACTION


def likely_shift(hu: np.ndarray) -> float | None:
  """The number of HU to add to `hu` to make it plausible CT, or None if none does.

  Air is the darkest tissue and covers well over a fifth of a chest slice: the most
  frequent value (10 HU bins) among the darkest fifth of the pixels is taken as air
  and moved to -1000. The minimum value is left out: it may be padding outside the
  scanner's field of view.
  """
  values = hu[hu > hu.min()] if np.any(hu > hu.min()) else hu.ravel()
  dark = values[values <= np.percentile(values, 20)]
  counts, edges = np.histogram(dark, bins=max(1, int(np.ptp(dark) // 10) + 1))
  peak = int(np.argmax(counts))
  shift = -1000.0 - float(edges[peak] + edges[peak + 1]) / 2
  snapped = [c for common in COMMON_SHIFTS for c in (common, -common)
             if abs(shift - c) <= SNAP_HU]
  shift = float(min(snapped, key=lambda c: abs(shift - c)) if snapped else np.round(shift))
  return shift if shift and is_plausible(hu + np.float32(shift)) else None


def _fix(kind: str, shift: float | None, png_hu_offset: float | None) -> str:
  if shift is None:
    return ('no constant offset makes it look like CT: check that it is a CT slice in '
            'Hounsfield units (not normalised, windowed or another modality), or remove it '
            'or pass --skip_bad.')
  if kind == 'png':
    return (f'it looks stored with another offset: pass '
            f'--config.manifest.png_hu_offset={png_hu_offset + shift:g} '
            f'(now {png_hu_offset:g}; HU = stored value + offset).')
  if kind == 'npy':
    return (f'the array looks offset from HU (e.g. saved as HU {-shift:+g}): save '
            f'array {shift:+g} instead.')
  return (f'the HU from RescaleSlope/RescaleIntercept look offset by {-shift:+g}: check the '
          f'file\'s RescaleIntercept (adding {shift:+g} would make it CT).')


def check(hu: np.ndarray, path: str, kind: str, png_hu_offset: float | None = None) -> None:
  """Raises ImplausibleCT naming `path`, what is wrong and the likely offset.

  Args:
    hu: the slice in (what should be) Hounsfield units.
    path: the file, named in the message.
    kind: 'dicom', 'png' or 'npy' (picks the fix to suggest).
    png_hu_offset: the offset the PNG was read with (kind 'png').
  """
  air, tissue = _fractions(hu)
  if air >= MIN_FRACTION and tissue >= MIN_FRACTION:
    return
  p1, p50, p99 = np.percentile(hu, [1, 50, 99])
  wrong = []
  if air < MIN_FRACTION:
    wrong.append(f'{air:.1%} of pixels near air ({AIR_HU[0]:g}..{AIR_HU[1]:g} HU)')
  if tissue < MIN_FRACTION:
    wrong.append(f'{tissue:.1%} near soft tissue ({TISSUE_HU[0]:g}..{TISSUE_HU[1]:g} HU, '
                 'a body)')
  raise ImplausibleCT(
      f'{path}: intensities are not plausible CT: {" and ".join(wrong)}, need '
      f'{MIN_FRACTION:.0%} each (1st/50th/99th percentiles {p1:.0f}/{p50:.0f}/{p99:.0f} HU); '
      + _fix(kind, likely_shift(hu), png_hu_offset))
