"""Probability maps of the signs over a slice's lung field, and detections in them.

Windows of the patch size (64x64) are slid over the slice at `stride`; a window is run
when its cell (the stride x stride pixels nearest its centre) touches the lung field,
widened by `margin_px` so that signs on the pleura and wedge-shaped consolidation at
the lung's edge are inside it. Each pixel of a map carries the probability of the window
whose centre is nearest to it (cells at the slice border extend to the border), zero
outside the field. Detections are the connected regions of one sign's map at or above
the threshold, each with its peak and mean probability and its bounding box.
"""
import dataclasses
from typing import Callable

import ml_collections
import numpy as np
from scipy import ndimage

from cisl_jax.data import lung_mask as lung_mask_lib
from cisl_jax.data import patches as patches_lib


class EmptyLungError(ValueError):
  """A slice with no lung field; the message names the file and the fix."""


@dataclasses.dataclass
class Grid:
  """The windows of one slice: top-left corners ys x xs, and which ones are run."""
  ys: np.ndarray  # int (ny,) window rows
  xs: np.ndarray  # int (nx,) window columns
  size: int
  stride: int
  run: np.ndarray  # bool (ny, nx): the window's cell touches the field
  cell_y: np.ndarray  # int (rows,): the grid row of each pixel row (nearest centre)
  cell_x: np.ndarray  # int (cols,)


@dataclasses.dataclass
class Detection:
  sign: str
  peak: float
  mean: float
  box: tuple[int, int, int, int]  # x0, y0, x1, y1, half-open, in slice pixels


def field(hu: np.ndarray, lung_cfg: ml_collections.ConfigDict, margin_px: float,
          path: str = '<slice>') -> np.ndarray:
  """The lung mask widened by `margin_px`; EmptyLungError when the lung mask is empty."""
  lung = lung_mask_lib.lung_mask(hu, lung_cfg)
  if not lung.any():
    raise EmptyLungError(
        f'{path}: the lung mask is empty (no air-filled region below {lung_cfg.air_hu:g} HU '
        'inside the body); give chest CT slices through the lungs, check that the pixels '
        'are in HU (RescaleSlope/Intercept), or pass --config.skip_bad to skip such slices.')
  if margin_px <= 0:
    return lung
  return ndimage.distance_transform_edt(~lung) <= margin_px


def _cells(limit: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  starts = np.arange(0, limit - size + 1, stride)
  centres = starts + size / 2.0
  nearest = np.abs(np.arange(limit)[:, None] + 0.5 - centres[None, :]).argmin(1)
  return starts, nearest


def grid(shape: tuple[int, int], field_mask: np.ndarray, size: int, stride: int) -> Grid:
  """The window grid of a (rows, cols) slice and the windows whose cells touch the field."""
  if stride < 1:
    raise ValueError(f'config.stride={stride}: use a stride of at least 1 pixel.')
  ys, cell_y = _cells(shape[0], size, stride)
  xs, cell_x = _cells(shape[1], size, stride)
  touched = np.zeros((len(ys), len(xs)), bool)
  rr, cc = np.nonzero(field_mask)
  touched[cell_y[rr], cell_x[cc]] = True
  return Grid(ys, xs, size, stride, touched, cell_y, cell_x)


def windows(img: np.ndarray, g: Grid) -> np.ndarray:
  """The (N, size, size) windows of `g.run`, row-major, from a windowed slice."""
  view = np.lib.stride_tricks.sliding_window_view(img, (g.size, g.size))
  iy, ix = np.nonzero(g.run)
  return np.ascontiguousarray(view[g.ys[iy], g.xs[ix]], np.float32)


def expand(g: Grid, values: np.ndarray, field_mask: np.ndarray) -> np.ndarray:
  """Per-window values (N, S) of the run windows -> full-size maps (S, rows, cols)."""
  cells = np.zeros(g.run.shape + (values.shape[1],), np.float32)
  cells[g.run] = values
  full = cells[g.cell_y[:, None], g.cell_x[None, :]]  # (rows, cols, S)
  return np.moveaxis(full, -1, 0) * field_mask[None].astype(np.float32)


@dataclasses.dataclass
class SliceMaps:
  """One slice's maps, compactly: the field, the grid and each run window's values."""
  field: np.ndarray  # bool (rows, cols)
  grid: Grid
  values: np.ndarray  # float32 (N, S): the run windows' sign probabilities, row-major

  def full(self) -> np.ndarray:
    """The maps (S, rows, cols)."""
    return expand(self.grid, self.values, self.field)

  def arrays(self) -> dict[str, np.ndarray]:
    """What `from_arrays` needs, as arrays (for an .npz)."""
    return {'field': np.packbits(self.field), 'shape': np.array(self.field.shape),
            'values': self.values, 'size': np.array(self.grid.size),
            'stride': np.array(self.grid.stride)}

  @classmethod
  def from_arrays(cls, a) -> 'SliceMaps':
    shape = tuple(int(v) for v in a['shape'])
    field_mask = np.unpackbits(a['field'])[:shape[0] * shape[1]].reshape(shape).astype(bool)
    g = grid(shape, field_mask, int(a['size']), int(a['stride']))
    return cls(field_mask, g, np.asarray(a['values'], np.float32))


def probability_maps(img: np.ndarray, field_mask: np.ndarray, sign_probs: Callable,
                     size: int, stride: int) -> np.ndarray:
  """(S, rows, cols) maps; `sign_probs(windows (N, size, size)) -> (N, S)`."""
  g = grid(img.shape, field_mask, size, stride)
  return expand(g, sign_probs(windows(img, g)), field_mask)


def detections(maps: np.ndarray, names: list[str], threshold: float) -> list[Detection]:
  """Connected regions (8-connected) of each map at or above `threshold`."""
  out = []
  for name, m in zip(names, maps):
    labels, n = ndimage.label(m >= threshold, structure=np.ones((3, 3), bool))
    del n
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
      region = m[sl][labels[sl] == i]
      out.append(Detection(name, float(region.max()), float(region.mean()),
                           (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)))
  return out


def slice_maps(hu: np.ndarray, cfg: ml_collections.ConfigDict, sign_probs: Callable,
               path: str = '<slice>') -> SliceMaps:
  """The maps of one slice in HU under the predict config (`.full()` for the arrays)."""
  p = cfg.patches
  mask = field(hu, p.lung_mask, cfg.margin_px, path)
  img = patches_lib.window(hu, p.hu_level, p.hu_width)
  g = grid(img.shape, mask, p.size, cfg.stride)
  return SliceMaps(mask, g, np.asarray(sign_probs(windows(img, g)), np.float32))
