"""The phantom's airway and consolidation signs: BMP, AB and OP (see phantom_signs).

Planners `plan_<sign>(rng, anat, x, y) -> (params, box) | None` and painters
`paint_<sign>(img, params, anat, rng, scan)`, as in phantom_signs; sizes are in units
of 0.7 mm times `anat.scale`; looks and HU follow SIGNS.md.
"""
import math

import numpy as np
from scipy import ndimage

from cisl_jax.data.sources import phantom_anatomy as pa
from cisl_jax.data.sources import phantom_scanner as scanner_lib
from cisl_jax.data.sources import phantom_shapes as sh


# ---------------------------------------------------------------------------
# BMP: tubular branching opacities filling dilated bronchi, away from the hilum.

def _plug_tree(rng, x, y, a, w, s, generations, long):
  """Segments of a plugged bronchial tree: forks (V/Y), bends, blunt dilated tips."""
  segs, stack = [], [(x, y, a, w, 0)]
  while stack:
    x, y, a, w, g = stack.pop()
    length = (sh.u(rng, 28, 40) if long else sh.u(rng, 7, 20)) * s
    pts = [(x, y)]
    for _ in range(2):  # two pieces with a slight bend: bronchi are not straight
      a += rng.normal(0, 0.2)
      x, y = x + 0.5 * length * math.cos(a), y + 0.5 * length * math.sin(a)
      pts.append((x, y))
    w2 = w * sh.u(rng, 0.8, 1.05)
    segs += [(*pts[0], *pts[1], w, 0.5 * (w + w2)), (*pts[1], *pts[2], 0.5 * (w + w2), w2)]
    if g < generations:
      k = 2 if rng.random() < 0.8 else 3
      for j in range(k):
        stack.append((x, y, a + (j - 0.5 * (k - 1)) * sh.u(rng, 0.5, 0.9), w2 * sh.u(rng, 0.75, 0.95),
                      g + 1))
    else:
      segs.append((x, y, x, y, w2 * sh.u(rng, 1.0, 1.3), w2 * sh.u(rng, 1.0, 1.3)))  # blunt tip
  return segs


def plan_bmp(rng, anat, x, y):
  s = anat.scale
  hx, hy = min(anat.hila, key=lambda h: math.hypot(h[0] - x, h[1] - y))
  w = sh.u(rng, 1.5, 4.0) * s  # from small plugs (2 mm) to dilated, filled bronchi
  long = rng.random() < 0.25  # some plugs run far out along the airways (boxes > 64 px)
  generations = 1 if long else int(rng.choice([0, 1, 1, 1, 2]))
  for _ in range(8 if long else 1):  # a long plug tries other directions to fit the lung
    a = math.atan2(y - hy, x - hx) + rng.normal(0, 0.4)
    segs = _plug_tree(rng, x, y, a, w, s, generations, long)
    pts = np.array(segs)[:, :4].reshape(-1, 2)
    wmax = float(np.array(segs)[:, 4:].max())
    if all(sh.inside(anat, px, py, wmax + 3 * s) for px, py in pts):
      break
  else:
    return None
  # Plugged bronchi cut across beside the tree: round plugs inside a thin ring.
  rings = []
  for _ in range(int(rng.choice([0, 0, 1, 2]))):
    t = rng.integers(len(segs))
    ang = sh.u(rng, 0, 2 * math.pi)
    d = sh.u(rng, 3, 8) * s + w
    ring = (segs[t][2] + d * math.cos(ang), segs[t][3] + d * math.sin(ang), w * sh.u(rng, 0.6, 1.0))
    if sh.inside(anat, ring[0], ring[1], ring[2] + 3 * s):
      rings.append(ring)
  pts = np.concatenate([pts, np.array(rings).reshape(-1, 3)[:, :2]])
  p = dict(segs=np.array(segs).tolist(), rings=rings, hu=sh.u(rng, 5, 60), w=wmax)
  return p, sh.box(pts[:, 0].min() - wmax - 1, pts[:, 1].min() - wmax - 1,
                   pts[:, 0].max() + wmax + 1, pts[:, 1].max() + wmax + 1, anat.size)


def paint_bmp(img, p, anat, rng, scan):
  s = anat.scale
  segs = np.array(p['segs'], np.float32)
  weight = scanner_lib.slab_contrast(2 * segs[:, 4] * scan.spacing, scan.thickness)
  wall = segs.copy()
  wall[:, 4:] += sh.u(rng, 0.5, 1.2) * s
  wall_hu = p['hu'] + sh.u(rng, 0, 30)  # thickened bronchial wall, a bit denser
  # The wall is a thin, partial-volumed sheath, and the mucus fills each branch to a
  # different degree: not a uniform white tube.
  pa.paint_segments(img, np.concatenate([wall, 0.8 * weight[:, None]], 1), wall_hu)
  fill = rng.uniform(0.8, 1.0, len(segs)).astype(np.float32)
  pa.paint_segments(img, np.concatenate([segs, (weight * fill)[:, None]], 1), p['hu'])
  for x, y, r in p['rings']:
    pa.paint_discs(img, x, y, r + 0.9 * s, wall_hu)
    pa.paint_discs(img, x, y, r + 0.3 * s, -900.0)  # a rim of air around the plug
    pa.paint_discs(img, x, y, r * 0.8, p['hu'])


# ---------------------------------------------------------------------------
# AB: consolidation or a nodule with dark branching air-filled bronchi inside.

def plan_ab(rng, anat, x, y):
  s = anat.scale
  # A third are air bronchograms in a nodule (as in adenocarcinoma), the rest in
  # consolidations of varied extent.
  r = (sh.u(rng, 7, 15) if rng.random() < 0.35 else sh.u(rng, 14, 44)) * s
  harm = sh.harmonics(rng, 8, 0.22)
  ext = sh.extent(r, harm)
  if not sh.inside(anat, x, y, 0.75 * ext):
    return None
  hx, hy = min(anat.hila, key=lambda h: math.hypot(h[0] - x, h[1] - y))
  a = math.atan2(y - hy, x - hx)
  p = dict(x=x, y=y, r=r, harm=harm, hu=sh.u(rng, 15, 55), angle=a + rng.normal(0, 0.3),
           edge=min(sh.u(rng, 2, 7) * s, 0.3 * r), halo=sh.u(rng, 0, 0.35), halo_hu=sh.u(rng, -650, -350))
  return p, sh.blob_box(x, y, ext, anat.size)


def paint_ab(img, p, anat, rng, scan):
  s = anat.scale
  sub, xs, ys, idx = sh.window(img, sh.around(p['x'], p['y'], 1.6 * p['r']), 2)
  lung = (anat.lung[idx] > 0).astype(np.float32)
  if p['halo']:  # consolidation fading into ground glass at its margin
    halo = sh.blob_alpha(xs, ys, p['x'], p['y'], p['r'] * (1 + p['halo']), p['harm'], 3 * p['edge'])
    sh.blend(sub, halo * lung * 0.8, p['halo_hu'])
  alpha = sh.blob_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], p['edge']) * lung
  # Not evenly solid: lobules partly aerated at its margin and in patches.
  alpha *= np.clip(sh.u(rng, 0.8, 1.0) + 0.2 * pa.smooth_noise(rng, sub.shape, 4.0 * s),
                   0.3, 1.0)
  sh.blend(sub, alpha, p['hu'] + sh.texture(rng, sub.shape, 15.0, 3.0 * s))
  # Air bronchi enter from the hilar side and branch; they show only inside the opacity.
  a = p['angle']
  x0, y0 = p['x'] - 0.9 * p['r'] * math.cos(a), p['y'] - 0.9 * p['r'] * math.sin(a)
  size = p['r'] / (25 * s)  # fewer, thinner bronchi in a small consolidation
  tree = pa.vessel_tree(rng, anat, x0, y0, a, sh.u(rng, 1.1, 2.6) * s * min(1.0, 0.15 + size),
                        max_segments=int(rng.integers(3, 12) * size) + 2, bounded=False)
  if rng.random() < 0.5:  # a second bronchus entering beside the first
    b = a + sh.u(rng, 0.4, 0.8) * rng.choice([-1, 1])
    tree += pa.vessel_tree(rng, anat, x0, y0, b, sh.u(rng, 1.0, 2.2) * s * min(1.0, 0.15 + size),
                           max_segments=int(rng.integers(2, 8) * min(1.0, size)) + 1,
                           bounded=False)
  inner = np.zeros_like(img)
  inner[idx] = sh.blob_alpha(xs, ys, p['x'], p['y'], 0.85 * p['r'], p['harm'], 1.0) * lung
  _paint_air_bronchi(img, tree, scan, rng, inner)


def _paint_air_bronchi(img, tree, scan, rng, inner):
  """Air-filled bronchi (slab-weighted), shown only where `inner` (the opacity) is."""
  tree = np.array(tree, np.float32).reshape(-1, 6)
  weight = scanner_lib.slab_contrast(2 * tree[:, 4] * scan.spacing, scan.thickness)
  pa.paint_segments(img, np.concatenate([tree, weight[:, None] * rng.uniform(0.7, 1, (len(tree), 1))], 1),
                    sh.AIR_IN, inner)


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


def plan_op(rng, anat, x, y, oversized=False):
  """(x, y) is a hilum; the wedge opens into that hilum's lung."""
  s = anat.scale
  lung = 1 if x < anat.geo['cx'] else 2
  mx, my = anat.centroids[lung - 1]
  apex = 10 * s
  base = math.atan2(my - y, mx - x)
  ax, ay = x + apex * math.cos(base), y + apex * math.sin(base)
  p = dict(ax=ax, ay=ay, lung=lung, angle=base + (0 if oversized else rng.normal(0, 0.5)),
           half=math.pi if oversized else sh.u(rng, 0.25, 0.6),
           reach=1e6 if oversized else sh.u(rng, 70, 210) * s, hu=sh.u(rng, 20, 50),
           mass=sh.u(rng, 9, 17) * s, side=float(rng.choice([-1, 1])),
           bulge=0.0 if oversized else sh.u(rng, 0.1, 0.5), phase=sh.u(rng, 0, 2 * math.pi))
  mask = op_mask(anat, p)
  if mask.sum() < (400 * s * s):
    return None
  ys, xs = np.nonzero(mask)
  box = sh.box(min(xs.min(), ax - p['mass']), min(ys.min(), ay - p['mass']),
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


def paint_op(img, p, anat, rng, scan):
  s = anat.scale
  mask = op_mask(anat, p).astype(np.float32)
  alpha = ndimage.gaussian_filter(mask, sh.u(rng, 1.2, 3.5) * s)
  alpha *= (anat.lung > 0)
  # Consolidation is not even: lobules consolidated to different degrees, running
  # into ground glass in places (broad patches, not round holes).
  patchy = sh.u(rng, 0.05, 0.2)
  alpha *= np.clip(1.0 - patchy + patchy * pa.smooth_noise(rng, img.shape, 6.0 * s),
                   0.5, 1.0)
  img += alpha * (p['hu'] + sh.texture(rng, img.shape, 18.0, 3.0 * s) - img)
  # Air bronchograms: the bronchi leaving the hilum stay aerated inside the wedge.
  inner = ndimage.gaussian_filter(mask, 3 * s) > 0.8
  tree = []
  for _ in range(int(rng.integers(1, 4))):
    tree += pa.vessel_tree(rng, anat, p['ax'], p['ay'], p['angle'] + rng.normal(0, 0.2),
                           sh.u(rng, 0.8, 1.6) * s, int(rng.integers(2, 7)), bounded=False)
  if tree:
    _paint_air_bronchi(img, tree, scan, rng, inner.astype(np.float32))
  sub, xs, ys, _ = sh.window(img, sh.around(p['ax'], p['ay'], 1.5 * p['mass']), 2)
  sh.blend(sub, sh.blob_alpha(xs, ys, p['ax'], p['ay'], p['mass'], sh.harmonics(rng, 4, 0.1), 1.0),
         p['hu'] + 10)
