"""The nine signs of the phantom, each planned and drawn by its own morphology.

Each sign has a planner `_plan_<sign>(rng, anat, x, y) -> (params, box) | None` that
sizes and shapes one instance around a candidate point and returns its box (half-open
x0, y0, x1, y1) without touching pixels, and a painter `_paint_<sign>(img, params,
anat, rng)` that draws it into a slice in HU. Plans are plain data, so the layout of
the whole phantom (counts, boxes) can be checked without rendering anything. Sizes
are pixels of a 512 slice (about 0.7 mm each); looks and HU follow SIGNS.md.
"""
import math

import numpy as np
from scipy import ndimage

from cisl_jax.data.sources import phantom_anatomy as pa

SOFT = (20.0, 55.0)  # HU of solid nodules and consolidation
AIR_IN = -960.0  # HU of air in cavities, vacuoles and air bronchi


def _u(rng, lo, hi):
  return float(rng.uniform(lo, hi))


def _harmonics(rng, kmax, amp):
  return [(k, _u(rng, 0, amp), _u(rng, 0, 2 * math.pi)) for k in range(2, kmax + 1)]


def _box(x0, y0, x1, y1, size):
  """Integer half-open box around a float extent, or None when it leaves the slice."""
  box = (math.floor(x0), math.floor(y0), math.ceil(x1) + 1, math.ceil(y1) + 1)
  if box[0] < 0 or box[1] < 0 or box[2] > size or box[3] > size:
    return None
  return box


def _blob_box(x, y, radius, size, margin=1.5):
  return _box(x - radius - margin, y - radius - margin, x + radius + margin, y + radius + margin, size)


def _around(x, y, radius):
  """A float box of half-side `radius` around (x, y), for painting windows."""
  return (x - radius, y - radius, x + radius, y + radius)


def _inside(anat, x, y, clearance=0.0):
  xi, yi = int(round(x)), int(round(y))
  if not (0 <= xi < anat.size and 0 <= yi < anat.size):
    return False
  return anat.dist[yi, xi] >= clearance


def _window(img, box, pad):
  """Local coordinate grids and the image view around a box (plus pad)."""
  h, w = img.shape
  x0, y0 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
  x1, y1 = min(w, int(box[2] + pad)), min(h, int(box[3] + pad))
  xs = np.arange(x0, x1, dtype=np.float32)[None, :]
  ys = np.arange(y0, y1, dtype=np.float32)[:, None]
  return img[y0:y1, x0:x1], xs, ys, (slice(y0, y1), slice(x0, x1))


def _blob_alpha(xs, ys, x, y, radius, harmonics, edge):
  """Soft mask of a round blob whose radius wavers with the angle."""
  dx, dy = xs - x, ys - y
  r = np.sqrt(dx * dx + dy * dy)
  th = np.arctan2(dy, dx)
  rr = radius * (1 + sum(a * np.cos(k * th + p) for k, a, p in harmonics))
  return np.clip((rr - r) / edge + 0.5, 0.0, 1.0)


def _blend(sub, alpha, value):
  sub += alpha * (value - sub)


def _texture(rng, shape, amp, sigma=1.2):
  return amp * pa.smooth_noise(rng, shape, sigma)


# ---------------------------------------------------------------------------
# GGO: hazy patch, vessels stay visible through it.

def _plan_ggo(rng, anat, x, y):
  s = anat.scale
  r = _u(rng, 8, 22) * s
  harm = _harmonics(rng, 5, 0.1)
  ext = r * (1 + sum(a for _, a, _ in harm))
  if not _inside(anat, x, y, 0.8 * ext + 3 * s):
    return None
  solid = rng.random() < 0.25
  p = dict(x=x, y=y, r=r, harm=harm, edge=_u(rng, 2, 5) * s, hu=_u(rng, -620, -300),
           core=_u(rng, 0.2, 0.4) * r if solid else 0.0,
           vessel_angle=_u(rng, 0, 2 * math.pi), n_vessels=int(rng.choice([0, 1, 1, 2])))
  return p, _blob_box(x, y, ext, anat.size)


def _paint_ggo(img, p, anat, rng):
  s = anat.scale
  # Vessels crossing the patch first, so that they show through the haze.
  # Each enters from outside, runs through with a bend and tapers, sometimes forking.
  segs = []
  for i in range(p['n_vessels']):
    a = p['vessel_angle'] + i * _u(rng, 1.0, 2.0)
    off = _u(rng, -0.5, 0.5) * p['r']
    x, y = p['x'] - off * math.sin(a), p['y'] + off * math.cos(a)
    half, rad = _u(rng, 0.9, 1.3) * p['r'], _u(rng, 0.8, 1.5) * s
    xa, ya = x - half * math.cos(a), y - half * math.sin(a)
    segs.append((xa, ya, x, y, rad, 0.8 * rad))
    for b in ([a + _u(rng, -0.3, 0.3)] if rng.random() < 0.6 else
              [a + _u(rng, 0.3, 0.6), a - _u(rng, 0.3, 0.6)]):
      segs.append((x, y, x + half * math.cos(b), y + half * math.sin(b), 0.8 * rad, 0.4 * rad))
  pa.paint_segments(img, segs, 45.0, (anat.lung > 0).astype(np.float32))
  sub, xs, ys, _ = _window(img, _around(p['x'], p['y'], 2 * p['r']), 2)
  # Cloud-like: the haze's density and its edge both vary patchily.
  alpha = _blob_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], p['edge'])
  alpha *= np.clip(0.8 + 0.25 * pa.smooth_noise(rng, sub.shape, 3.0 * s), 0.3, 1.0)
  haze = p['hu'] + _texture(rng, sub.shape, 50.0, 1.5 * s)
  # max() keeps vessels (denser than the haze) visible inside it.
  sub[...] = np.maximum(sub, sub + alpha * (haze - sub))
  if p['core']:
    core = _blob_alpha(xs, ys, p['x'], p['y'], p['core'], _harmonics(rng, 3, 0.15), 1.0 * s)
    _blend(sub, core, _u(rng, *SOFT))


# ---------------------------------------------------------------------------
# Lobulation: solid nodule whose border is a run of shallow convex arcs.

def _plan_lobulation(rng, anat, x, y):
  s = anat.scale
  r = _u(rng, 8, 21) * s
  n = int(rng.integers(5, 9))
  lobe = r * _u(rng, 0.38, 0.52)
  th0 = _u(rng, 0, 2 * math.pi)
  # (angle, lobe radius, lobe centre distance): uneven lobes, unevenly spaced.
  lobes = [(th0 + 2 * math.pi * (i + _u(rng, -0.18, 0.18)) / n, lobe * _u(rng, 0.75, 1.25),
            (r - lobe) * _u(rng, 0.85, 1.1)) for i in range(n)]
  ext = max(d + rl for _, rl, d in lobes)
  if not _inside(anat, x, y, ext + 3 * s):
    return None
  p = dict(x=x, y=y, r=r, lobe=lobe, lobes=lobes, hu=_u(rng, *SOFT))
  return p, _blob_box(x, y, ext, anat.size)


def _paint_lobulation(img, p, anat, rng):
  sub, xs, ys, _ = _window(img, _around(p['x'], p['y'], 1.3 * p['r']), 2)
  alpha = _blob_alpha(xs, ys, p['x'], p['y'], p['r'] - 0.9 * p['lobe'], (), 1.0)
  for th, rl, d in p['lobes']:
    alpha = np.maximum(alpha, _blob_alpha(xs, ys, p['x'] + d * math.cos(th),
                                          p['y'] + d * math.sin(th), rl, (), 1.0))
  _blend(sub, alpha, p['hu'] + _texture(rng, sub.shape, 8.0))


# ---------------------------------------------------------------------------
# Calcification: dense bright focus (dot, rings, diffuse or popcorn) in a nodule.

def _plan_calcification(rng, anat, x, y):
  s = anat.scale
  kind = str(rng.choice(['dense', 'dense', 'central', 'rings', 'diffuse', 'popcorn']))
  r = (_u(rng, 2.5, 7) if kind == 'dense' else _u(rng, 5, 11)) * s
  if not _inside(anat, x, y, r + 3 * s):
    return None
  p = dict(x=x, y=y, r=r, kind=kind, hu=_u(rng, *SOFT), calc=_u(rng, 350, 1000),
           harm=_harmonics(rng, 3, 0.08))
  return p, _blob_box(x, y, r * 1.16, anat.size)


def _paint_calcification(img, p, anat, rng):
  s = anat.scale
  x, y, r = p['x'], p['y'], p['r']
  sub, xs, ys, _ = _window(img, _around(x, y, 1.3 * r), 2)
  _blend(sub, _blob_alpha(xs, ys, x, y, r, p['harm'], 0.7),
         p['calc'] if p['kind'] == 'dense' else p['hu'])
  if p['kind'] == 'central':
    pa.paint_discs(img, x, y, max(1.5 * s, 0.45 * r), p['calc'])
  elif p['kind'] == 'rings':
    d = np.sqrt((xs - x) ** 2 + (ys - y) ** 2)
    for rr in (0.45 * r, 0.85 * r):
      _blend(sub, np.clip(1.0 * s - np.abs(d - rr) + 0.5, 0, 1), p['calc'])
  elif p['kind'] == 'diffuse':
    _blend(sub, _blob_alpha(xs, ys, x, y, 0.9 * r, p['harm'], 1.0),
           p['calc'] + _texture(rng, sub.shape, 80.0))
  else:  # popcorn: several dense clumps
    n = int(rng.integers(4, 8))
    ang, rad = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 0.6 * r, n)
    pa.paint_discs(img, x + rad * np.cos(ang), y + rad * np.sin(ang),
                   rng.uniform(1.2, 2.6, n) * s, p['calc'])


# ---------------------------------------------------------------------------
# CV: a cavity (air hole with an uneven wall) or vacuoles (small bubbles) in a nodule.

def _plan_cv(rng, anat, x, y):
  s = anat.scale
  cavity = rng.random() < 0.6
  if cavity:
    r = (_u(rng, 33, 46) if rng.random() < 0.15 else _u(rng, 9, 28)) * s
  else:
    r = _u(rng, 7, 18) * s
  harm = _harmonics(rng, 4, 0.08)
  ext = r * (1 + sum(a for _, a, _ in harm))
  if not _inside(anat, x, y, ext + 2 * s):
    return None
  p = dict(x=x, y=y, r=r, harm=harm, hu=_u(rng, *SOFT), cavity=cavity)
  if cavity:
    rin = r * _u(rng, 0.4, 0.72)
    off, ang = (r - rin) * _u(rng, 0.1, 0.7), _u(rng, 0, 2 * math.pi)
    p.update(rin=rin, cx=x + off * math.cos(ang), cy=y + off * math.sin(ang),
             inner_harm=_harmonics(rng, 4, 0.12))
  else:
    n = int(rng.integers(1, 5))
    ang, rad = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 0.55 * r, n)
    p.update(bx=(x + rad * np.cos(ang)).tolist(), by=(y + rad * np.sin(ang)).tolist(),
             br=(rng.uniform(1.7, 3.5, n) * s).tolist())
  return p, _blob_box(x, y, ext, anat.size)


def _paint_cv(img, p, anat, rng):
  sub, xs, ys, _ = _window(img, _around(p['x'], p['y'], 1.4 * p['r']), 2)
  _blend(sub, _blob_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], 1.0),
         p['hu'] + _texture(rng, sub.shape, 6.0))
  if p['cavity']:
    _blend(sub, _blob_alpha(xs, ys, p['cx'], p['cy'], p['rin'], p['inner_harm'], 1.0), AIR_IN)
  else:
    pa.paint_discs(img, p['bx'], p['by'], p['br'], AIR_IN)


# ---------------------------------------------------------------------------
# Spiculation: nodule with thin strands radiating from its margin (sunburst).

def _spicules(rng, x, y, r, n, s):
  """Each spicule: two tapering segments with a slight bend."""
  segs = []
  for th in np.sort(rng.uniform(0, 2 * math.pi, n)):
    length = _u(rng, 6, 22) * s
    root = _u(rng, 0.9, 1.5) * s
    x0, y0 = x + 0.8 * r * math.cos(th), y + 0.8 * r * math.sin(th)
    bend = th + _u(rng, -0.25, 0.25)
    xm, ym = x0 + 0.5 * length * math.cos(th), y0 + 0.5 * length * math.sin(th)
    x1, y1 = xm + 0.5 * length * math.cos(bend), ym + 0.5 * length * math.sin(bend)
    segs += [(x0, y0, xm, ym, root, 0.7 * root), (xm, ym, x1, y1, 0.7 * root, 0.35 * s)]
  return segs


def _plan_spiculation(rng, anat, x, y):
  s = anat.scale
  r = _u(rng, 6, 15) * s
  segs = _spicules(rng, x, y, r, int(rng.integers(8, 18)), s)
  pts = np.array(segs)[:, [0, 1, 2, 3]].reshape(-1, 2)
  if not _inside(anat, x, y, r + 3 * s) or not all(_inside(anat, a, b, 2 * s) for a, b in pts):
    return None
  p = dict(x=x, y=y, r=r, harm=_harmonics(rng, 5, 0.08), segs=segs, hu=_u(rng, *SOFT))
  return p, _box(min(pts[:, 0].min(), x - r) - 1, min(pts[:, 1].min(), y - r) - 1,
                 max(pts[:, 0].max(), x + r) + 1, max(pts[:, 1].max(), y + r) + 1, anat.size)


def _paint_spiculation(img, p, anat, rng):
  pa.paint_segments(img, p['segs'], p['hu'])
  sub, xs, ys, _ = _window(img, _around(p['x'], p['y'], 1.3 * p['r']), 2)
  _blend(sub, _blob_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], 1.0),
         p['hu'] + _texture(rng, sub.shape, 6.0))


# ---------------------------------------------------------------------------
# PI: peripheral nodule tied to the pleura by strands, pleura pulled in (a notch).

def _plan_pi(rng, anat, x, y):
  """(x, y) is a point on the costal pleura."""
  s = anat.scale
  # Inward normal from the distance map's gradient around the pleural point.
  xi, yi = int(x), int(y)
  win = anat.dist[max(0, yi - 6):yi + 7, max(0, xi - 6):xi + 7]
  gy, gx = np.gradient(win)
  nx, ny = float(gx.sum()), float(gy.sum())
  n = math.hypot(nx, ny)
  if n < 1e-3:
    return None
  nx, ny = nx / n, ny / n
  r = _u(rng, 7, 16) * s
  gap = _u(rng, 6, 20) * s
  cx, cy = x + (r + gap) * nx, y + (r + gap) * ny
  if not _inside(anat, cx, cy, r + 1.5 * s):
    return None
  tags, notches = [], []
  n_tags = int(rng.integers(1, 3))
  for i in range(n_tags):
    t = (_u(rng, -0.3, 0.3) if n_tags == 1 else (i - 0.5) * _u(rng, 0.6, 1.4)) * r
    px, py = x + t * ny, y - t * nx  # where the strand meets the pleura
    depth, k = _u(rng, 2.5, 6) * s, _u(rng, 4, 7) * s
    # The pleura pulled in: a rounded notch of chest-wall tissue bulging into the lung.
    notches.append((px - k * nx, py - k * ny, k + depth))
    tags.append((px + depth * nx, py + depth * ny, cx + 0.3 * t * ny, cy - 0.3 * t * nx,
                 _u(rng, 1.6, 3.2) * s, _u(rng, 0.6, 1.1) * s))
  p = dict(x=cx, y=cy, r=r, harm=_harmonics(rng, 4, 0.1), tags=tags, notches=notches,
           hu=_u(rng, *SOFT))
  pts = np.array([(a[0], a[1]) for a in tags] + [(cx - r, cy - r), (cx + r, cy + r)] +
                 [(a + c * nx, b + c * ny) for a, b, c in notches])
  return p, _box(pts[:, 0].min() - 1, pts[:, 1].min() - 1, pts[:, 0].max() + 1,
                 pts[:, 1].max() + 1, anat.size)


def _paint_pi(img, p, anat, rng):
  # A triangular tag, broad at the pleura, pulls the pleura in: a notch in the lung.
  nx, ny, nr = np.array(p['notches']).T
  pa.paint_discs(img, nx, ny, nr, pa.MUSCLE, (anat.lung > 0).astype(np.float32))
  pa.paint_segments(img, p['tags'], p['hu'])
  sub, xs, ys, _ = _window(img, _around(p['x'], p['y'], 1.3 * p['r']), 2)
  _blend(sub, _blob_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], 1.0),
         p['hu'] + _texture(rng, sub.shape, 6.0))


# ---------------------------------------------------------------------------
# BMP: V/Y-shaped tubular opacities filling bronchi, pointing away from the hilum.

def _plan_bmp(rng, anat, x, y):
  s = anat.scale
  hx, hy = min(anat.hila, key=lambda h: math.hypot(h[0] - x, h[1] - y))
  a = math.atan2(y - hy, x - hx) + rng.normal(0, 0.3)
  w = _u(rng, 2.0, 4.5) * s
  long = rng.random() < 0.2  # some plugs run far out along the airways
  trunk = (_u(rng, 32, 48) if long else _u(rng, 0, 16)) * s
  x1, y1 = x + trunk * math.cos(a), y + trunk * math.sin(a)
  segs = [(x, y, x1, y1, w, 0.95 * w)] if trunk > 0 else []
  for side in (-1, 1):
    b = a + side * _u(rng, 0.4, 0.8)
    length = (_u(rng, 26, 36) if long else _u(rng, 10, 28)) * s
    xm, ym = x1 + 0.5 * length * math.cos(b), y1 + 0.5 * length * math.sin(b)
    b += _u(rng, -0.25, 0.25)
    tip = w * _u(rng, 0.9, 1.25)  # plugged bronchi are dilated and blunt at the end
    segs += [(x1, y1, xm, ym, 0.9 * w, 0.5 * (0.9 * w + tip)),
             (xm, ym, xm + 0.5 * length * math.cos(b), ym + 0.5 * length * math.sin(b),
              0.5 * (0.9 * w + tip), tip)]
  segs = np.array(segs)
  pts = segs[:, :4].reshape(-1, 2)
  w = float(segs[:, 4:].max())
  if not all(_inside(anat, px, py, w + 3 * s) for px, py in pts):
    return None
  p = dict(segs=segs.tolist(), hu=_u(rng, 10, 55), w=w)
  return p, _box(pts[:, 0].min() - w - 1, pts[:, 1].min() - w - 1,
                 pts[:, 0].max() + w + 1, pts[:, 1].max() + w + 1, anat.size)


def _paint_bmp(img, p, anat, rng):
  wall = np.array(p['segs'])
  wall[:, 4:] += 0.9 * anat.scale
  pa.paint_segments(img, wall, p['hu'] + 25)  # thickened bronchial wall, a bit denser
  pa.paint_segments(img, p['segs'], p['hu'])


# ---------------------------------------------------------------------------
# AB: consolidation with dark branching air-filled bronchi inside.

def _plan_ab(rng, anat, x, y):
  s = anat.scale
  r = _u(rng, 14, 44) * s
  harm = _harmonics(rng, 6, 0.1)
  ext = r * (1 + sum(a for _, a, _ in harm))
  if not _inside(anat, x, y, 0.75 * ext):
    return None
  hx, hy = min(anat.hila, key=lambda h: math.hypot(h[0] - x, h[1] - y))
  a = math.atan2(y - hy, x - hx)
  p = dict(x=x, y=y, r=r, harm=harm, hu=_u(rng, 20, 50), angle=a + rng.normal(0, 0.3),
           edge=_u(rng, 1.5, 4) * s)
  return p, _blob_box(x, y, ext, anat.size)


def _paint_ab(img, p, anat, rng):
  s = anat.scale
  sub, xs, ys, idx = _window(img, _around(p['x'], p['y'], 1.5 * p['r']), 2)
  lung = (anat.lung[idx] > 0).astype(np.float32)
  _blend(sub, _blob_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], p['edge']) * lung,
         p['hu'] + _texture(rng, sub.shape, 6.0))
  # Air bronchi enter from the hilar side and branch; they show only inside the opacity.
  a = p['angle']
  x0, y0 = p['x'] - 0.9 * p['r'] * math.cos(a), p['y'] - 0.9 * p['r'] * math.sin(a)
  size = p['r'] / (25 * s)  # fewer, thinner bronchi in a small consolidation
  tree = pa.vessel_tree(rng, anat, x0, y0, a, _u(rng, 1.3, 2.6) * s * min(1.0, 0.5 + size),
                        max_segments=int(rng.integers(4, 12) * size) + 3, bounded=False)
  if rng.random() < 0.5:  # a second bronchus entering beside the first
    b = a + _u(rng, 0.4, 0.8) * rng.choice([-1, 1])
    tree += pa.vessel_tree(rng, anat, x0, y0, b, _u(rng, 1.4, 2.2) * s,
                           max_segments=int(rng.integers(3, 8)), bounded=False)
  inner = np.zeros_like(img)
  inner[idx] = _blob_alpha(xs, ys, p['x'], p['y'], 0.85 * p['r'], p['harm'], 1.0) * lung
  pa.paint_segments(img, tree, AIR_IN, inner)


# ---------------------------------------------------------------------------
# OP: large wedge of consolidation, apex to the hilum, behind a central mass.

def op_mask(anat, p):
  """The wedge: lung pixels within the sector from the apex (and radius limit)."""
  xx, yy = pa.grid(anat.size)
  dx, dy = xx - p['ax'], yy - p['ay']
  d = np.arctan2(dy, dx) - p['angle']
  d = (d + math.pi) % (2 * math.pi) - math.pi
  r = np.sqrt(dx * dx + dy * dy)
  # Straight border on one side (a fissure); the other bulges and wavers.
  other = p['half'] * (1 + p['bulge'] * np.sin(math.pi * np.clip(r / p['reach'], 0, 1))
                       + 0.08 * np.sin(r / (12 * anat.scale) + p['phase']))
  inside = np.where(d * p['side'] > 0, np.abs(d) < p['half'], np.abs(d) < other)
  return (anat.lung == p['lung']) & inside & (r < p['reach'])


def _plan_op(rng, anat, x, y, oversized=False):
  """(x, y) is a hilum; the wedge opens into that hilum's lung."""
  s = anat.scale
  lung = 1 if x < anat.geo['cx'] else 2
  mx, my = anat.centroids[lung - 1]
  apex = 10 * s
  base = math.atan2(my - y, mx - x)
  ax, ay = x + apex * math.cos(base), y + apex * math.sin(base)
  p = dict(ax=ax, ay=ay, lung=lung, angle=base + (0 if oversized else rng.normal(0, 0.5)),
           half=math.pi if oversized else _u(rng, 0.25, 0.6),
           reach=1e6 if oversized else _u(rng, 70, 210) * s, hu=_u(rng, 20, 50),
           mass=_u(rng, 9, 17) * s, side=float(rng.choice([-1, 1])),
           bulge=0.0 if oversized else _u(rng, 0.1, 0.5), phase=_u(rng, 0, 2 * math.pi))
  mask = op_mask(anat, p)
  if mask.sum() < (400 * s * s):
    return None
  ys, xs = np.nonzero(mask)
  box = _box(min(xs.min(), ax - p['mass']), min(ys.min(), ay - p['mass']),
             max(xs.max(), ax + p['mass']), max(ys.max(), ay + p['mass']), anat.size)
  if oversized:
    # A loose box around the whole chest, as a hurried reader might draw: the
    # patch rule drops it (over half the slice in width and height).
    x0, y0, x1, y1 = anat.body_box
    w, h = max(x1 - x0, int(0.8 * anat.size)), max(y1 - y0, int(0.7 * anat.size))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    box = (max(0, cx - w // 2), max(0, cy - h // 2), min(anat.size, cx + w // 2),
           min(anat.size, cy + h // 2))
  return p, box


def _paint_op(img, p, anat, rng):
  s = anat.scale
  alpha = ndimage.gaussian_filter(op_mask(anat, p).astype(np.float32), 1.2 * s)
  alpha *= (anat.lung > 0)
  # Consolidation is not perfectly even: a faint, smooth mottle.
  img += alpha * (p['hu'] + _texture(rng, img.shape, 10.0, 3.0 * s) - img)
  sub, xs, ys, _ = _window(img, _around(p['ax'], p['ay'], 1.5 * p['mass']), 2)
  _blend(sub, _blob_alpha(xs, ys, p['ax'], p['ay'], p['mass'], _harmonics(rng, 4, 0.1), 1.0),
         p['hu'] + 10)


PLANNERS = {'GGO': _plan_ggo, 'lobulation': _plan_lobulation,
            'calcification': _plan_calcification, 'CV': _plan_cv,
            'spiculation': _plan_spiculation, 'PI': _plan_pi, 'BMP': _plan_bmp,
            'AB': _plan_ab, 'OP': _plan_op}
PAINTERS = {'GGO': _paint_ggo, 'lobulation': _paint_lobulation,
            'calcification': _paint_calcification, 'CV': _paint_cv,
            'spiculation': _paint_spiculation, 'PI': _paint_pi, 'BMP': _paint_bmp,
            'AB': _paint_ab, 'OP': _paint_op}


def candidates(sign: str, anat, rng, n: int):
  """Candidate anchor points for a sign: pleura for PI, hila for OP, else lung."""
  if sign == 'PI':
    ys, xs = np.nonzero(anat.costal)
  elif sign == 'OP':
    return [anat.hila[i] for i in rng.integers(0, 2, n)]
  else:
    ys, xs = np.nonzero(anat.dist > 6 * anat.scale)
  pick = rng.integers(0, len(xs), n)
  return list(zip(xs[pick].astype(float) + 0.5, ys[pick].astype(float) + 0.5))


def plan_sign(sign, anat, rng, taken, oversized=False, tries=60):
  """Plans one instance of `sign` whose box overlaps none of `taken`; None if no room."""
  margin = 6 * anat.scale
  for x, y in candidates(sign, anat, rng, tries):
    out = (_plan_op(rng, anat, x, y, True) if oversized
           else PLANNERS[sign](rng, anat, x, y))
    if out is None or out[1] is None:
      continue
    box = out[1]
    if oversized or not any(box[0] < b[2] + margin and b[0] < box[2] + margin and
                            box[1] < b[3] + margin and b[1] < box[3] + margin for b in taken):
      return out
  return None


def paint_sign(img, sign, params, anat, rng):
  PAINTERS[sign](img, params, anat, rng)
