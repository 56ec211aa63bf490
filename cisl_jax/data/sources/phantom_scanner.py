"""The phantom's scanner: what a CT scanner does to the object it images.

The anatomy and the signs are drawn as an object in HU (anti-aliased edges, so the
object is close to its analytic form at the pixel grid). `image` then applies, in
the order a scanner does:
- the reconstruction kernel's point-spread function: a Gaussian whose width (FWHM in
  mm) is drawn per patient, from sharp (lung) to soft (standard) kernels;
- quantum noise with CT's noise power spectrum: filtered back-projection shapes white
  detector noise by the ramp filter |f| and the kernel's apodisation, so the noise
  power is NPS(f) ~ f * MTF(f)^2: little power at low frequencies, a peak at mid
  frequencies, none beyond the kernel's cut-off; its level is set by the dose, drawn
  per patient.
Partial volume from the slice thickness acts on the object itself (a vessel thinner
than the slab is averaged with the lung around it); `slab_contrast` gives that
factor to the painters.
"""
import dataclasses
import functools
import math

import numpy as np
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclasses.dataclass(frozen=True)
class Scan:
  """One patient's acquisition: pixel spacing, slice thickness, kernel and dose."""
  spacing: float  # mm per pixel
  thickness: float  # mm, slab averaged into one slice
  psf_fwhm: float  # mm, FWHM of the kernel's point-spread function
  noise_hu: float  # standard deviation of the noise in HU (lower dose: more)

  @property
  def psf_sigma_px(self) -> float:
    return self.psf_fwhm / FWHM_PER_SIGMA / self.spacing


def draw_scan(rng: np.random.Generator, size: int, noise_hu: float) -> Scan:
  """A patient's acquisition; spacing scales with 512 / size (the same field of view)."""
  spacing = float(rng.uniform(0.6, 0.9)) * 512 / size
  thickness = float(rng.choice([1.0, 1.25, 2.0, 2.5, 3.0, 5.0]))
  psf = float(rng.uniform(0.9, 1.9)) * max(1.0, 512 / size * 0.5)
  dose = float(np.exp(rng.normal(0.0, 0.3)))  # log-normal: a few low-dose scans
  return Scan(spacing=spacing, thickness=thickness, psf_fwhm=psf, noise_hu=noise_hu * dose)


def slab_contrast(diameter_mm, thickness_mm):
  """Share of a slab that a structure of `diameter_mm` lying in it fills (<= 1)."""
  return np.minimum(1.0, np.asarray(diameter_mm, np.float32) / np.float32(thickness_mm))


@functools.lru_cache(maxsize=16)
def _nps_filter(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
  """Amplitude filter sqrt(NPS) on the rfft2 grid, scaled to unit output variance."""
  fy = np.fft.fftfreq(shape[0])[:, None]
  fx = np.fft.rfftfreq(shape[1])[None, :]
  f = np.sqrt(fx * fx + fy * fy)
  mtf = np.exp(-2.0 * (math.pi * sigma_px * f) ** 2)  # Fourier transform of the PSF
  amp = np.sqrt(f) * mtf
  # Unit variance: Parseval over the full spectrum (rfft halves count twice, but for
  # the DC and Nyquist columns).
  w = np.full(amp.shape, 2.0)
  w[:, 0] = 1.0
  if shape[1] % 2 == 0:
    w[:, -1] = 1.0
  power = float((w * amp * amp).sum()) / (shape[0] * shape[1])
  return (amp / math.sqrt(power)).astype(np.float32)


def ct_noise(rng: np.random.Generator, shape, sigma_hu: float, sigma_px: float) -> np.ndarray:
  """Noise of standard deviation `sigma_hu` with the ramp-shaped NPS of a kernel."""
  white = rng.standard_normal(shape, dtype=np.float32)
  spec = np.fft.rfft2(white) * _nps_filter(tuple(shape), round(float(sigma_px), 3))
  return (sigma_hu * np.fft.irfft2(spec, s=shape)).astype(np.float32)


def blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
  """The kernel's PSF (Gaussian, sigma in pixels); edges of the slice are reflected."""
  return ndimage.gaussian_filter(img, sigma_px, mode='nearest', truncate=3.5)


def image(obj: np.ndarray, scan: Scan, rng: np.random.Generator) -> np.ndarray:
  """The reconstructed slice (HU) of an object (HU): PSF blur, then CT noise."""
  out = blur(obj, scan.psf_sigma_px)
  if scan.noise_hu > 0:
    out += ct_noise(rng, obj.shape, scan.noise_hu, scan.psf_sigma_px)
  return out
