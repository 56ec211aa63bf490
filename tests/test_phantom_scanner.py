"""Tests of the phantom's image formation: PSF width, noise spectrum, partial volume, seeds."""
import numpy as np
import pytest

from cisl_jax.data.sources import phantom
from cisl_jax.data.sources import phantom_anatomy as pa
from cisl_jax.data.sources import phantom_lung
from cisl_jax.data.sources import phantom_scanner as scanner


def _edge_sigma(img, row_from=20, row_to=-20):
  """Width (sigma, px) of a vertical edge: second moment of its line-spread function."""
  esf = img[row_from:row_to].mean(0)
  lsf = np.diff(esf)
  lsf = lsf / lsf.sum()
  x = np.arange(len(lsf)) + 0.5
  mu = (x * lsf).sum()
  return float(np.sqrt(((x - mu) ** 2 * lsf).sum()))


@pytest.mark.parametrize('fwhm', [0.9, 1.9])
def test_blur_of_a_drawn_edge_matches_the_kernel(fwhm):
  # A straight edge drawn as the painters draw (one anti-aliased segment, edge ~1 px).
  obj = np.full((96, 96), -900.0, np.float32)
  pa.paint_segments(obj, [(72.0, -40.0, 72.0, 140.0, 24.3, 24.3)], 40.0)
  scan = scanner.Scan(spacing=0.7, thickness=1.0, psf_fwhm=fwhm, noise_hu=0.0)
  out = scanner.image(obj, scan, np.random.default_rng(0))
  drawn = _edge_sigma(obj[:, 20:70])  # the anti-aliased edge alone: ~ 1/sqrt(12) px
  measured = _edge_sigma(out[:, 20:70])
  want = np.sqrt(scan.psf_sigma_px ** 2 + drawn ** 2)
  assert measured == pytest.approx(want, rel=0.05)
  assert scan.psf_sigma_px == pytest.approx(fwhm / 2.3548 / 0.7, rel=1e-3)


def _radial_nps(noise, bins):
  spec = np.abs(np.fft.fft2(noise)) ** 2 / noise.size
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(noise.shape[1]), np.fft.fftfreq(noise.shape[0])))
  return [spec[(f >= lo) & (f < hi)].mean() for lo, hi in zip(bins[:-1], bins[1:])]


def test_noise_has_the_ramp_shaped_spectrum_and_the_dose_level():
  rng = np.random.default_rng(1)
  bins = [0.0, 0.02, 0.06, 0.1, 0.2, 0.3, 0.45]
  soft = scanner.ct_noise(rng, (256, 256), 30.0, 1.2)
  sharp = scanner.ct_noise(rng, (256, 256), 30.0, 0.5)
  for n in (soft, sharp):
    assert n.std() == pytest.approx(30.0, rel=0.05)
    low, mid = _radial_nps(n, bins)[0], max(_radial_nps(n, bins)[1:])
    assert low < 0.35 * mid  # ramp: little power at low frequencies, unlike white noise
  # The softer kernel cuts the high frequencies: its spectrum peaks lower.
  ps, pp = _radial_nps(soft, bins), _radial_nps(sharp, bins)
  assert np.argmax(ps) < np.argmax(pp)
  assert ps[-1] < 0.1 * max(ps)
  # Neighbouring pixels: ramp noise is anti-correlated at short range after the kernel's
  # smoothing, white noise is not correlated at all; either way not the same pixel twice.
  assert abs(np.corrcoef(soft[:, 1:].ravel(), soft[:, :-1].ravel())[0, 1]) < 0.9


def test_partial_volume_and_scan_ranges():
  assert scanner.slab_contrast(1.0, 5.0) == pytest.approx(0.2)
  assert scanner.slab_contrast(3.0, 1.0) == 1.0
  scans = [phantom.patient_scan(0, i) for i in range(40)]
  assert all(0.6 <= s.spacing <= 0.9 and 1.0 <= s.thickness <= 5.0 for s in scans)
  assert len({s.thickness for s in scans}) >= 4  # thickness, kernel and dose vary
  assert np.ptp([s.psf_fwhm for s in scans]) > 0.5 and np.ptp([s.noise_hu for s in scans]) > 5
  # A thin vessel lying in a thick slab is fainter than in a thin one.
  thin, thick = (scanner.Scan(0.7, t, 1.2, 0.0) for t in (1.0, 5.0))
  segs = np.array([(10, 32, 54, 32, 1.0, 1.0)], np.float32)  # a 1.4 mm vessel
  peaks = []
  for scan in (thin, thick):
    img = np.full((64, 64), -900.0, np.float32)
    pa.paint_segments(img, phantom_lung.in_slab(segs, scan, np.random.default_rng(0), 1.0),
                      40.0)
    peaks.append(img[32, 32])
  assert peaks[1] < peaks[0] - 300


def test_same_seed_same_pixels_other_seed_differs():
  def first(seed):
    return next(phantom.iter_slices(seed=seed, num_patients=2, counts={'GGO': 2},
                                    num_oversized=0))
  (patient, _, a), (_, _, b), (_, _, c) = first(5), first(5), first(6)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).mean() > 10
  assert patient.scan == phantom.patient_scan(5, patient.index)


def test_a_vessel_tube_is_rounded_across_and_fades_where_it_leaves_the_slab():
  # A 6 px wide vessel rising from the slab's middle (z 0) to 8 px above it, in a slab
  # of half-thickness 2.5 px: it fills the slab at its axis where it starts, less
  # towards its border (a rounded, not a flat, profile), and nothing once it has left.
  img = np.full((32, 64), -900.0, np.float32)
  pa.paint_segments(img, [(8, 16, 56, 16, 3.0, 3.0, 1.0, 0.0, 8.0, 2.5)], 40.0)
  assert img[16, 10] == pytest.approx(40.0, abs=1)
  assert -900 + 300 < img[19, 10] < img[18, 10] < 40.0 - 50  # grey at the border
  assert img[16, 30] < img[16, 10] - 300  # fading as it rises out of the slab
  assert img[16, 50] == pytest.approx(-900.0)  # gone: 6.7 px up, past ht + r
