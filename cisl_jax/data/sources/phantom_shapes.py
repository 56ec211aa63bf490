"""Shape primitives of the phantom's signs: random contours, boxes, windows, slab cuts.

A nodule is a random star-shaped contour (radius wavering with the angle by random
harmonics) around a sphere-like body. The slice is a slab of the slice thickness
that cuts the body at a random height: `body_alpha` gives, per pixel, the share of
the slab the body fills (partial volume), so a nodule cut near its pole shows
smaller and fainter, and its rim is soft in thick slices, as on real scans.
"""
import math

import numpy as np

from cisl_jax.data.sources import phantom_anatomy as pa

SOFT = (20.0, 55.0)  # HU of solid nodules and consolidation
AIR_IN = -960.0  # HU of air in cavities, vacuoles and air bronchi


def u(rng, lo, hi):
  return float(rng.uniform(lo, hi))


def harmonics(rng, kmax, amp, kmin=2):
  """Random (k, amplitude, phase) terms; amplitudes fall off as 1/k (rough contours)."""
  return [(k, u(rng, 0, amp) * kmin / k, u(rng, 0, 2 * math.pi)) for k in range(kmin, kmax + 1)]


def extent(r, harm):
  return r * (1 + sum(a for _, a, _ in harm))


def box(x0, y0, x1, y1, size):
  """Integer half-open box around a float extent, or None when it leaves the slice."""
  b = (math.floor(x0), math.floor(y0), math.ceil(x1) + 1, math.ceil(y1) + 1)
  if b[0] < 0 or b[1] < 0 or b[2] > size or b[3] > size:
    return None
  return b


def blob_box(x, y, radius, size, margin=1.5):
  return box(x - radius - margin, y - radius - margin, x + radius + margin,
             y + radius + margin, size)


def around(x, y, radius):
  """A float box of half-side `radius` around (x, y), for painting windows."""
  return (x - radius, y - radius, x + radius, y + radius)


def inside(anat, x, y, clearance=0.0):
  xi, yi = int(round(x)), int(round(y))
  if not (0 <= xi < anat.size and 0 <= yi < anat.size):
    return False
  return anat.dist[yi, xi] >= clearance


def window(img, b, pad):
  """Local coordinate grids and the image view around a box (plus pad)."""
  h, w = img.shape
  x0, y0 = max(0, int(b[0] - pad)), max(0, int(b[1] - pad))
  x1, y1 = min(w, int(b[2] + pad)), min(h, int(b[3] + pad))
  xs = np.arange(x0, x1, dtype=np.float32)[None, :]
  ys = np.arange(y0, y1, dtype=np.float32)[:, None]
  return img[y0:y1, x0:x1], xs, ys, (slice(y0, y1), slice(x0, x1))


def blob_alpha(xs, ys, x, y, radius, harm, edge):
  """Soft mask of a round blob whose radius wavers with the angle (flat profile)."""
  dx, dy = xs - x, ys - y
  r = np.sqrt(dx * dx + dy * dy)
  th = np.arctan2(dy, dx)
  rr = radius * (1 + sum(a * np.cos(k * th + p) for k, a, p in harm))
  return np.clip((rr - r) / edge + 0.5, 0.0, 1.0)


def body_alpha(xs, ys, x, y, radius, harm, scan, z=0.0, edge=1.0):
  """Share of the slab filled by a sphere-like body whose centre is `z` px off the slab's.

  At in-plane distance rho (relative to the contour radius R(theta)) the body spans
  heights z*R +- R*sqrt(1 - rho^2); the slab spans +-T/2. The overlap over T is the
  partial-volume share; a one-pixel anti-aliased rim keeps thin slabs exact.
  """
  dx, dy = xs - x, ys - y
  r = np.sqrt(dx * dx + dy * dy)
  th = np.arctan2(dy, dx)
  rr = radius * (1 + sum(a * np.cos(k * th + p) for k, a, p in harm))
  rho = np.minimum(r / np.maximum(rr, 1e-3), 1.0)
  half_t = 0.5 * scan.thickness / scan.spacing  # slab half-thickness in pixels
  h = rr * np.sqrt(1.0 - rho * rho)
  zc = z
  overlap = np.clip(np.minimum(zc + h, half_t) - np.maximum(zc - h, -half_t), 0, None)
  rim = np.clip((rr - r) / edge + 0.5, 0.0, 1.0)
  return (np.minimum(overlap / (2 * half_t), 1.0) * rim).astype(np.float32)


def cut_height(rng, r, hi=0.6):
  """Where the slice cuts a body of radius `r`: its centre's height off the slab (px)."""
  return u(rng, 0.0, hi) * r


def blend(sub, alpha, value):
  sub += alpha * (value - sub)


def texture(rng, shape, amp, sigma=1.2):
  return amp * pa.smooth_noise(rng, shape, sigma)


def spicules(rng, x, y, r, n, s, length=(4, 28), root=(0.5, 1.6)):
  """Radiating strands: each two tapering segments with a bend, length and width drawn."""
  segs = []
  for th in np.sort(rng.uniform(0, 2 * math.pi, n)):
    ln = u(rng, *length) * s
    rt = u(rng, *root) * s
    x0, y0 = x + 0.85 * r * math.cos(th), y + 0.85 * r * math.sin(th)
    bend = th + u(rng, -0.35, 0.35)
    xm, ym = x0 + 0.5 * ln * math.cos(th), y0 + 0.5 * ln * math.sin(th)
    x1, y1 = xm + 0.5 * ln * math.cos(bend), ym + 0.5 * ln * math.sin(bend)
    segs += [(x0, y0, xm, ym, rt, 0.7 * rt), (xm, ym, x1, y1, 0.7 * rt, 0.3 * s)]
  return segs


def lobes(rng, r, n, depth):
  """(angle, lobe radius, centre distance) of `n` uneven lobes on a nodule's border.

  The lobes run over part or all of the circumference at uneven spacing and sizes, so
  the border is a run of shallow, unequal arcs rather than a regular flower.
  """
  span = u(rng, 0.5, 1.0) * 2 * math.pi
  th0 = u(rng, 0, 2 * math.pi)
  angles = th0 + np.sort(rng.uniform(0, span, n))
  out = []
  for th in angles:
    lr = r * depth * u(rng, 0.6, 1.4)
    out.append((float(th), lr, (r - lr) * u(rng, 0.85, 1.05)))
  return out


def lobed_alpha(xs, ys, x, y, r, lobe_list, scan, z, harm=(), edge=1.0):
  """A core plus lobes, each a sphere-like body cut by the slab: a scalloped border."""
  # The body itself: a rough contour a little inside the lobes' outer edge.
  alpha = body_alpha(xs, ys, x, y, 0.86 * r, harm, scan, z, edge)
  for th, lr, d in lobe_list:
    alpha = np.maximum(alpha, body_alpha(xs, ys, x + d * math.cos(th), y + d * math.sin(th),
                                         lr, (), scan, z * lr / r, edge))
  return alpha
