"""The paper's patch rules: 64x64 sign patches from boxes, and background patches.

For each boxed sign on a slice (Section III-A of the paper):
- a box no larger than the patch (64 px) is centred in a 64x64 crop with its
  surroundings (the crop shifted, if needed, to stay inside the slice): 'centred';
- a larger box is covered by a sliding window of 64x64 crops (stride from the
  config) over the box: 'window'; and the box as a whole (a square around it, so
  its shape is not distorted) is scaled down to 64x64 bilinearly: 'scaled';
- a box wider or taller than `max_box_share` of the slice is dropped and counted
  (the paper: such boxes are not well annotated).
Background patches ('background', label normal) are cut at random inside the lung
field, overlapping no box on the slice (sign boxes, and the sign-free boxes a source
lists to keep them off, e.g. LIDC's other reader marks), `backgrounds_per_slice` per
slice; they carry
the slice's signs so a binary task can draw non-sign patches from slices without s.

Intensities: a fixed HU window (level/width from the config) clipped and mapped to
[-1, 1], so that a value means the same tissue in every patch (see BUILD_NOTES).
"""
import dataclasses
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
from PIL import Image

from cisl_jax import signs
from cisl_jax.data import lung_mask as lung_mask_lib
from cisl_jax.data.records import BoxedSlice


def default_config() -> ml_collections.ConfigDict:
  """Patch rules (fields documented inline)."""
  c = ml_collections.ConfigDict()
  c.size = 64  # patch side in pixels (the paper's 64)
  c.stride = 32  # sliding-window stride over boxes larger than the patch
  c.max_box_share = 0.5  # drop boxes wider or taller than this share of the slice
  c.hu_level = -600.0  # centre of the HU window mapped to 0 (a lung window)
  c.hu_width = 1500.0  # HU range mapped to [-1, 1]; values outside are clipped
  c.backgrounds_per_slice = 4  # normal patches cut per slice (pools for pre-training)
  c.background_min_lung = 0.75  # share of a background crop that must be lung field
  c.background_tries = 200  # random positions tried per background patch
  c.lung_mask = lung_mask_lib.default_config()
  return c


@dataclasses.dataclass
class Patch:
  """One 64x64 patch and what it came from."""
  image: np.ndarray  # float32 (size, size) in [-1, 1]
  label: int  # 0-8 sign, 9 normal
  patient_id: str
  path: str  # the slice file
  box: tuple[int, int, int, int]  # the sign's box, or the crop of a background patch
  kind: str  # 'centred' | 'window' | 'scaled' | 'background'
  slice_signs: np.ndarray  # int32 (NUM_SIGNS,) multi-hot of the signs on the slice


@dataclasses.dataclass
class SliceResult:
  patches: list[Patch]
  dropped: list[BoxedSlice]  # boxes over max_box_share


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
  """Clips HU to [level - width/2, level + width/2] and maps it to [-1, 1]."""
  half = width / 2.0
  return ((np.clip(hu, level - half, level + half) - level) / half).astype(np.float32)


def _origin(centre: float, size: int, limit: int) -> int:
  """Start of a `size` crop centred at `centre`, shifted to lie inside [0, limit)."""
  return int(min(max(round(centre - size / 2.0), 0), limit - size))


def _window_starts(lo: int, hi: int, size: int, stride: int, limit: int) -> list[int]:
  """Starts of crops of `size` covering [lo, hi): centred if it fits, else slid."""
  if hi - lo <= size:
    return [_origin((lo + hi) / 2.0, size, limit)]
  starts = list(range(lo, hi - size + 1, stride))
  if starts[-1] != hi - size:
    starts.append(hi - size)  # the last window ends at the box edge
  return [min(max(s, 0), limit - size) for s in starts]


def _resize(img: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of a float32 image to size x size."""
  return np.asarray(Image.fromarray(img.astype(np.float32), mode='F').resize(
      (size, size), Image.BILINEAR), np.float32)


def too_large(box: tuple[int, int, int, int], shape: tuple[int, int],
              cfg: ml_collections.ConfigDict) -> bool:
  """Whether a box (x0, y0, x1, y1) on a (rows, cols) slice falls under the drop rule."""
  x0, y0, x1, y1 = box
  return x1 - x0 > cfg.max_box_share * shape[1] or y1 - y0 > cfg.max_box_share * shape[0]


def box_crops(img: np.ndarray, box: tuple[int, int, int, int],
              cfg: ml_collections.ConfigDict) -> list[tuple[np.ndarray, str]]:
  """(patch, kind) pairs of one box (x0, y0, x1, y1) on a windowed slice `img`.

  The rules above, without labels: `sign_patches` for the dataset and `cisl_jax.predict`
  for new scans cut boxes through this one function, so both see the same patches.
  """
  s = cfg.size
  rows, cols = img.shape
  x0, y0, x1, y1 = box
  width, height = x1 - x0, y1 - y0
  if width <= s and height <= s:
    x = _origin((x0 + x1) / 2.0, s, cols)
    y = _origin((y0 + y1) / 2.0, s, rows)
    return [(img[y:y + s, x:x + s], 'centred')]
  out = []
  for y in _window_starts(y0, y1, s, cfg.stride, rows):
    for x in _window_starts(x0, x1, s, cfg.stride, cols):
      out.append((img[y:y + s, x:x + s], 'window'))
  side = max(width, height)
  x = _origin((x0 + x1) / 2.0, side, cols)
  y = _origin((y0 + y1) / 2.0, side, rows)
  out.append((_resize(img[y:y + side, x:x + side], s), 'scaled'))
  return out


def sign_patches(img: np.ndarray, box: BoxedSlice, cfg: ml_collections.ConfigDict,
                 slice_signs: np.ndarray) -> list[Patch]:
  """Patches of one (not dropped) box from a windowed slice `img`."""
  label = signs.code(box.sign)
  xyxy = (box.x0, box.y0, box.x1, box.y1)
  return [Patch(np.ascontiguousarray(im, np.float32), label, box.patient_id, box.path, xyxy,
                kind, slice_signs) for im, kind in box_crops(img, xyxy, cfg)]


def background_patches(img: np.ndarray, hu: np.ndarray, boxes: Sequence[BoxedSlice],
                       cfg: ml_collections.ConfigDict, rng: np.random.Generator,
                       patient_id: str, path: str, slice_signs: np.ndarray) -> list[Patch]:
  """Up to `backgrounds_per_slice` crops inside the lung field, off every box."""
  s = cfg.size
  rows, cols = img.shape
  if cfg.backgrounds_per_slice <= 0:
    return []
  lung = lung_mask_lib.lung_mask(hu, cfg.lung_mask)
  # Allowed top-left corners: crop mostly lung (summed-area table) and off all boxes.
  integral = np.pad(lung.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
  lung_frac = (integral[s:, s:] - integral[:-s, s:] - integral[s:, :-s]
               + integral[:-s, :-s]) / float(s * s)
  ok = lung_frac >= cfg.background_min_lung
  for b in boxes:
    # A crop at (x, y) overlaps [x0,x1)x[y0,y1) iff x0-s < x < x1 and y0-s < y < y1.
    ok[max(b.y0 - s + 1, 0):max(b.y1, 0), max(b.x0 - s + 1, 0):max(b.x1, 0)] = False
  candidates = np.flatnonzero(ok)
  if not len(candidates):
    return []
  n = min(cfg.backgrounds_per_slice, len(candidates))
  picks = rng.choice(candidates, size=n, replace=False)
  out = []
  for p in sorted(int(p) for p in picks):
    y, x = divmod(p, ok.shape[1])
    out.append(Patch(np.ascontiguousarray(img[y:y + s, x:x + s]), signs.NORMAL, patient_id,
                     path, (x, y, x + s, y + s), 'background', slice_signs))
  return out


def slice_patches(hu: np.ndarray, boxes: Sequence[BoxedSlice], cfg: ml_collections.ConfigDict,
                  rng: np.random.Generator) -> SliceResult:
  """All patches of one slice: its sign boxes' patches and its background patches.

  Args:
    hu: the slice in HU (rows, cols), at least `cfg.size` on each side.
    boxes: every record of this slice (sign None for a box-free slice).
    cfg: `default_config()`-shaped ConfigDict.
    rng: the slice's own generator (background positions).
  """
  rows, cols = hu.shape
  first = boxes[0]
  if rows < cfg.size or cols < cfg.size:
    raise ValueError(f'{first.path}: slice is {rows}x{cols}, smaller than the '
                     f'{cfg.size}x{cfg.size} patch; give full CT slices.')
  img = window(hu, cfg.hu_level, cfg.hu_width)
  signed = [b for b in boxes if b.sign is not None]
  slice_signs = np.zeros(signs.NUM_SIGNS, np.int32)
  for b in signed:
    if not (0 <= b.x0 < b.x1 <= cols and 0 <= b.y0 < b.y1 <= rows):
      raise ValueError(f'{b.path}: box {b.sign} ({b.x0},{b.y0},{b.x1},{b.y1}) is not a '
                       f'non-empty box inside the {cols}x{rows} slice; fix its coordinates.')
    slice_signs[signs.code(b.sign)] = 1
  patches, dropped = [], []
  for b in signed:
    if too_large((b.x0, b.y0, b.x1, b.y1), (rows, cols), cfg):
      dropped.append(b)
      continue
    patches.extend(sign_patches(img, b, cfg, slice_signs))
  # Sign-free boxes (a source's marks that give no sign, e.g. LIDC's small nodules and
  # non-nodules) give no patch, but background patches keep off them too.
  marks = [b for b in boxes if b.sign is None and b.x1 > b.x0 and b.y1 > b.y0]
  patches.extend(background_patches(img, hu, signed + marks, cfg, rng, first.patient_id,
                                    first.path, slice_signs))
  return SliceResult(patches, dropped)


def group_by_slice(records: Sequence[BoxedSlice]) -> list[tuple[str, list[BoxedSlice]]]:
  """Records grouped by slice file, in a deterministic (patient, path) order."""
  groups: dict[str, list[BoxedSlice]] = {}
  for r in records:
    groups.setdefault(r.path, []).append(r)
  return sorted(groups.items(), key=lambda kv: (kv[1][0].patient_id, kv[0]))


def extract(records: Sequence[BoxedSlice], cfg: ml_collections.ConfigDict, seed: int,
            read: Callable[[str], np.ndarray], *, skip_bad: bool = False,
            progress: Callable[[int, int], None] | None = None,
            ) -> tuple[list[Patch], list[BoxedSlice], list[tuple[str, str]]]:
  """Patches of every record; deterministic from `seed`.

  Args:
    records: boxed slices from a source.
    cfg: patch rules.
    seed: background positions: slice i of the (patient, path) order uses
      `default_rng([seed, i])`, so one slice's patches do not depend on the others'.
    read: reads a slice path to HU (e.g. `slices.read_slice`).
    skip_bad: skip (and report) slices that cannot be read instead of raising.
    progress: called as progress(done, total) after each slice.
  Returns:
    (patches, dropped boxes, skipped (path, reason)).
  """
  patches, dropped, skipped = [], [], []
  groups = group_by_slice(records)
  for i, (path, boxes) in enumerate(groups):
    try:
      hu = read(path)
      result = slice_patches(hu, boxes, cfg, np.random.default_rng([seed, i]))
    except ValueError as e:
      if not skip_bad:
        raise
      skipped.append((path, str(e)))
      continue
    patches.extend(result.patches)
    dropped.extend(result.dropped)
    if progress:
      progress(i + 1, len(groups))
  return patches, dropped, skipped
