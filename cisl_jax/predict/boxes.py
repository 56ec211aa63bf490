"""Boxes mode: each given box cut by the paper's patch rules, classified, combined.

A box no larger than the patch is one centred crop; a larger one is a sliding window of
crops plus one scaled copy (`cisl_jax.data.patches.box_crops`, the function the dataset
is cut with). A box cut into several patches gets one probability vector by
`combine`: 'mean' (the patches' mean), 'max' (each class's highest patch probability)
or 'scaled' (the scaled copy alone, the one view of the whole box).
"""
import dataclasses
from typing import Callable

import ml_collections
import numpy as np

from cisl_jax.data import patches as patches_lib

COMBINE = ('mean', 'max', 'scaled')


@dataclasses.dataclass
class BoxResult:
  box: tuple[int, int, int, int]
  given_sign: str | None
  kinds: list[str]  # the patches' kinds, in order
  patch_probs: np.ndarray  # (P, C)
  probs: np.ndarray  # (C,) combined


def combine(patch_probs: np.ndarray, kinds: list[str], rule: str) -> np.ndarray:
  if rule == 'mean':
    return patch_probs.mean(0)
  if rule == 'max':
    return patch_probs.max(0)
  if rule == 'scaled':
    return patch_probs[kinds.index('scaled')] if 'scaled' in kinds else patch_probs[0]
  raise ValueError(f'config.combine={rule!r}: use one of {", ".join(COMBINE)}.')


def check_box(box: tuple[int, int, int, int], shape: tuple[int, int], path: str) -> None:
  x0, y0, x1, y1 = box
  rows, cols = shape
  if not (0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows):
    raise ValueError(f'{path}: box ({x0},{y0},{x1},{y1}) is not a non-empty box inside the '
                     f'{cols}x{rows} slice; fix its coordinates (x0,y0,x1,y1, x1/y1 '
                     'exclusive).')


def classify_boxes(img: np.ndarray, boxes, cfg: ml_collections.ConfigDict,
                   class_probs: Callable, path: str) -> tuple[list[BoxResult], list[str]]:
  """(results, skipped reasons) for the boxes of one windowed slice.

  `class_probs(patches (N, 64, 64)) -> (N, C)`; boxes over the paper's size limit are
  skipped (the dataset drops them too) and reported.
  """
  crops, skipped = [], []
  for b in boxes:
    check_box(b.xyxy, img.shape, path)
    if patches_lib.too_large(b.xyxy, img.shape, cfg.patches):
      skipped.append(f'{path}: box {b.xyxy} is wider or taller than '
                     f'{cfg.patches.max_box_share} of the slice; the paper drops such boxes '
                     '(config.patches.max_box_share), so it was not classified.')
      continue
    crops.append((b, patches_lib.box_crops(img, b.xyxy, cfg.patches)))
  images = [im for _, cs in crops for im, _ in cs]
  if not images:
    return [], skipped
  probs = class_probs(np.stack(images))
  out, i = [], 0
  for b, cs in crops:
    kinds = [k for _, k in cs]
    p = probs[i:i + len(cs)]
    i += len(cs)
    out.append(BoxResult(b.xyxy, b.sign, kinds, p, combine(p, kinds, cfg.combine)))
  return out, skipped
