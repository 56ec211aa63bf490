"""Anatomy of the phantom chest slice, in Hounsfield units.

One `Anatomy` per patient holds the random shape of the chest (body outline, fat and
muscle layers, two lungs around the mediastinum, heart, aorta, spine, ribs) as masks;
`render_base` paints its static tissues once; `phantom_lung` adds what changes from
slice to slice (texture, vessels, airways, fissures, normal confounders) and
`phantom_scanner` images the object last. Body sizes are in pixels of a 512 slice and
scale with the slice size; lung detail scales with `Anatomy.scale` (pixels per 0.7 mm).
"""
import collections
import dataclasses
import functools
import math

import numpy as np
from scipy import ndimage

AIR = -1000.0
FAT = -95.0
MEDIASTINAL_FAT = -80.0
MUSCLE = 45.0
LUNG = -885.0
CORTEX = 700.0
MARROW = 230.0


@dataclasses.dataclass
class Anatomy:
  """One patient's chest: masks and the shape parameters `render_base` paints."""
  size: int
  scale: float  # pixels per 0.7 mm: lengths of lung detail and signs are multiplied by it
  lung: np.ndarray  # int8, 0 outside the lungs, 1 image-left lung, 2 image-right lung
  dist: np.ndarray  # float32, distance (px) to the lung border inside the lungs, else 0
  costal: np.ndarray  # bool, lung pixels within a few px of the chest wall (not mediastinum)
  hila: tuple  # ((x, y), (x, y)) where the vessels of lung 1 and lung 2 enter
  centroids: tuple  # ((x, y), (x, y)) of lung 1 and lung 2
  body_box: tuple  # (x0, y0, x1, y1) half-open box around the body
  geo: dict  # the random shape parameters


@functools.lru_cache(maxsize=4)
def grid(size: int):
  """Pixel coordinate grids (xx, yy), float32, of a size x size slice (cached)."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  return xx, yy


def _chest_terms(g, size):
  """Per-patient terms shared by every chest outline: |dx|^p, |dy|^p, wobble^p, back."""
  xx, yy = grid(size)
  dx, dy = xx - g['cx'], yy - g['cy']
  theta = np.arctan2(dy, dx)
  wob = 1.0 + sum(amp * np.cos(k * theta + ph) for k, amp, ph in g['wobble'])
  p = g['p']
  return np.abs(dx) ** p, np.abs(dy) ** p, wob ** p, dy > 0


def _inside(terms, p, a, b, b_post):
  """Mask of a superellipse around the chest centre, flatter behind (b_post < b)."""
  ax, ay, wob, back = terms
  return ax * a ** -p + ay * np.where(back, b_post ** -p, b ** -p) < wob


def make_anatomy(rng: np.random.Generator, size: int = 512,
                 spacing: float | None = None) -> Anatomy:
  """Draws one patient's chest geometry (masks only; no pixels rendered).

  The chest fills the slice about as a scanner's field of view is fitted to the
  patient (its size in pixels scales with `size`); lung detail and signs are sized in
  mm, so with `spacing` (mm per pixel) their size in pixels varies between patients.
  """
  s = size / 512.0
  xx, yy = grid(size)
  u = rng.uniform
  g = dict(cx=size / 2 + u(-6, 6) * s, cy=size / 2 + u(4, 22) * s,
           a=u(196, 230) * s, b=u(136, 160) * s, p=u(2.2, 2.8),
           fat=u(5, 24) * s, muscle=u(9, 18) * s, ribs=u(7, 10) * s,
           wobble=tuple((k, u(0, 0.02), u(0, 2 * math.pi)) for k in (2, 3, 5)))
  g['b_post'] = g['b'] * u(0.9, 0.98)
  inset = g['fat'] + g['muscle'] + g['ribs']
  g['ac'], g['bc'] = g['a'] - inset, g['b'] - inset
  g['bc_post'] = g['b_post'] - inset
  g['rv'] = u(19, 25) * s  # vertebral body radius
  g['sy'] = g['cy'] + g['bc_post'] - 1.15 * g['rv']  # vertebral body centre row
  g['w_post'] = g['rv'] + u(3, 9) * s  # mediastinum half-width behind the heart
  g['w_heart'] = u(55, 82) * s
  g['shift'] = u(12, 32) * s  # the heart lies to the patient's left (image right)
  g['v_heart'] = u(-0.35, -0.05)
  # Most chest CTs of lung nodules (screening, LIDC) are without contrast; with it
  # (venous phase) blood is 120-220 HU.
  g['contrast'] = bool(rng.random() < 0.3)
  g['blood'] = u(120, 220) if g['contrast'] else u(35, 50)
  g['lung_hu'] = LUNG + u(-45, 5)  # vessels blurred by the kernel add ~20 HU

  terms = _chest_terms(g, size)
  body = _inside(terms, g['p'], g['a'], g['b'], g['b_post'])
  cav = _inside(terms, g['p'], g['ac'], g['bc'], g['bc_post'])
  v = (yy[:, :1] - g['cy']) / g['bc']
  bump = np.exp(-((v - g['v_heart']) / 0.45) ** 2)
  half = g['w_post'] + (g['w_heart'] - g['w_post']) * bump
  mid = g['cx'] + g['shift'] * bump
  lungs = cav & (np.abs(xx - mid) > half)
  # Round the corners where lung meets mediastinum, as real lungs do.
  lungs = ndimage.gaussian_filter(lungs.astype(np.float32), 3 * s) > 0.5
  label = np.where(lungs, np.where(xx < mid, 1, 2), 0).astype(np.int8)
  dist = ndimage.distance_transform_edt(lungs).astype(np.float32)
  costal = lungs & ~ndimage.binary_erosion(cav, iterations=max(1, int(5 * s)))

  hila, centroids = [], []
  y_hil = g['cy'] + u(-0.1, 0.15) * g['bc']
  row = int(round(y_hil))
  for lab in (1, 2):
    cols = np.flatnonzero(label[row] == lab)
    x_med = cols.max() if lab == 1 else cols.min()
    hila.append((float(x_med) + (3 if lab == 1 else -3) * s, float(row)))
    ys, xs = np.nonzero(label == lab)
    centroids.append((float(xs.mean()), float(ys.mean())))
  ys, xs = np.nonzero(body)
  body_box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
  scale = 0.7 / spacing if spacing else s
  g['vessel_hu'] = u(20, 55)  # unenhanced blood in the lung's vessels (drawn last:
  # the draws above fix the masks, and so the layout)
  return Anatomy(size=size, scale=scale, lung=label, dist=dist, costal=costal,
                 hila=tuple(hila), centroids=tuple(centroids), body_box=body_box, geo=g)


# ---------------------------------------------------------------------------
# Painting primitives shared with the signs.

def paint_segments(img, segs, value, mask=None):
  """Blends tapered, round-capped segments of one HU `value` into `img` in place.

  segs: (N, 6) rows x0, y0, x1, y1, r0, r1 (radius at each end, px), or (N, 7) with a
  last column `weight` in [0, 1]: the share of the slab the segment fills (partial
  volume from the slice thickness), which scales how far it raises the pixels. The
  edge is anti-aliased over one pixel, so a segment thinner than a pixel only partly
  raises it, like partial volume in-plane. Or (N, 10) rows with weight, z0, z1, half_t:
  a tube (a vessel) whose axis lies z0 -> z1 px above the middle of a slab of half
  thickness half_t px; each pixel gets the share of the slab that the tube's chord
  there fills, so the profile across it is rounded (grey at its borders, and a thin
  tube faint throughout) and it fades where it leaves the slab. Where segments overlap
  the strongest one wins. `mask` (float, image-sized) limits where they show.
  Vectorised: segments are evaluated in batches of equal-sized windows, so a slice's
  hundreds of vessel segments cost a few array operations.
  """
  segs = np.asarray(segs, np.float32)
  if not segs.size:
    return
  segs = segs.reshape(len(segs), -1)
  weight = segs[:, 6] if segs.shape[1] >= 7 else np.ones(len(segs), np.float32)
  tube = segs[:, 7:10] if segs.shape[1] == 10 else None
  segs = segs[:, :6]
  h, w = img.shape
  ax, ay, bx, by, r0, r1 = segs.T
  pad = np.maximum(r0, r1) + 1.0
  x0 = np.floor(np.minimum(ax, bx) - pad).astype(np.int64)
  y0 = np.floor(np.minimum(ay, by) - pad).astype(np.int64)
  extent = np.maximum(np.ceil(np.maximum(ax, bx) + pad) - x0,
                      np.ceil(np.maximum(ay, by) + pad) - y0).astype(np.int64) + 1
  xa, ya = max(0, int(x0.min())), max(0, int(y0.min()))
  xb, yb = min(w, int((x0 + extent).max())), min(h, int((y0 + extent).max()))
  if xa >= xb or ya >= yb:
    return
  alpha = np.zeros((yb - ya, xb - xa), np.float32)
  flat = alpha.reshape(-1)
  size = 8
  while True:
    sel = np.flatnonzero((extent <= size) & (extent > size // 2)) if size > 8 else \
        np.flatnonzero(extent <= size)
    if len(sel):
      k = np.arange(size, dtype=np.int64)
      xs = x0[sel, None] + k  # (n, size)
      ys = y0[sel, None] + k
      px = (xs - ax[sel, None]).astype(np.float32)[:, None, :]
      py = (ys - ay[sel, None]).astype(np.float32)[:, :, None]
      dx, dy = (bx - ax)[sel, None, None], (by - ay)[sel, None, None]
      t = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
      d = np.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2)
      rad = r0[sel, None, None] + (r1 - r0)[sel, None, None] * t
      if tube is None:
        a = np.clip(rad - d + 0.5, 0.0, 1.0)
      else:  # the chord through the tube at this pixel (reaching half a pixel past
        # its radius, for anti-aliasing), overlapped with the slab
        z0, z1, ht = (tube[sel, j, None, None] for j in range(3))
        h = np.sqrt(np.maximum((rad + 0.5) ** 2 - d * d, 0.0)) * (rad / (rad + 0.5))
        z = z0 + (z1 - z0) * t
        a = np.clip((np.minimum(z + h, ht) - np.maximum(z - h, -ht)) / (2 * ht), 0.0, 1.0)
      a *= weight[sel, None, None]
      ok = ((xs >= xa) & (xs < xb))[:, None, :] & ((ys >= ya) & (ys < yb))[:, :, None] & (a > 0)
      idx = (ys - ya)[:, :, None] * (xb - xa) + (xs - xa)[:, None, :]
      np.maximum.at(flat, idx[ok], a[ok])
    if size >= extent.max():
      break
    size *= 2
  if mask is not None:
    alpha *= mask[ya:yb, xa:xb]
  sub = img[ya:yb, xa:xb]
  sub += alpha * (np.float32(value) - sub)


def paint_discs(img, xs, ys, rs, value, mask=None):
  """Blends anti-aliased discs (zero-length segments)."""
  xs, ys, rs = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.float32))
                                     for a in (xs, ys, rs)))
  paint_segments(img, np.stack([xs, ys, xs, ys, rs, rs], 1), value, mask)


def smooth_noise(rng, shape, sigma):
  """Gaussian-filtered white noise rescaled to unit standard deviation."""
  n = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
  return n / (n.std() + 1e-6)


# ---------------------------------------------------------------------------
# Static tissues, once per patient.

def render_base(anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
  """Paints the patient's static tissues (everything but the lung interior's detail)."""
  g, size = anat.geo, anat.size
  s = size / 512.0  # body-level structures follow the field of view, not the mm scale
  xx, yy = grid(size)
  cx, cy, p = g['cx'], g['cy'], g['p']

  terms = _chest_terms(g, size)

  def inside(a, b, b_post):
    return _inside(terms, p, a, b, b_post)

  img = np.full((size, size), AIR, np.float32)
  # Scanner table: a curved pad under the patient.
  table_y = cy + g['b_post'] + 3 * s + 0.0005 * (xx - cx) ** 2 / s
  img[(yy > table_y) & (yy < table_y + 5 * s) & (np.abs(xx - cx) < 0.9 * g['a'])] = -250.0
  img[inside(g['a'], g['b'], g['b_post'])] = FAT
  f = g['fat']
  img[inside(g['a'] - f, g['b'] - f, g['b_post'] - f)] = MUSCLE
  # Paraspinal muscles fill the back beside the spine.
  for side in (-1, 1):
    par = ((xx - cx - side * 30 * s) / (26 * s)) ** 2 + ((yy - g['sy'] - 38 * s) / (20 * s)) ** 2
    img[par < 1] = MUSCLE + 5
  f += g['muscle']
  img[inside(g['a'] - f, g['b'] - f, g['b_post'] - f)] = MUSCLE - 5  # intercostal layer
  inset = f + g['ribs']
  # Extrapleural fat: a thin layer between the ribs and the pleura.
  ep = rng.uniform(1.5, 4.0) * s
  img[inside(g['a'] - inset + ep, g['b'] - inset + ep, g['b_post'] - inset + ep)] = FAT + 20
  cav = inside(g['a'] - inset, g['b'] - inset, g['b_post'] - inset)
  img[cav] = MEDIASTINAL_FAT
  _marble(img, img > FAT - 30, rng, s, (cx, cy))
  # Heart (myocardium + blood pool) and great vessels.
  hx, hy = cx + g['shift'], cy + g['v_heart'] * g['bc']
  hax, hay = 0.82 * g['w_heart'], 0.36 * g['bc']
  heart = ((xx - hx) / hax) ** 2 + ((yy - hy) / hay) ** 2
  img[heart < 1] = 45.0
  img[heart < 0.55] = g['blood']
  ao_r = rng.uniform(9, 13) * s
  paint_discs(img, cx + g['rv'] + 6 * s, g['sy'] - 0.8 * g['rv'], ao_r, g['blood'])
  paint_discs(img, cx - 2 * s, hy - hay - 6 * s, 12 * s, g['blood'])  # ascending aorta
  paint_discs(img, cx - 4 * s, g['sy'] - g['rv'] - 7 * s, 5 * s, 35.0)  # oesophagus
  # Hilar pulmonary arteries and main bronchi.
  for (x, y), sign in zip(anat.hila, (1, -1)):
    paint_discs(img, x + sign * 9 * s, y, 11 * s, g['blood'] if g['contrast'] else 45.0)
    paint_discs(img, x + sign * 12 * s, y + 16 * s, 7.5 * s, 20.0)
    paint_discs(img, x + sign * 12 * s, y + 16 * s, 6 * s, AIR)
  # Lungs: denser towards the back (gravity-dependent perfusion).
  dep = np.clip((yy - (cy - g['bc'])) / (2 * g['bc']), 0, 1) ** 2
  lung = anat.lung > 0
  slow = 12.0 * _upsample(rng.standard_normal((16, 16), dtype=np.float32), size)
  img[lung] = (g['lung_hu'] + 45.0 * dep + slow)[lung]
  _irregular_pleura(img, anat, rng)
  _paint_spine(img, g, s)
  _paint_ribs(img, g, s, rng, cav)
  return img


def _irregular_pleura(img, anat, rng):
  """The lung's border is not a clean curve: small bumps of the chest wall into it.

  Extrapleural fat, intercostal muscle and the pleura itself make the costal border
  undulate by a pixel or so over several mm, with denser and fatter stretches; drawn
  as overlapping shallow caps of wall tissue (-60 or +35 HU), 4-12 mm wide, reaching
  0.1-0.7 mm into the lung, at about one per 6 mm of border (smooth, not notched).
  """
  s = anat.scale
  ys, xs = np.nonzero((anat.dist > 0) & (anat.dist <= 1.0))
  if not len(xs):
    return
  k = rng.choice(len(xs), size=max(1, int(len(xs) / (8.6 * s))), replace=False)
  gy, gx = np.gradient(anat.dist)
  nx, ny = gx[ys[k], xs[k]], gy[ys[k], xs[k]]
  n = np.hypot(nx, ny) + 1e-6
  r = rng.uniform(3.0, 8.6, len(k)) * s
  depth = rng.uniform(0.15, 1.0, len(k)) * s
  cx = xs[k] - (r - depth) * nx / n
  cy = ys[k] - (r - depth) * ny / n
  segs = np.stack([cx, cy, cx, cy, r, r], 1).astype(np.float32)
  for hu, part in ((-60.0, slice(0, None, 2)), (35.0, slice(1, None, 2))):
    paint_segments(img, segs[part], hu)


def _marble(img, soft, rng, s, centre):
  """Soft-tissue texture: fat streaks between muscle fibres and a mottle in fat.

  Real muscle and fat are not flat: fascia, fat septa and small vessels give the chest
  wall and mediastinum a streaky, mottled look even on a lung window. The chest wall's
  muscles run around the chest, so the streaks are drawn in polar coordinates about
  its centre: long along the wall, thin across it.
  """
  shape = img.shape
  n_th, n_r = 512, shape[0]
  polar = ndimage.gaussian_filter(rng.standard_normal((n_th, n_r), dtype=np.float32),
                                  (4.5, 1.6 * s), mode=('wrap', 'reflect'))
  polar /= polar.std() + 1e-6
  muscle = soft & (img > 0)
  ys, xs = np.nonzero(muscle)  # sampled only where it is used (a quarter of the slice)
  th = (np.arctan2(ys - centre[1], xs - centre[0]) + math.pi) * (n_th / (2 * math.pi))
  rad = np.hypot(xs - centre[0], ys - centre[1])
  streak = ndimage.map_coordinates(polar, np.stack([th, rad]), order=1, mode='grid-wrap')
  # Fat septa between the muscle bundles: on a lung window (-90 vs +45 HU) they are
  # the chest wall's visible texture, a fifth to a third of its area.
  fat = np.clip((streak - 0.35) / 0.7, 0, 1)
  img[ys, xs] += fat * (FAT + 15 - img[ys, xs])
  img += soft * 24.0 * smooth_noise(rng, shape, 1.5 * s)


def _paint_spine(img, g, s):
  cx, sy, rv = g['cx'], g['sy'], g['rv']
  canal_y = sy + rv + 9 * s
  # Posterior arch, spinous and transverse processes.
  paint_segments(img, [(cx, canal_y, cx, canal_y + 24 * s, 5 * s, 3.5 * s),
                       (cx - 6 * s, canal_y, cx - 32 * s, canal_y - 6 * s, 5 * s, 4 * s),
                       (cx + 6 * s, canal_y, cx + 32 * s, canal_y - 6 * s, 5 * s, 4 * s)],
                 520.0)
  paint_discs(img, cx, canal_y, 13 * s, 520.0)
  paint_discs(img, cx, canal_y, 8.5 * s, 20.0)  # spinal canal
  paint_discs(img, cx, sy, rv, CORTEX)
  paint_discs(img, cx, sy, rv - 2.2 * s, MARROW)


def _paint_ribs(img, g, s, rng, cav):
  """Rib cross-sections along the chest wall, the sternum and the scapulae."""
  cx, cy = g['cx'], g['cy']
  mid = g['fat'] + g['muscle'] + 0.5 * g['ribs']
  segs = []
  for side in (-1, 1):
    angles = np.sort(rng.uniform(-1.35, 1.45, size=rng.integers(8, 12)))
    for th in angles:  # th: 0 lateral, > 0 towards the back
      a, b = g['a'] - mid, (g['b_post'] if th > 0 else g['b']) - mid
      x = cx + side * a * math.cos(th) ** (2 / g['p'])
      y = cy + b * math.copysign(abs(math.sin(th)) ** (2 / g['p']), th)
      tx, ty = -b * math.sin(th), side * a * math.cos(th)  # along the wall
      n = math.hypot(tx, ty) + 1e-6
      half = rng.uniform(4, 12) * s
      r = rng.uniform(3.5, 4.8) * s
      segs.append((x - half * tx / n, y - half * ty / n, x + half * tx / n,
                   y + half * ty / n, r, r))
  segs = np.array(segs, np.float32)
  paint_segments(img, segs, CORTEX + rng.uniform(-100, 100))
  inner = segs.copy()
  inner[:, 4:] -= 1.8 * s
  paint_segments(img, inner, MARROW)
  st_y = cy - g['b'] + g['fat'] + 0.6 * g['muscle']
  paint_segments(img, [(cx - 14 * s, st_y, cx + 14 * s, st_y, 6 * s, 6 * s)], 500.0)
  paint_segments(img, [(cx - 12 * s, st_y, cx + 12 * s, st_y, 4 * s, 4 * s)], 200.0)
  for side in (-1, 1):
    x0, y0 = cx + side * 0.5 * g['a'], cy + 0.75 * g['b_post']
    x1, y1 = cx + side * 0.82 * g['a'], cy + 0.42 * g['b_post']
    paint_segments(img, [(x0, y0, x1, y1, 3 * s, 3 * s)], 600.0, mask=(~cav).astype(np.float32))


# ---------------------------------------------------------------------------
# What changes from slice to slice.

def vessel_tree(rng, anat, x, y, angle, radius, max_segments=60, bounded=True):
  """Segments of one branching, tapering tree grown from (x, y).

  `max_segments` caps the branches; each branch is three segments along a curve.

  With `bounded` a branch stops where it nears the lung border; without, it grows
  freely (air bronchi, which are clipped to their consolidation when painted).
  """
  s = anat.scale
  # Breadth first, so that a capped tree still branches on both sides.
  segs, queue, branches = [], collections.deque([(x, y, angle, radius, 0)]), 0
  while queue and branches < max_segments:
    x, y, a, r, depth = queue.popleft()
    branches += 1
    length = rng.uniform(7, 18) * s * (0.6 + 0.3 * r / s)
    a = a + rng.normal(0, 0.18)
    r2 = r * rng.uniform(0.75, 0.88)
    # A branch is a gentle curve (three pieces turning the same way), not a stick.
    bend = rng.normal(0, 0.15)
    x2, y2, rr = x, y, r
    for k in range(3):
      a += bend + rng.normal(0, 0.05)
      xn, yn = x2 + length / 3 * math.cos(a), y2 + length / 3 * math.sin(a)
      rn = r + (r2 - r) * (k + 1) / 3
      segs.append((x2, y2, xn, yn, rr, rn))
      x2, y2, rr = xn, yn, rn
    xi, yi = int(round(x2)), int(round(y2))
    if (r2 < 0.45 * s or depth > 8 or not (0 <= xi < anat.size and 0 <= yi < anat.size)
        or (bounded and anat.dist[yi, xi] < 2 * r2)):
      continue
    if rng.random() < 0.65:
      spread = rng.uniform(0.3, 0.7)
      # Asymmetric fork: one thinner side branch, one near-continuation.
      queue.append((x2, y2, a + spread * rng.uniform(0.4, 1), r2 * rng.uniform(0.7, 0.85),
                    depth + 1))
      queue.append((x2, y2, a - spread * rng.uniform(0.4, 1), r2 * rng.uniform(0.8, 0.95),
                    depth + 1))
    else:
      queue.append((x2, y2, a, r2, depth + 1))
  return segs


@functools.lru_cache(maxsize=4)
def _interp_matrix(n_in, n_out):
  """(n_out, n_in) linear interpolation weights, corners aligned."""
  pos = np.linspace(0, n_in - 1, n_out)
  lo = np.minimum(pos.astype(int), n_in - 2)
  w = np.zeros((n_out, n_in), np.float32)
  w[np.arange(n_out), lo] = 1 - (pos - lo)
  w[np.arange(n_out), lo + 1] = pos - lo
  return w


def _upsample(small, size):
  """Bilinear upsampling of a small square field by two matrix products (fast)."""
  w = _interp_matrix(small.shape[0], size)
  return w @ small @ w.T
