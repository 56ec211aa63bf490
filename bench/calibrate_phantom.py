"""Calibration of the phantom against real chest CT: lung-field patch statistics.

  PYTHONPATH=$PWD python bench/calibrate_phantom.py [--fixtures=../shared/fixtures]
      [--num_patients=24] [--seed=0] [--json=out.json]

Cuts 64x64 patches that lie inside the lung field (the project's lung mask, on every
slice alike) from phantom slices rendered in memory and from the real slices of
`<fixtures>/lidc_idri` and `<fixtures>/lung_pet_ct_dx`, read in place (never copied),
and compares per-patch statistics:
- hu_mean, hu_spread: mean and standard deviation of the parenchyma (pixels < -500 HU);
- grad_mean: mean gradient magnitude (HU per pixel, central differences);
- edge_sharpness: 99th percentile of the gradient over the patch's 1-99% HU range
  (1/px: the inverse width of its sharpest edges, independent of their contrast);
- nps_high_share: share of the (Hann-windowed, mean-removed) power spectrum above
  0.25 cycles/px;
- nps_peak: the frequency (cycles/px) where the radially averaged spectrum of the
  high-passed patch (minus its Gaussian blur of sigma 2 px) times f peaks: where the
  fine texture (noise, small structures) has its power; white noise peaks near 0.5,
  a soft kernel's ramp noise lower;
- bright_share: share of pixels above -300 HU (vessels, nodules, walls).
It prints Cohen's d (phantom minus real, pooled standard deviation) per statistic, and
the real-vs-real d between the two fixtures for scale. The target is |d| <= 1.0.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
from scipy import ndimage

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cisl_jax.data import lung_mask as lung_mask_lib  # pylint: disable=g-import-not-at-top
from cisl_jax.data.dicom import read_hu  # pylint: disable=g-import-not-at-top
from cisl_jax.data.sources import phantom  # pylint: disable=g-import-not-at-top

PATCH = 64
STATS = ('hu_mean', 'hu_spread', 'grad_mean', 'edge_sharpness', 'nps_high_share',
         'nps_peak', 'bright_share')
_F = np.fft.fftfreq(PATCH)
_RADIUS = np.hypot(_F[None, :], _F[:, None])
_HANN = np.outer(np.hanning(PATCH), np.hanning(PATCH)).astype(np.float32)
_BINS = np.linspace(0, 0.5, 17)


def patches_of(hu: np.ndarray, rng: np.random.Generator, per_slice: int,
               min_lung: float = 0.95) -> list[np.ndarray]:
  """Up to `per_slice` random 64x64 crops whose pixels are >= min_lung lung field."""
  mask = lung_mask_lib.lung_mask(hu)
  if mask.sum() < PATCH * PATCH:
    return []
  share = ndimage.uniform_filter(mask.astype(np.float32), PATCH, mode='constant')
  h = PATCH // 2
  ok = np.zeros_like(mask)
  ok[h:-h, h:-h] = share[h:-h, h:-h] >= min_lung
  ys, xs = np.nonzero(ok)
  if not len(ys):
    return []
  pick = rng.choice(len(ys), size=min(per_slice, len(ys)), replace=False)
  return [hu[y - h:y + h, x - h:x + h] for y, x in zip(ys[pick], xs[pick])]


def _radial(power):
  idx = np.digitize(_RADIUS.ravel(), _BINS) - 1
  sums = np.bincount(idx, power.ravel(), minlength=len(_BINS))[:len(_BINS) - 1]
  counts = np.bincount(idx, minlength=len(_BINS))[:len(_BINS) - 1]
  return sums / np.maximum(counts, 1)


def patch_stats(p: np.ndarray) -> dict[str, float]:
  """The statistics of one HU patch (see the module docstring)."""
  p = p.astype(np.float32)
  par = p[p < -500]
  gy, gx = np.gradient(p)
  g = np.hypot(gx, gy)
  lo, hi = np.percentile(p, [1, 99])
  spec = np.abs(np.fft.fft2((p - p.mean()) * _HANN)) ** 2
  spec[0, 0] = 0
  high = ndimage.gaussian_filter(p, 2.0)
  hp = np.abs(np.fft.fft2((p - high) * _HANN)) ** 2
  centres = 0.5 * (_BINS[1:] + _BINS[:-1])
  return dict(hu_mean=float(par.mean()) if len(par) else float('nan'),
              hu_spread=float(par.std()) if len(par) > 1 else float('nan'),
              grad_mean=float(g.mean()),
              edge_sharpness=float(np.percentile(g, 99) / max(hi - lo, 1.0)),
              nps_high_share=float(spec[_RADIUS > 0.25].sum() / max(spec.sum(), 1e-9)),
              nps_peak=float(centres[np.argmax(_radial(hp) * centres)]),
              bright_share=float((p > -300).mean()))


def table(patches: list[np.ndarray]) -> dict[str, np.ndarray]:
  rows = [patch_stats(p) for p in patches]
  return {k: np.array([r[k] for r in rows], np.float64) for k in STATS}


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
  a, b = a[np.isfinite(a)], b[np.isfinite(b)]
  pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) /
                   (len(a) + len(b) - 2))
  return float((a.mean() - b.mean()) / max(pooled, 1e-12))


def real_patches(folder: pathlib.Path, rng, per_slice: int) -> list[np.ndarray]:
  files = sorted(folder.rglob('*.dcm'))
  if not files:
    raise SystemExit(f'{folder}: no DICOM slices; pass --fixtures=PATH to the folder '
                     'holding lidc_idri/ and lung_pet_ct_dx/.')
  out = []
  for f in files:
    out += patches_of(read_hu(f), rng, per_slice)
  return out


def phantom_patches(seed: int, num_patients: int, rng, per_slice: int) -> list[np.ndarray]:
  out = []
  for patient, _, hu in phantom.iter_slices(seed=seed):
    if patient.index >= num_patients:
      break
    # The stored DICOM holds integer HU on a 12-bit range: measure what is written.
    out += patches_of(np.clip(np.rint(hu), -1024, 3071), rng, per_slice)
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--fixtures', default=str(REPO.parent / 'shared' / 'fixtures'))
  ap.add_argument('--num_patients', type=int, default=24,
                  help='phantom patients to render (of the default 120-patient layout)')
  ap.add_argument('--per_slice', type=int, default=6, help='patches per slice')
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--json', default=None, help='also write the figures here')
  args = ap.parse_args(argv)
  rng = np.random.default_rng(args.seed)
  fixtures = pathlib.Path(args.fixtures)
  sets = {'lidc_idri': real_patches(fixtures / 'lidc_idri', rng, args.per_slice),
          'lung_pet_ct_dx': real_patches(fixtures / 'lung_pet_ct_dx', rng, args.per_slice),
          'phantom': phantom_patches(args.seed, args.num_patients, rng, args.per_slice)}
  tabs = {k: table(v) for k, v in sets.items()}
  real = {k: np.concatenate([tabs['lidc_idri'][k], tabs['lung_pet_ct_dx'][k]]) for k in STATS}
  print(f"patches: phantom {len(sets['phantom'])}, lidc_idri {len(sets['lidc_idri'])}, "
        f"lung_pet_ct_dx {len(sets['lung_pet_ct_dx'])} (phantom: SYNTHETIC)")
  print(f"{'statistic':16s} {'phantom':>10s} {'real':>10s} {'d(ph-real)':>11s} "
        f"{'d(lidc-pet)':>12s}")
  out = {}
  for k in STATS:
    d = cohens_d(tabs['phantom'][k], real[k])
    rr = cohens_d(tabs['lidc_idri'][k], tabs['lung_pet_ct_dx'][k])
    out[k] = dict(phantom=float(np.nanmean(tabs['phantom'][k])),
                  real=float(np.nanmean(real[k])), d=d, d_real_real=rr)
    print(f'{k:16s} {out[k]["phantom"]:10.4g} {out[k]["real"]:10.4g} {d:11.2f} {rr:12.2f}')
  worst = max(abs(v['d']) for v in out.values())
  print(f'max |d| phantom vs real: {worst:.2f} (target <= 1.0)')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + '\n')


if __name__ == '__main__':
  main()
