"""A lung-field mask from HU thresholds and connected components.

Background ("normal") patches are cut inside it. Lung parenchyma is air-like
(about -900 HU) but so is the air around the patient: the outside air is the part of
the air mask connected to the slice border, so it is removed by dropping every
component that touches the border. Small air components (trachea, bowel gas,
noise) are dropped by area; holes left by vessels and nodules inside the lungs are
filled, because normal lung tissue includes its vessels.
"""
import ml_collections
import numpy as np
from scipy import ndimage


def default_config() -> ml_collections.ConfigDict:
  """Thresholds of the lung mask (fields documented inline)."""
  c = ml_collections.ConfigDict()
  c.air_hu = -400.0  # pixels below this HU are air-like (lung, airways, outside air)
  c.min_area_share = 0.002  # drop air components under this share of the slice (trachea)
  c.erode_px = 2  # erode the final mask so patches keep off the chest wall's edge
  return c


def lung_mask(hu: np.ndarray, cfg: ml_collections.ConfigDict | None = None) -> np.ndarray:
  """Boolean mask of the lung field of one slice in HU, shape of `hu`."""
  cfg = cfg or default_config()
  air = hu < cfg.air_hu
  labels, n = ndimage.label(air)
  if n == 0:
    return np.zeros_like(air)
  border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
  areas = ndimage.sum_labels(np.ones_like(hu), labels, index=np.arange(1, n + 1))
  keep = areas >= cfg.min_area_share * hu.size
  keep[border[border > 0] - 1] = False
  mask = keep[labels - 1] & (labels > 0)
  # Fill holes per component so that a lung's vessels count as lung but the space
  # between the two lungs (mediastinum) does not.
  filled = np.zeros_like(mask)
  comp, m = ndimage.label(mask)
  for sl, i in zip(ndimage.find_objects(comp), range(1, m + 1)):
    filled[sl] |= ndimage.binary_fill_holes(comp[sl] == i)
  if cfg.erode_px > 0:
    filled = ndimage.binary_erosion(filled, iterations=int(cfg.erode_px))
  return filled
