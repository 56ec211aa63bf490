"""What changes from slice to slice of a phantom patient's lungs, drawn as an object.

`render_object(anat, base, rng, scan)` adds to the patient's static tissues:
- parenchyma texture at several scales (acini, secondary lobules, perfusion);
- vessels: branching, tapering trees lying in the slice, and vessels crossing it,
  cut as ellipses whose length grows with the slice thickness and their obliquity;
  both averaged with the lung around them where they are thinner than the slab
  (partial volume, `phantom_scanner.slab_contrast`), with a faint halo at their
  obliquely cut border; they grow towards the hila;
- the fine vascular network: many short, faint strands, most of the lung's texture;
- airways as thin-walled dark tubes and rings beside their arteries;
- fissures, sometimes thickened;
- confounders of normal lung that a reader must tell from signs: vessel knots and
  bifurcations that look like small nodules, scars, bands of subsegmental
  atelectasis, small paraseptal air spaces.
Sizes are in units of 0.7 mm times `anat.scale` (pixels per 0.7 mm).
"""
import functools
import math

import numpy as np
from scipy import ndimage

from cisl_jax.data.sources import phantom_anatomy as pa
from cisl_jax.data.sources import phantom_scanner as scanner_lib
from cisl_jax.data.sources import phantom_shapes as sh


# Parenchyma texture: (HU standard deviation, correlation length in 0.7 mm units) of
# acinar, lobular and perfusion-scale variation.
TEXTURE = ((11.0, 0.7), (12.0, 2.0), (10.0, 5.0))


@functools.lru_cache(maxsize=16)
def _texture_filter(size: int, scale: float) -> np.ndarray:
  """rfft2 amplitude whose noise is the sum of TEXTURE's independent Gaussian fields."""
  fy = np.fft.fftfreq(size)[:, None]
  fx = np.fft.rfftfreq(size)[None, :]
  f2 = fx * fx + fy * fy
  power = np.zeros(f2.shape)
  for sd, length in TEXTURE:
    sigma = length * scale
    g2 = np.exp(-4.0 * (math.pi * sigma) ** 2 * f2)  # |Gaussian transfer|^2
    power += sd * sd * g2 / (g2.sum() * 2 / size ** 2)  # each field: variance sd^2
  return np.sqrt(power).astype(np.float32)


def _texture(rng, anat):
  """Multi-scale parenchyma texture (one FFT; the fields' variances add)."""
  white = rng.standard_normal((anat.size, anat.size), dtype=np.float32)
  spec = np.fft.rfft2(white) * _texture_filter(anat.size, round(anat.scale, 3))
  return np.fft.irfft2(spec, s=white.shape).astype(np.float32)


def _points(anat, min_dist):
  """Lung pixels (ys, xs) at least `min_dist` px from the lung border (cached)."""
  cache = anat.__dict__.setdefault('_points', {})
  if min_dist not in cache:
    cache[min_dist] = np.nonzero(anat.dist > min_dist)
  return cache[min_dist]


def height_field(rng, anat, scan):
  """Where vessels lying in the slice run in depth: z(x, y) in px off the slab's middle.

  A vessel is never exactly in the slice's plane: it rises and sinks through the slab
  over a few cm, so along its run it fills more or less of the slab and fades out
  where it leaves it (short fragments in thin slices, long runs in thick ones). One
  smooth random field per slice (cells of ~12 mm, sd 0.5-1.1 mm) gives every
  connected branch a continuous height.
  """
  n = 28
  coarse = rng.standard_normal((n, n)).astype(np.float32)
  sd = rng.uniform(0.5, 1.1) / scan.spacing
  step = (anat.size - 1) / (n - 1)

  def z(x, y):
    pts = np.stack([np.asarray(y, np.float32) / step, np.asarray(x, np.float32) / step])
    return sd * ndimage.map_coordinates(coarse, pts, order=1, mode='nearest')
  return z


def in_slab(segs, scan, rng, lo=0.55, z=None):
  """Appends the slab terms of in-plane tubes (`pa.paint_segments`' 10 columns).

  The share of the slab a tube fills follows from its radius and height `z(x, y)`
  (a height_field; none: centred in the slab); a random factor of lo-1 stands for
  how obliquely it runs within the slab.
  """
  segs = np.asarray(segs, np.float32).reshape(-1, 6)
  w = rng.uniform(lo, 1.0, len(segs))
  if z is None:
    z0 = z1 = np.zeros(len(segs))
  else:
    z0, z1 = z(segs[:, 0], segs[:, 1]), z(segs[:, 2], segs[:, 3])
  ht = np.full(len(segs), 0.5 * scan.thickness / scan.spacing)
  return np.concatenate([segs, np.stack([w, z0, z1, ht], 1).astype(np.float32)], 1)


def _flat_in_slab(segs, scan, rng, lo):
  """Flat-profile partial-volume weight (airway walls, whose lumen is painted over)."""
  segs = np.asarray(segs, np.float32).reshape(-1, 6)
  d_mm = (segs[:, 4] + segs[:, 5]) * scan.spacing  # mean diameter
  w = scanner_lib.slab_contrast(d_mm, scan.thickness) * rng.uniform(lo, 1.0, len(segs))
  return np.concatenate([segs, w[:, None].astype(np.float32)], 1)


def crossing_vessels(rng, x, y, r, toward, scan):
  """Vessels crossing the slab at (x, y): ellipse-like segments with their slab weight.

  A vessel of diameter D whose axis makes the angle phi with the slab's normal shows
  as a streak of length T*tan(phi) (T: thickness) and fills D / (T*sin(phi)) of the
  slab's depth where it passes (at most all of it). `toward`: in-plane direction of
  the vessels (radial from the hilum), jittered.
  """
  n = len(x)
  # Directions near the slab's plane are the in-plane runs drawn as trees, so cos(phi)
  # is uniform (isotropic) over the steeper ones only.
  cos_phi = rng.uniform(0.75, 1.0, n)
  sin_phi = np.sqrt(1 - cos_phi ** 2)
  half = 0.5 * scan.thickness * sin_phi / cos_phi / scan.spacing
  a = toward + rng.normal(0, 0.5, n)
  dx, dy = half * np.cos(a), half * np.sin(a)
  # From the centre out to both ends, narrowing: the oblique cut of a cylinder fills
  # less of the slab towards its ends, so the streak is a spindle, not a pill. Across
  # it, the chord 2*sqrt(r^2 - d^2) of the vessel over T*sin(phi) is the depth filled
  # (a tube of that half-thickness): full at the axis of a thick vessel, grey at its
  # border, and a thin one grey throughout.
  tip = r * rng.uniform(0.45, 0.75, n)
  ht = np.maximum(0.5, 0.5 * scan.thickness * sin_phi / scan.spacing)
  one, zero = np.ones(n), np.zeros(n)
  out = [np.stack([x, y, x + sx * dx, y + sx * dy, r, tip, one, zero, zero, ht], 1)
         for sx in (-1, 1)]
  return np.concatenate(out).astype(np.float32)


def _vessels(img, anat, rng, scan, lungf, hu, z):
  s = anat.scale
  ys, xs = _points(anat, 4 * s)
  segs, airways = [], []
  for (hx, hy), (mx, my) in zip(anat.hila, anat.centroids):
    base_angle = math.atan2(my - hy, mx - hx)
    # Lobar and segmental arteries leave the hilum 4-8 mm wide.
    starts = [(hx, hy, base_angle + rng.uniform(-1.3, 1.3), rng.uniform(2.8, 5.0) * s, 8)
              for _ in range(rng.integers(1, 4))]
    # Short twigs all over the lung: small vessels run in the slab only for a few mm.
    for i in rng.choice(len(xs), size=int(rng.integers(18, 34)), replace=False):
      x, y = float(xs[i]), float(ys[i])
      if (anat.lung[ys[i], xs[i]] == 1) != (hx < anat.geo['cx']):
        continue
      d = math.hypot(x - hx, y - hy)
      starts.append((x, y, math.atan2(y - hy, x - hx) + rng.normal(0, 0.4),
                     (0.5 + 1.6 * math.exp(-d / (60 * s))) * s * rng.uniform(0.7, 1.2),
                     int(rng.integers(1, 5))))
    for x, y, angle, radius, max_segments in starts:
      tree = pa.vessel_tree(rng, anat, x, y, angle, radius, max_segments)
      segs += tree
      if tree and radius > 1.6 * s and rng.random() < 0.6:  # its bronchus beside it
        side = rng.choice([-1.0, 1.0])
        for ax, ay, bx, by, r0, r1 in tree[:3]:  # along the first (curved) branch
          nx, ny = -(by - ay), bx - ax
          n = side * (math.hypot(nx, ny) + 1e-6)
          off = r0 + 2.2 * s
          airways.append((ax + off * nx / n, ay + off * ny / n, bx + off * nx / n,
                          by + off * ny / n, 0.9 * r0, 0.9 * r1))
  segs = in_slab(segs, scan, rng, z=z)
  halo = segs.copy()  # the partial-volumed border of a vessel lying in the slab
  halo[:, 4:6] = halo[:, 4:6] * 1.25 + 0.2
  halo[:, 6] *= 0.25
  pa.paint_segments(img, halo, hu, lungf)
  pa.paint_segments(img, segs, hu, lungf)
  _fine_vessels(img, anat, rng, scan, lungf, hu, z)
  # Vessels crossing the slice, larger towards the hila: fewer than the fine network's
  # strands, as most small vessels run obliquely and show as short streaks.
  pick = rng.choice(len(xs), size=int(rng.integers(28, 56)), replace=False)
  dx, dy = xs[pick].astype(np.float32), ys[pick].astype(np.float32)
  d_hil = np.minimum(*[np.hypot(dx - hx, dy - hy) for hx, hy in anat.hila])
  near = np.argmin([np.hypot(dx - hx, dy - hy) for hx, hy in anat.hila], 0)
  toward = np.arctan2(dy - np.array(anat.hila)[near, 1], dx - np.array(anat.hila)[near, 0])
  dr = (0.45 + 3.2 * np.exp(-d_hil / (80 * s)) * rng.uniform(0.5, 1.3, len(dx))) * s
  cross = crossing_vessels(rng, dx, dy, dr, toward, scan)
  # Partial volume at the vessel's oblique border: a faint halo around a denser core,
  # not a crisp disc.
  halo = cross.copy()
  halo[:, 4:6] *= rng.uniform(1.3, 1.7, (len(halo), 1))
  halo[:, 6] *= 0.3
  pa.paint_segments(img, halo, hu, lungf)
  cross[:, 6] *= rng.uniform(0.7, 1.0, len(cross))
  pa.paint_segments(img, cross, hu, lungf)
  # Bronchi cut across beside the larger crossing arteries: rings with air inside.
  big = np.flatnonzero(dr > 1.5 * s)[:int(rng.integers(4, 14))]
  ang = rng.uniform(0, 2 * math.pi, len(big))
  rb = dr[big] * rng.uniform(0.7, 1.0, len(big))
  bx = dx[big] + (dr[big] + rb + 1.5 * s) * np.cos(ang)
  by = dy[big] + (dr[big] + rb + 1.5 * s) * np.sin(ang)
  walls = np.array(airways, np.float32).reshape(-1, 6)
  lumens = walls.copy()
  walls[:, 4:] += 0.8 * s
  wall_hu = float(rng.uniform(-250, -50))
  pa.paint_segments(img, _flat_in_slab(walls, scan, rng, 0.8), wall_hu, lungf)
  pa.paint_discs(img, bx, by, rb + 0.8 * s, wall_hu, lungf)
  pa.paint_segments(img, lumens, -980.0, lungf)
  pa.paint_discs(img, bx, by, rb, -980.0, lungf)


def _fine_vessels(img, anat, rng, scan, lungf, hu, z):
  """The fine vascular network: many short, faint, tapering strands, mostly radial.

  Vessels under ~1.5 mm fill a fraction of the slab and of a pixel, so on real scans
  they show as a soft mesh of faint lines rather than as dots; that mesh is most of
  the lung's visible texture. Drawn vectorised: two bent segments per strand, some
  with a side branch.
  """
  s = anat.scale
  ys, xs = _points(anat, 2 * s)
  n = int(len(xs) / (250 * s * s) * rng.uniform(0.7, 1.3))
  if n < 1:
    return
  i = rng.integers(0, len(xs), n)
  x, y = xs[i].astype(np.float32), ys[i].astype(np.float32)
  hil = np.array(anat.hila, np.float32)
  d = np.hypot(x[:, None] - hil[:, 0], y[:, None] - hil[:, 1])
  near = np.argmin(d, 1)
  a = np.arctan2(y - hil[near, 1], x - hil[near, 0]) + rng.normal(0, 0.55, n)
  # Thinner and fainter towards the pleura (far from the hilum).
  r0 = (0.4 + 0.6 * np.exp(-d.min(1) / (90 * s)) * rng.uniform(0.6, 1.4, n)) * s
  length = rng.uniform(4, 14, n) * s
  # A curve of three pieces turning the same way (as vessel_tree's branches), tapering.
  turn = rng.normal(0, 0.3, n)
  tip = 0.22 * s * np.ones(n, np.float32)
  radii = [r0, 0.8 * r0, 0.6 * r0, tip]
  segs, pts = [], [(x, y)]
  for k in range(3):
    a = a + turn + rng.normal(0, 0.08, n)
    px, py = pts[-1]
    pts.append((px + length / 3 * np.cos(a), py + length / 3 * np.sin(a)))
    segs.append(np.stack([px, py, *pts[-1], radii[k], radii[k + 1]], 1))
  side = rng.random(n) < 0.4
  (xm, ym), bend = pts[1], a
  b = bend[side] + rng.choice([-1, 1], side.sum()) * rng.uniform(0.4, 0.9, side.sum())
  lb = 0.4 * length[side]
  segs.append(np.stack([xm[side], ym[side], xm[side] + lb * np.cos(b), ym[side] + lb * np.sin(b),
                        0.6 * r0[side], tip[side]], 1))
  segs = in_slab(np.concatenate(segs), scan, rng, 0.5, z)
  pa.paint_segments(img, segs, hu, lungf)


def _subpleural(img, anat, rng, scan, lungf, hu, z):
  """Small vessels and septa that reach the pleura: short faint strands and dots.

  The outer centimetre of the lung is not empty: the last branches of the arteries
  and the veins in the interlobular septa run up to the pleura, mostly across it.
  """
  s = anat.scale
  ys, xs = _pleura_points(anat)
  n = int(len(xs) / (2 * s) / (18 * s) * rng.uniform(0.7, 1.3))  # one per ~13 mm
  if n < 1:
    return
  i = rng.integers(0, len(xs), n)
  gy, gx = _inward(anat)
  a = np.arctan2(gy[ys[i], xs[i]], gx[ys[i], xs[i]]) + rng.normal(0, 0.6, n)
  x0, y0 = xs[i] + 1.0 * np.cos(a), ys[i] + 1.0 * np.sin(a)
  length = rng.uniform(4, 12, n) * s
  bend = a + rng.normal(0, 0.3, n)
  xm, ym = x0 + 0.5 * length * np.cos(a), y0 + 0.5 * length * np.sin(a)
  x1, y1 = xm + 0.5 * length * np.cos(bend), ym + 0.5 * length * np.sin(bend)
  r0 = rng.uniform(0.3, 0.6, n) * s
  segs = np.concatenate([np.stack([x0, y0, xm, ym, 0.7 * r0, r0], 1),
                         np.stack([xm, ym, x1, y1, r0, 0.8 * r0], 1)])
  pa.paint_segments(img, in_slab(segs, scan, rng, 0.4, z), hu, lungf)


def _pleura_points(anat):
  """Lung pixels within 2 units of the pleura (cached)."""
  cache = anat.__dict__.setdefault('_points', {})
  if 'pleura' not in cache:
    cache['pleura'] = np.nonzero((anat.dist > 0) & (anat.dist < 2 * anat.scale))
  return cache['pleura']


def _inward(anat):
  """The distance map's gradient (gy, gx): into the lung from its border (cached)."""
  cache = anat.__dict__.setdefault('_points', {})
  if 'inward' not in cache:
    cache['inward'] = np.gradient(anat.dist)
  return cache['inward']


def _fissures(img, anat, rng, scan, lungf):
  """Fissures: thin faint curved lines from near the hilum to the pleura."""
  s = anat.scale
  for lab in (0, 1):
    if rng.random() > 0.65:
      continue
    (hx, hy), (mx, my) = anat.hila[lab], anat.centroids[lab]
    ang = math.atan2(my - hy, mx - hx) + rng.uniform(-0.9, 0.9)
    bend = rng.uniform(-0.006, 0.006) / s
    thick = rng.random() < 0.25  # a thickened fissure: a confounder of PI and OP
    r = (rng.uniform(0.8, 1.4) if thick else 0.45) * s
    hu = rng.uniform(-350, -100) if thick else rng.uniform(-700, -450)
    pts, x, y = [], hx, hy
    for _ in range(24):
      nx_, ny_ = x + 9 * s * math.cos(ang), y + 9 * s * math.sin(ang)
      pts.append((x, y, nx_, ny_, r, r, 1.0))
      x, y, ang = nx_, ny_, ang + bend * 9 * s
    pa.paint_segments(img, pts, hu, lungf)


def _confounders(img, anat, rng, scan, lungf, hu, z):
  """Normal findings that resemble signs: vessel knots, scars, bands, air spaces."""
  s = anat.scale
  ys, xs = _points(anat, 6 * s)
  if not len(xs):
    return
  def spot():
    i = rng.integers(len(xs))
    return float(xs[i]), float(ys[i])
  # Vessel knots: a vessel running obliquely through the slab where it forks or bends
  # shows as a short oval blob, its branches as tapering curved vessels leaving it.
  for _ in range(rng.poisson(3.0)):
    x, y = spot()
    r = rng.uniform(1.8, 5.0) * s
    a = rng.uniform(0, 2 * math.pi)
    half = rng.uniform(0, 1.2) * r
    arms = []
    for t in [0.0, math.pi + rng.uniform(-0.5, 0.5)] + list(rng.uniform(0.5, 2.6, rng.integers(0, 2))):
      arms += pa.vessel_tree(rng, anat, x, y, a + t, rng.uniform(0.4, 0.65) * r,
                             int(rng.integers(1, 4)))
    pa.paint_segments(img, in_slab(arms, scan, rng, z=z), hu, lungf)
    pa.paint_segments(img, [(x - half * math.cos(a), y - half * math.sin(a), x + half * math.cos(a),
                             y + half * math.sin(a), r, r * rng.uniform(0.7, 1.0),
                             rng.uniform(0.6, 1.0))], hu, lungf)
  _small_nodules(img, anat, rng, scan, lungf, spot)
  # Scars: irregular linear strands of fibrosis; half start at the pleura (a pleural tag
  # with no nodule at its end).
  pleura = _pleura_points(anat)
  for _ in range(rng.poisson(1.0)):
    # Below ~384 px the pleural band can hold no pixel; the scar then starts inside.
    if rng.random() < 0.5 and len(pleura[0]):
      i = rng.integers(len(pleura[0]))
      x, y = float(pleura[1][i]), float(pleura[0][i])
      cx, cy = anat.centroids[int(anat.lung[pleura[0][i], pleura[1][i]]) - 1]
      a = math.atan2(cy - y, cx - x) + rng.normal(0, 0.4)
    else:
      x, y = spot()
      a = rng.uniform(0, 2 * math.pi)
    segs = []
    for _ in range(int(rng.integers(2, 5))):
      length = rng.uniform(5, 14) * s
      x2, y2 = x + length * math.cos(a), y + length * math.sin(a)
      segs.append((x, y, x2, y2, rng.uniform(0.6, 1.6) * s, rng.uniform(0.5, 1.4) * s, 1.0))
      x, y, a = x2, y2, a + rng.normal(0, 0.5)
    pa.paint_segments(img, segs, float(rng.uniform(-150, 40)), lungf)
  # Subsegmental atelectasis: a thin band, often horizontal, in the dependent lung.
  if rng.random() < 0.3:
    x, y = spot()
    y = max(y, anat.centroids[0][1])
    half = rng.uniform(10, 28) * s
    a = rng.normal(0, 0.3)
    yi, xi = int(min(y, anat.size - 1)), int(x)
    if anat.dist[yi, xi] > 3 * s:
      pa.paint_segments(img, [(x - half * math.cos(a), y - half * math.sin(a),
                               x + half * math.cos(a), y + half * math.sin(a),
                               rng.uniform(1.0, 2.2) * s, rng.uniform(0.8, 2.0) * s, 1.0)],
                        float(rng.uniform(-200, 30)), lungf)
  # Dependent density: a hazy band along the posterior pleura (a ground-glass mimic
  # that shifts with the patient's position).
  if rng.random() < 0.3:
    band = np.clip(1.0 - anat.dist / (rng.uniform(6, 18) * s), 0, 1)
    xx, yy = pa.grid(anat.size)
    band *= np.clip((yy - anat.centroids[0][1]) / (40 * s), 0, 1)
    band *= np.clip(0.7 + 0.4 * pa.smooth_noise(rng, band.shape, 6 * s), 0, 1)
    img += lungf * band * (rng.uniform(-720, -560) - img) * (band > 0)
  # Small paraseptal air spaces near the pleura (no wall of a nodule around them).
  if rng.random() < 0.25:
    cy, cx = np.nonzero((anat.dist > 2 * s) & (anat.dist < 8 * s))
    k = rng.integers(0, len(cx), int(rng.integers(1, 5)))
    pa.paint_discs(img, cx[k].astype(np.float32), cy[k].astype(np.float32),
                   rng.uniform(1.5, 4.0, len(k)) * s, -990.0, lungf)


def _small_nodules(img, anat, rng, scan, lungf, spot):
  """Intrapulmonary lymph nodes and granulomas: small smooth solid nodules (2-11 mm).

  Common incidental findings that carry none of the signs (a smooth, round or oval
  margin, no strands); most lie subpleurally, so they mimic lobulated, spiculated and
  pleural nodules at a glance. About one slice in two shows one: more than in a
  screening population, as the slices are those of patients with findings.
  """
  s = anat.scale
  pleural = anat.__dict__.setdefault('_points', {})
  if 'subpleural' not in pleural:
    pleural['subpleural'] = np.nonzero((anat.dist > 3 * s) & (anat.dist < 12 * s))
  sy, sx = pleural['subpleural']
  for _ in range(rng.poisson(0.6)):
    if rng.random() < 0.6 and len(sx):
      i = rng.integers(len(sx))
      x, y = float(sx[i]), float(sy[i])
    else:
      x, y = spot()
    r = (1.5 + 6.5 * rng.random() ** 2) * s  # mostly 2-4 mm across, a few up to 11 mm
    sub, xs, ys, idx = sh.window(img, sh.around(x, y, 1.6 * r), 2)
    alpha = sh.body_alpha(xs, ys, x, y, r, sh.harmonics(rng, 3, 0.12), scan,
                          sh.cut_height(rng, r, 0.7))
    sh.blend(sub, alpha * lungf[idx], rng.uniform(*sh.SOFT))


def _pleural_and_dependent(img, anat, rng, scan, lungf):
  """Pleural thickening and plaques, faint mosaic perfusion, dependent atelectasis."""
  s = anat.scale
  py, px = _pleura_points(anat)
  if not len(px):
    return
  # Focal pleural thickening or a plaque: a smooth soft-tissue bump on the pleura
  # (a pleural notch without a nodule or a strand: a mimic of PI).
  for _ in range(rng.poisson(0.5)):
    i = rng.integers(len(px))
    cx, cy = anat.centroids[int(anat.lung[py[i], px[i]]) - 1]
    a = math.atan2(cy - py[i], cx - px[i])
    k = rng.uniform(3, 8) * s
    d = k - rng.uniform(1, 4) * s
    pa.paint_discs(img, px[i] - d * math.cos(a), py[i] - d * math.sin(a), k, pa.MUSCLE, lungf)
  # Mosaic perfusion: a faintly denser lobule-sized patch (a ground-glass mimic).
  ys, xs = _points(anat, 10 * s)
  for _ in range(rng.poisson(0.6) if len(xs) else 0):
    i = rng.integers(len(xs))
    r = rng.uniform(8, 22) * s
    sub, gx, gy, idx = sh.window(img, sh.around(float(xs[i]), float(ys[i]), 1.5 * r), 2)
    alpha = sh.blob_alpha(gx, gy, float(xs[i]), float(ys[i]), r, sh.harmonics(rng, 5, 0.2),
                          rng.uniform(3, 8) * s) * lungf[idx]
    sh.blend(sub, alpha * np.clip(0.7 + 0.4 * pa.smooth_noise(rng, sub.shape, 3 * s), 0, 1),
             rng.uniform(-810, -720))
  # Dependent (compressive) atelectasis: a dense subpleural lens in the posterior lung,
  # common in supine scans, without air bronchi (a mimic of AB and OP).
  if rng.random() < 0.15:
    post = np.flatnonzero(py > anat.centroids[0][1] + 20 * s)
    if len(post):
      i = post[rng.integers(len(post))]
      cx, cy = anat.centroids[int(anat.lung[py[i], px[i]]) - 1]
      a = math.atan2(cy - py[i], cx - px[i])
      r, half = rng.uniform(3, 9) * s, rng.uniform(8, 25) * s
      x, y = px[i] + 0.5 * r * math.cos(a), py[i] + 0.5 * r * math.sin(a)
      tx, ty = -math.sin(a), math.cos(a)
      pa.paint_segments(img, [(x - half * tx, y - half * ty, x + half * tx, y + half * ty, r,
                               r * rng.uniform(0.6, 1.0), 1.0)],
                        float(rng.uniform(-120, 40)), lungf)


def render_object(anat: pa.Anatomy, base: np.ndarray, rng: np.random.Generator,
                  scan: scanner_lib.Scan) -> np.ndarray:
  """One slice's object in HU: static tissues + this slice's lung detail."""
  img = base.copy()
  lungf = (anat.lung > 0).astype(np.float32)
  img += _texture(rng, anat) * lungf
  # Without contrast the lung's vessels are blood at +20..+55 HU, grey where partial
  # volume thins them; with it (30 % of patients) up to 220 HU, as bright as calcium.
  hu = anat.geo['blood'] if anat.geo['contrast'] else anat.geo['vessel_hu']
  z = height_field(rng, anat, scan)
  _vessels(img, anat, rng, scan, lungf, hu, z)
  _subpleural(img, anat, rng, scan, lungf, hu, z)
  _fissures(img, anat, rng, scan, lungf)
  _confounders(img, anat, rng, scan, lungf, hu, z)
  _pleural_and_dependent(img, anat, rng, scan, lungf)
  return img
