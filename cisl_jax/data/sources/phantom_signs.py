"""The nine signs of the phantom, each planned and drawn from a shape distribution.

Each sign has a planner `plan(rng, anat, x, y) -> (params, box) | None` that draws one
instance around a candidate point (shape, size, density, where the slice cuts it) and
returns its box (half-open x0, y0, x1, y1) without touching pixels, and a painter
`paint(img, params, anat, rng, scan)` that draws it into the slice's object in HU,
before the scanner blurs it and adds noise. Plans are plain data, so the layout of the
whole phantom (counts, boxes) can be checked without rendering anything.

Nothing is a fixed template: contours are random harmonics and lobes, spicules vary
in number, length and width, densities span SIGNS.md's ranges, and the slab cuts each
nodule at a random height (`phantom_shapes.body_alpha`), so conspicuity varies from
obvious to subtle: a sign is boxed on every slice it shows on, and most of those cut
it well off its centre. Signs co-occur as on real scans: some spiculated nodules are
lobulated, some lobulated and pleural-indentation nodules carry spicules. This module
holds the nodular signs; phantom_signs_airway the BMP, AB and OP. Sizes are in units
of 0.7 mm times `anat.scale`; looks and HU follow SIGNS.md.
"""
import math

import numpy as np

from cisl_jax.data.sources import phantom_anatomy as pa
from cisl_jax.data.sources import phantom_scanner as scanner_lib
from cisl_jax.data.sources import phantom_shapes as sh
from cisl_jax.data.sources import phantom_signs_airway as airway

u = sh.u
op_mask = airway.op_mask


def _spicule_segs(segs, scan, rng):
  """Spicules as tubes (`pa.paint_segments`' 10 columns) that leave the slab.

  `segs` come in pairs (root -> bend, bend -> tip). A strand starts in the slab at
  the nodule's surface and runs off at its own angle, so it thins and fades into
  the parenchyma towards its tip, some within a few mm, some further; a third are
  coarse (up to 1.8 x wider, with a broad base), as on real spiculated masses.
  """
  segs = np.asarray(segs, np.float32).reshape(-1, 2, 6).copy()
  n = len(segs)
  ht = 0.5 * scan.thickness / scan.spacing
  coarse = np.where(rng.random(n) < 0.35, rng.uniform(1.2, 1.8, n), 1.0)
  segs[:, :, 4:6] *= coarse[:, None, None]
  segs[:, 0, 4] *= np.where(coarse > 1, 1.4, 1.0)  # broad base
  tip = rng.uniform(0.4, 1.6, n) * (ht + segs[:, 0, 4])
  mid = tip * rng.uniform(0.2, 0.6, n)
  z = np.stack([np.stack([np.zeros(n), mid], 1), np.stack([mid, tip], 1)], 1)  # (n, 2, 2)
  w = rng.uniform(0.6, 1.0, (n, 1, 1)) * np.ones((n, 2, 1))
  out = np.concatenate([segs, w, z, np.full((n, 2, 1), ht)], 2)
  return out.reshape(-1, 10).astype(np.float32)


def _paint_spicules(img, segs, hu, scan, rng, mask=None):
  """Spicules with a faint, wider sheath: a strand runs in and out of the slab and
  is blurred by partial volume, so its margin is fuzzy rather than a crisp line."""
  segs = _spicule_segs(segs, scan, rng)
  sheath = segs.copy()
  sheath[:, 4:6] = sheath[:, 4:6] * 2.2 + 0.6
  sheath[:, 6] *= 0.3
  pa.paint_segments(img, sheath, hu, mask)
  pa.paint_segments(img, segs, hu, mask)


def _weighted(segs, scan, rng, lo):
  segs = np.asarray(segs, np.float32).reshape(-1, 6)
  w = scanner_lib.slab_contrast((segs[:, 4] + segs[:, 5]) * scan.spacing, scan.thickness)
  return np.concatenate([segs, (w * rng.uniform(lo, 1.0, len(segs)))[:, None]], 1)


def _nodule(img, p, anat, rng, scan, pad=1.3, margin=None):
  """Paints the solid body of a nodular sign: lobed or harmonic contour, cut by the slab.

  margin: (lo, hi) range of the density of the body's outer part relative to its core
  (None: even). Real nodules, spiculated ones most, are densest at the core and partly
  sub-solid towards an irregular margin: the outer 30-60 % of the radius is filled
  unevenly (patches of ground glass in a solid rim).
  """
  sub, xs, ys, _ = sh.window(img, sh.around(p['x'], p['y'], pad * p['r']), 2)
  # Margins are not all crisp: a blurred rim of 1-2 px (partial volume at an oblique
  # border), drawn per nodule.
  edge = p.get('edge', 1.0 + rng.uniform(0, 1.2) * anat.scale)
  if p.get('lobes'):
    alpha = sh.lobed_alpha(xs, ys, p['x'], p['y'], p['r'], p['lobes'], scan, p['z'],
                           p.get('harm', ()), edge)
  else:
    alpha = sh.body_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], scan, p['z'], edge)
  if margin is not None:
    core = sh.blob_alpha(xs, ys, p['x'], p['y'], u(rng, 0.4, 0.7) * p['r'],
                         sh.harmonics(rng, 5, 0.2), u(rng, 0.15, 0.35) * p['r'])
    rim = u(rng, *margin) + 0.15 * pa.smooth_noise(rng, sub.shape, 1.5 * anat.scale)
    alpha *= core + (1.0 - core) * np.clip(rim, 0.2, 1.0)
  sh.blend(sub, alpha, p['hu'] + sh.texture(rng, sub.shape, 15.0, 2.0 * anat.scale))
  return sub, xs, ys


def _ground_glass_halo(img, p, anat, rng, scale=(1.15, 1.6)):
  """A faint, patchy ground-glass rim around a nodule (haemorrhage, lepidic growth)."""
  r = p['r'] * u(rng, *scale)
  sub, xs, ys, idx = sh.window(img, sh.around(p['x'], p['y'], 1.3 * r), 2)
  alpha = sh.blob_alpha(xs, ys, p['x'], p['y'], r, sh.harmonics(rng, 7, 0.2),
                        u(rng, 0.25, 0.5) * r) * (anat.lung[idx] > 0)
  alpha *= np.clip(0.6 + 0.4 * pa.smooth_noise(rng, sub.shape, 2.0 * anat.scale), 0, 1)
  sh.blend(sub, alpha, u(rng, -700, -450))


# ---------------------------------------------------------------------------
# GGO: hazy patch, vessels stay visible through it; some part-solid.

def _plan_ggo(rng, anat, x, y):
  s = anat.scale
  harm = sh.harmonics(rng, 7, 0.22)  # irregular, cloud-like outlines
  # 5-34 mm across; a box that fits the 64-px patch (the patch rule centres it), as
  # all but the largest real GGO do.
  r = min(u(rng, 5, 24) * s, 29.0 / sh.extent(1.0, harm))
  ext = sh.extent(r, harm)
  if not sh.inside(anat, x, y, 0.8 * ext + 3 * s):
    return None
  solid = rng.random() < 0.25
  faint = rng.random() < 0.5  # half are a faint haze (-760..-600 HU)
  hu = u(rng, -760, -600) if faint else u(rng, -600, -300)
  # A faint one cut near its pole would vanish in the noise: cut those nearer the centre.
  p = dict(x=x, y=y, r=r, harm=harm, edge=u(rng, 0.25, 0.6) * r, hu=hu,
           core=u(rng, 0.2, 0.45) * r if solid else 0.0,
           z=sh.cut_height(rng, r, 0.25 if faint else 0.5),
           vessel_angle=u(rng, 0, 2 * math.pi), n_vessels=int(rng.choice([0, 1, 1, 2, 3])))
  return p, sh.blob_box(x, y, ext, anat.size)


def _paint_ggo(img, p, anat, rng, scan):
  s = anat.scale
  # Vessels crossing the patch first, so that they show through the haze. Each enters
  # from outside, runs through with a bend and tapers, sometimes forking.
  segs = []
  for i in range(p['n_vessels']):
    a = p['vessel_angle'] + i * u(rng, 1.0, 2.0)
    off = u(rng, -0.5, 0.5) * p['r']
    x, y = p['x'] - off * math.sin(a), p['y'] + off * math.cos(a)
    half, rad = u(rng, 0.9, 1.3) * p['r'], u(rng, 0.6, 1.5) * s
    segs.append((x - half * math.cos(a), y - half * math.sin(a), x, y, rad, 0.8 * rad))
    for b in ([a + u(rng, -0.3, 0.3)] if rng.random() < 0.6 else
              [a + u(rng, 0.3, 0.6), a - u(rng, 0.3, 0.6)]):
      segs.append((x, y, x + half * math.cos(b), y + half * math.sin(b), 0.8 * rad, 0.4 * rad))
  if segs:
    pa.paint_segments(img, _weighted(segs, scan, rng, 0.7), 45.0,
                      (anat.lung > 0).astype(np.float32))
  sub, xs, ys, _ = sh.window(img, sh.around(p['x'], p['y'], 2 * p['r']), 2)
  # Cloud-like: the haze's density and its edge both vary patchily.
  alpha = sh.body_alpha(xs, ys, p['x'], p['y'], p['r'], p['harm'], scan, p['z'], p['edge'])
  # Patchy: lobules filled to different degrees, some hardly at all.
  alpha *= np.clip(0.8 + 0.35 * pa.smooth_noise(rng, sub.shape, 2.5 * s), 0.25, 1.0)
  haze = p['hu'] + sh.texture(rng, sub.shape, 40.0, 1.5 * s)
  # max() keeps vessels (denser than the haze) visible inside it.
  sub[...] = np.maximum(sub, sub + alpha * (haze - sub))
  if p['core']:
    core = sh.body_alpha(xs, ys, p['x'], p['y'], p['core'], sh.harmonics(rng, 4, 0.15), scan,
                         0.0, 1.0 * s)
    sh.blend(sub, core, u(rng, *sh.SOFT))


# ---------------------------------------------------------------------------
# Lobulation: solid nodule whose border is a run of shallow convex arcs.

def _plan_lobulation(rng, anat, x, y):
  s = anat.scale
  r = u(rng, 5, 19) * s
  lobe_list = sh.lobes(rng, r, int(rng.integers(3, 10)), u(rng, 0.15, 0.4))
  ext = max(d + rl for _, rl, d in lobe_list)
  if not sh.inside(anat, x, y, ext + 3 * s):
    return None
  p = dict(x=x, y=y, r=r, lobes=lobe_list, hu=u(rng, *sh.SOFT), z=sh.cut_height(rng, r, 0.85),
           harm=sh.harmonics(rng, 6, 0.08))
  if rng.random() < 0.25:  # lobulated and (finely) spiculated, as malignant nodules are
    p['segs'] = sh.spicules(rng, x, y, r, int(rng.integers(3, 9)), s, (3, 10), (0.4, 1.0))
  return p, sh.blob_box(x, y, ext + (10 * s if 'segs' in p else 0), anat.size)


def _paint_lobulation(img, p, anat, rng, scan):
  if p.get('segs'):
    _paint_spicules(img, p['segs'], p['hu'], scan, rng)
  _nodule(img, p, anat, rng, scan, margin=(0.6, 1.0))


# ---------------------------------------------------------------------------
# Calcification: dense bright focus (dot, rings, diffuse or popcorn) in a nodule.

def _plan_calcification(rng, anat, x, y):
  s = anat.scale
  kind = str(rng.choice(['dense', 'dense', 'central', 'rings', 'diffuse', 'popcorn']))
  r = (u(rng, 2, 6) if kind == 'dense' else u(rng, 4, 11)) * s
  if not sh.inside(anat, x, y, r + 3 * s):
    return None
  p = dict(x=x, y=y, r=r, kind=kind, hu=u(rng, *sh.SOFT), calc=u(rng, 200, 1000),
           harm=sh.harmonics(rng, 4, 0.1), z=sh.cut_height(rng, r, 0.7))
  return p, sh.blob_box(x, y, r * 1.2, anat.size)


def _paint_calcification(img, p, anat, rng, scan):
  s = anat.scale
  x, y, r = p['x'], p['y'], p['r']
  sub, xs, ys, _ = sh.window(img, sh.around(x, y, 1.3 * r), 2)
  sh.blend(sub, sh.body_alpha(xs, ys, x, y, r, p['harm'], scan, p['z']),
           p['calc'] if p['kind'] == 'dense' else p['hu'])
  if p['kind'] == 'central':
    pa.paint_discs(img, x, y, max(1.5 * s, 0.45 * r), p['calc'])
  elif p['kind'] == 'rings':
    d = np.sqrt((xs - x) ** 2 + (ys - y) ** 2)
    for rr in (0.45 * r, 0.85 * r):
      sh.blend(sub, np.clip(1.0 * s - np.abs(d - rr) + 0.5, 0, 1), p['calc'])
  elif p['kind'] == 'diffuse':
    sh.blend(sub, sh.blob_alpha(xs, ys, x, y, 0.9 * r, p['harm'], 1.0),
             p['calc'] + sh.texture(rng, sub.shape, 80.0))
  else:  # popcorn: several dense clumps
    n = int(rng.integers(3, 8))
    ang, rad = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 0.6 * r, n)
    pa.paint_discs(img, x + rad * np.cos(ang), y + rad * np.sin(ang),
                   rng.uniform(1.0, 2.6, n) * s, p['calc'])


# ---------------------------------------------------------------------------
# CV: a cavity (air hole with an uneven wall) or vacuoles (small bubbles) in a nodule.

def _plan_cv(rng, anat, x, y):
  s = anat.scale
  cavity = rng.random() < 0.6
  if cavity:
    r = (u(rng, 33, 46) if rng.random() < 0.15 else u(rng, 7, 26)) * s
  else:
    r = u(rng, 6, 16) * s
  harm = sh.harmonics(rng, 7, 0.16)
  ext = sh.extent(r, harm)
  if not sh.inside(anat, x, y, ext + 2 * s):
    return None
  p = dict(x=x, y=y, r=r, harm=harm, hu=u(rng, *sh.SOFT), cavity=cavity,
           z=sh.cut_height(rng, r, 0.55), edge=u(rng, 1.0, 3.0) * s)
  if cavity:
    rin = r * u(rng, 0.3, 0.85)  # from thick-walled to thin-walled cavities
    off, ang = (r - rin) * u(rng, 0.2, 0.8), u(rng, 0, 2 * math.pi)
    # The inner wall is nodular and uneven (irregular thickness), its edge soft where
    # the slab cuts it obliquely; some cavities hold a little fluid or debris.
    p.update(rin=rin, cx=x + off * math.cos(ang), cy=y + off * math.sin(ang),
             inner_harm=sh.harmonics(rng, 9, 0.3), inner_edge=u(rng, 1.0, 3.0) * s,
             air=u(rng, -960, -800))
  else:
    n = int(rng.integers(1, 5))
    ang, rad = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 0.55 * r, n)
    p.update(bx=(x + rad * np.cos(ang)).tolist(), by=(y + rad * np.sin(ang)).tolist(),
             br=(rng.uniform(1.0, 3.0, n) * s).tolist())
  return p, sh.blob_box(x, y, ext, anat.size)


def _paint_cv(img, p, anat, rng, scan):
  sub, xs, ys = _nodule(img, p, anat, rng, scan, pad=1.4)
  if p['cavity']:
    sh.blend(sub, sh.blob_alpha(xs, ys, p['cx'], p['cy'], p['rin'], p['inner_harm'],
                                p.get('inner_edge', 1.0)), p.get('air', sh.AIR_IN))
  else:
    pa.paint_discs(img, p['bx'], p['by'], p['br'], sh.AIR_IN)


# ---------------------------------------------------------------------------
# Spiculation: nodule with strands radiating from its margin (sunburst).

def _plan_spiculation(rng, anat, x, y):
  s = anat.scale
  r = u(rng, 6, 17) * s
  segs = sh.spicules(rng, x, y, r, int(rng.integers(3, 19)), s, (4, 24), (0.35, 1.2))
  pts = np.array(segs)[:, [0, 1, 2, 3]].reshape(-1, 2)
  if not sh.inside(anat, x, y, r + 3 * s) or not all(sh.inside(anat, a, b, 2 * s) for a, b in pts):
    return None
  # Malignant margins are ill-defined: a wider soft rim than other solid nodules.
  p = dict(x=x, y=y, r=r, harm=sh.harmonics(rng, 8, 0.14), segs=segs, hu=u(rng, *sh.SOFT),
           z=sh.cut_height(rng, r, 0.85), edge=u(rng, 1.5, 3.5) * s)
  if rng.random() < 0.4:  # also lobulated
    p['lobes'] = sh.lobes(rng, r, int(rng.integers(3, 8)), u(rng, 0.22, 0.4))
  return p, sh.box(min(pts[:, 0].min(), x - r) - 1, min(pts[:, 1].min(), y - r) - 1,
                   max(pts[:, 0].max(), x + r) + 1, max(pts[:, 1].max(), y + r) + 1, anat.size)


def _paint_spiculation(img, p, anat, rng, scan):
  if rng.random() < 0.6:
    _ground_glass_halo(img, p, anat, rng)
  _paint_spicules(img, p['segs'], p['hu'], scan, rng)
  _nodule(img, p, anat, rng, scan, margin=(0.35, 0.85))


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
  r = u(rng, 5, 15) * s
  gap = u(rng, 5, 22) * s
  cx, cy = x + (r + gap) * nx, y + (r + gap) * ny
  if not sh.inside(anat, cx, cy, r + 1.5 * s):
    return None
  tags, notches = [], []
  n_tags = int(rng.choice([1, 1, 2, 3]))
  for i in range(n_tags):
    t = (u(rng, -0.3, 0.3) if n_tags == 1 else (i - 0.5 * (n_tags - 1)) * u(rng, 0.5, 1.2)) * r
    px, py = x + t * ny, y - t * nx  # where the strand meets the pleura
    depth, k = u(rng, 1.5, 6) * s, u(rng, 3, 7) * s
    # The pleura pulled in: a rounded notch of chest-wall tissue bulging into the lung.
    notches.append((px - k * nx, py - k * ny, k + depth))
    tags.append((px + depth * nx, py + depth * ny, cx + 0.3 * t * ny, cy - 0.3 * t * nx,
                 u(rng, 0.6, 2.6) * s, u(rng, 0.3, 1.0) * s))
  p = dict(x=cx, y=cy, r=r, harm=sh.harmonics(rng, 6, 0.12), tags=tags, notches=notches,
           hu=u(rng, *sh.SOFT), z=sh.cut_height(rng, r, 0.85))
  if rng.random() < 0.35:  # PI with spiculation, as they often come together
    p['segs'] = sh.spicules(rng, cx, cy, r, int(rng.integers(3, 9)), s, (3, 10), (0.4, 1.0))
  if rng.random() < 0.25:
    p['lobes'] = sh.lobes(rng, r, int(rng.integers(3, 8)), u(rng, 0.22, 0.4))
  ext = r + (10 * s if 'segs' in p else 0)
  pts = np.array([(a[0], a[1]) for a in tags] + [(cx - ext, cy - ext), (cx + ext, cy + ext)] +
                 [(a + c * nx, b + c * ny) for a, b, c in notches])
  return p, sh.box(pts[:, 0].min() - 1, pts[:, 1].min() - 1, pts[:, 0].max() + 1,
                   pts[:, 1].max() + 1, anat.size)


def _paint_pi(img, p, anat, rng, scan):
  # A triangular tag, broad at the pleura, pulls the pleura in: a notch in the lung.
  lungf = (anat.lung > 0).astype(np.float32)
  nx, ny, nr = np.array(p['notches']).T
  pa.paint_discs(img, nx, ny, nr, pa.MUSCLE, lungf)
  pa.paint_segments(img, _weighted(p['tags'], scan, rng, 0.8), p['hu'])
  if p.get('segs'):
    _paint_spicules(img, p['segs'], p['hu'], scan, rng, lungf)
  _nodule(img, p, anat, rng, scan, margin=(0.6, 1.0))


PLANNERS = {'GGO': _plan_ggo, 'lobulation': _plan_lobulation,
            'calcification': _plan_calcification, 'CV': _plan_cv,
            'spiculation': _plan_spiculation, 'PI': _plan_pi, 'BMP': airway.plan_bmp,
            'AB': airway.plan_ab, 'OP': airway.plan_op}
PAINTERS = {'GGO': _paint_ggo, 'lobulation': _paint_lobulation,
            'calcification': _paint_calcification, 'CV': _paint_cv,
            'spiculation': _paint_spiculation, 'PI': _paint_pi, 'BMP': airway.paint_bmp,
            'AB': airway.paint_ab, 'OP': airway.paint_op}


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
    out = (airway.plan_op(rng, anat, x, y, True) if oversized
           else PLANNERS[sign](rng, anat, x, y))
    if out is None or out[1] is None:
      continue
    box = out[1]
    if oversized or not any(box[0] < b[2] + margin and b[0] < box[2] + margin and
                            box[1] < b[3] + margin and b[1] < box[3] + margin for b in taken):
      return out
  return None


def paint_sign(img, sign, params, anat, rng, scan):
  """Draws one planned sign into the slice's object (HU, in place)."""
  PAINTERS[sign](img, params, anat, rng, scan)
