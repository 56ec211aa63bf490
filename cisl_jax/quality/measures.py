"""The measures of a generated patch set: fidelity, coverage, diversity, memorisation.

All measures work on features of a classifier trained on REAL CT patches (not an
ImageNet network, whose features know nothing of Hounsfield units); the extractor is
any function `images[N,64,64,1] -> features[N,D]`, e.g. `classifier_features(...)`.

- Fréchet distance (FD) between the real and generated feature Gaussians, beside the
  FD between the real training and real held-out patches: the floor that sampling
  noise alone reaches with sets this small.
- Precision and recall of the generated set against the real manifold, with k-nearest
  neighbour balls (Kynkäänniemi et al. 2019, "Improved precision and recall metric").
- Diversity: mean pairwise distance within the generated set over that within the
  real set; a ratio far below 1 is mode collapse.
- Memorisation: the share of generated patches whose nearest real TRAINING patch is
  nearer than every real HELD-OUT patch. A generator that samples the distribution
  without copying is at chance, n_train / (n_train + n_held) (the nearest of all
  real patches is equally likely to be any of them); a copying one is near 1. It is
  measured in feature space and in pixel space (copies are exact in pixels).

`evaluate` computes everything per sign and overall. The package's other modules:
section.py writes the report section, stage.py runs the quality stage of a workdir.
"""
from typing import Callable

import numpy as np

from cisl_jax import signs as signs_lib

FeatureFn = Callable[[np.ndarray], np.ndarray]


def _as_2d(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  return x.reshape(x.shape[0], -1)


def pairwise_distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
  """Euclidean distances [len(a), len(b)] between rows, in float64, chunked."""
  a, b = _as_2d(a), _as_2d(b)
  b_sq = np.sum(b * b, axis=1)
  out = np.empty((a.shape[0], b.shape[0]))
  for i in range(0, a.shape[0], chunk):
    ai = a[i:i + chunk]
    d2 = np.sum(ai * ai, axis=1)[:, None] + b_sq[None, :] - 2.0 * ai @ b.T
    out[i:i + chunk] = np.sqrt(np.maximum(d2, 0.0))
  return out


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((m + m.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(real: np.ndarray, gen: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets (rows = samples).

  Uses tr(sqrt(S1 S2)) = tr(sqrt(S1^1/2 S2 S1^1/2)), a symmetric PSD square root by
  eigendecomposition: stable where the covariances are singular (few samples).
  """
  real, gen = _as_2d(real), _as_2d(gen)
  if len(real) < 2 or len(gen) < 2:
    return float('nan')
  mu1, mu2 = real.mean(0), gen.mean(0)
  s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
  s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
  root1 = _sqrtm_psd(s1)
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0.0, None)).sum()
  fd = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross
  return float(max(fd, 0.0))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
  """Distance from each row to its k-th nearest other row."""
  d = pairwise_distances(x, x)
  np.fill_diagonal(d, np.inf)
  return np.partition(d, k - 1, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
  """k-NN precision and recall (Kynkäänniemi et al. 2019).

  Precision: share of generated samples inside the real manifold (the union of balls
  around each real sample reaching its k-th real neighbour); recall: share of real
  samples inside the generated manifold. NaN when a set has k samples or fewer.
  """
  real, gen = _as_2d(real), _as_2d(gen)
  if len(real) <= k or len(gen) <= k:
    return float('nan'), float('nan')
  cross = pairwise_distances(gen, real)  # [G, R]
  precision = np.mean(np.any(cross <= _knn_radii(real, k)[None, :], axis=1))
  recall = np.mean(np.any(cross.T <= _knn_radii(gen, k)[None, :], axis=1))
  return float(precision), float(recall)


def mean_pairwise_distance(x: np.ndarray, max_items: int = 2000, seed: int = 0) -> float:
  """Mean distance between distinct rows (a seeded subsample of max_items rows)."""
  x = _as_2d(x)
  if len(x) > max_items:
    x = x[np.random.default_rng(seed).choice(len(x), max_items, replace=False)]
  if len(x) < 2:
    return float('nan')
  d = pairwise_distances(x, x)
  n = len(x)
  return float(d.sum() / (n * (n - 1)))


def diversity(real: np.ndarray, gen: np.ndarray, seed: int = 0) -> dict:
  """Mean pairwise distance of the generated and real sets, and their ratio."""
  g, r = mean_pairwise_distance(gen, seed=seed), mean_pairwise_distance(real, seed=seed)
  return {'generated': g, 'real': r, 'ratio': g / r if r > 0 else float('nan')}


def memorisation(gen: np.ndarray, train: np.ndarray, held: np.ndarray) -> dict:
  """Share of generated rows whose nearest training row beats every held-out row.

  Returns share, chance (n_train / (n_train + n_held)), and per generated row:
  d_train, d_held (distances to the nearest of each) and nearest_train,
  nearest_held (their indices).
  """
  gen, train, held = _as_2d(gen), _as_2d(train), _as_2d(held)
  if len(gen) == 0 or len(train) == 0 or len(held) == 0:
    nan = float('nan')
    return {'share': nan, 'chance': nan, 'd_train': np.zeros(0), 'd_held': np.zeros(0),
            'nearest_train': np.zeros(0, int), 'nearest_held': np.zeros(0, int)}
  dt, dh = pairwise_distances(gen, train), pairwise_distances(gen, held)
  it, ih = dt.argmin(1), dh.argmin(1)
  d_train, d_held = dt[np.arange(len(gen)), it], dh[np.arange(len(gen)), ih]
  return {'share': float(np.mean(d_train < d_held)),
          'chance': len(train) / (len(train) + len(held)),
          'd_train': d_train, 'd_held': d_held, 'nearest_train': it, 'nearest_held': ih}


def extract_features(feature_fn: FeatureFn, images: np.ndarray,
                     batch_size: int = 256) -> np.ndarray:
  """Runs feature_fn over images in batches; returns float64 [N, D]."""
  images = np.asarray(images, np.float32)
  if len(images) == 0:
    return np.zeros((0, 0))
  parts = [np.asarray(feature_fn(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
  return _as_2d(np.concatenate(parts))


def _measures(tr, ho, ge, tr_px, ho_px, ge_px, k, seed):
  precision, recall = precision_recall(tr, ge, k)
  mem = memorisation(ge, tr, ho)
  mem_px = memorisation(ge_px, tr_px, ho_px)
  return {
      'num_train': len(tr), 'num_held_out': len(ho), 'num_generated': len(ge),
      'fd': frechet_distance(tr, ge),
      'fd_real_train_vs_held_out': frechet_distance(tr, ho),
      'precision': precision, 'recall': recall,
      'diversity': diversity(tr, ge, seed),
      'memorisation': {'share': mem['share'], 'chance': mem['chance'],
                       'pixel_share': mem_px['share']},
  }, mem


def evaluate(feature_fn: FeatureFn, train_images: np.ndarray, train_labels: np.ndarray,
             held_images: np.ndarray, held_labels: np.ndarray, gen_images: np.ndarray,
             gen_labels: np.ndarray, *, k: int = 3, max_generated: int = 1000,
             num_suspicious: int = 8, seed: int = 0) -> dict:
  """All measures per sign and overall, on features of the given extractor.

  Args:
    feature_fn: images [B,64,64,1] in [-1,1] -> features [B,D].
    train_images, train_labels: the real patches the generator was trained on.
    held_images, held_labels: real held-out patches (never seen by the generator).
    gen_images, gen_labels: the generated set (label codes 0-8).
    k: neighbours for precision/recall.
    max_generated: generated patches used per sign (a seeded subsample), to bound cost.
    num_suspicious: rows of the figure: every measured sign's most suspicious patch,
      then the next most suspicious ones up to this many rows.
    seed: subsampling seed.

  Returns:
    {'per_sign': {sign: measures}, 'overall': measures, 'suspicious': [...],
    'skipped_signs': {sign: why not measured} (every sign not in per_sign)} where
    'suspicious' rows hold the generated, nearest training and nearest held-out images
    (numpy, not JSON): each sign's smallest d_train / d_held (feature space) first,
    then the rest by that ratio.
  """
  rng = np.random.default_rng(seed)
  train_labels, held_labels = np.asarray(train_labels), np.asarray(held_labels)
  gen_labels = np.asarray(gen_labels)
  keep = []
  for s in range(signs_lib.NUM_SIGNS):
    idx = np.flatnonzero(gen_labels == s)
    if len(idx) > max_generated:
      idx = np.sort(rng.choice(idx, max_generated, replace=False))
    keep.append(idx)
  keep = np.concatenate(keep)
  gen_images, gen_labels = np.asarray(gen_images)[keep], gen_labels[keep]
  sign_mask = lambda l: l < signs_lib.NUM_SIGNS
  t_keep, h_keep = sign_mask(train_labels), sign_mask(held_labels)
  train_images, train_labels = np.asarray(train_images)[t_keep], train_labels[t_keep]
  held_images, held_labels = np.asarray(held_images)[h_keep], held_labels[h_keep]

  ft, fh, fg = (extract_features(feature_fn, x)
                for x in (train_images, held_images, gen_images))
  pt, ph, pg = (_as_2d(x) for x in (train_images, held_images, gen_images))
  per_sign, rows, skipped = {}, [], {}
  for s, name in enumerate(signs_lib.SIGNS):
    t, h, g = train_labels == s, held_labels == s, gen_labels == s
    # A sign absent from one of the three sets cannot be measured (small data of one's
    # own): say which and why, rather than fail on an empty array.
    absent = [what for what, m in (('real training', t), ('real held-out', h),
                                   ('generated', g)) if not m.any()]
    if absent:
      skipped[name] = f'no {" and no ".join(absent)} patches'
      continue
    per_sign[name], mem = _measures(ft[t], fh[h], fg[g], pt[t], ph[h], pg[g], k, seed)
    # Suspects are ranked within their sign: a GGO copy is a copy of a GGO patch.
    gi, ti, hi = np.flatnonzero(g), np.flatnonzero(t), np.flatnonzero(h)
    for j in range(len(mem['d_train'])):
      rows.append((mem['d_train'][j] / max(mem['d_held'][j], 1e-12), name, gi[j],
                   ti[mem['nearest_train'][j]], hi[mem['nearest_held'][j]],
                   mem['d_train'][j], mem['d_held'][j]))
  overall, _ = _measures(ft, fh, fg, pt, ph, pg, k, seed)
  # Overall memorisation: the per-sign shares weighted by generated counts.
  shares = [(m['num_generated'], m['memorisation']) for m in per_sign.values()
            if not np.isnan(m['memorisation']['share'])]
  if shares:
    n = sum(w for w, _ in shares)
    for key in ('share', 'chance', 'pixel_share'):
      overall['memorisation'][key] = float(sum(w * m[key] for w, m in shares) / n)
  # The figure shows each measured sign's most suspicious patch (most suspicious sign
  # first), whatever num_suspicious says, so that no sign is dropped silently; then the
  # rest by ratio up to num_suspicious rows, so that one sign's near-twins do not fill it.
  rows.sort(key=lambda r: r[0])
  firsts = list({r[1]: r for r in reversed(rows)}.values())[::-1]
  firsts.sort(key=lambda r: r[0])
  rest = [r for r in rows if not any(r is f for f in firsts)]
  rows = firsts + rest[:max(0, num_suspicious - len(firsts))]
  suspicious = [{'sign': name, 'ratio': float(ratio), 'd_train': float(dt),
                 'd_held': float(dh), 'generated': gen_images[gi],
                 'nearest_train': train_images[ti], 'nearest_held': held_images[hi]}
                for ratio, name, gi, ti, hi, dt, dh in rows]
  return {'per_sign': per_sign, 'overall': overall, 'suspicious': suspicious, 'k': k,
          'skipped_signs': skipped}
