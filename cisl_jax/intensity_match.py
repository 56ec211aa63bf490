"""Per-sign intensity matching (histogram matching) of generated patches to real ones.

A pixel of a CT patch is a density. The quick generator draws the right layouts at the
wrong densities (its lung parenchyma brighter and more spread than the real band, its
bright tissue overshooting), and nothing in its objective holds them: DiffAugment's
colour transform hides absolute density from the discriminator (BUILD_NOTES.md). This
module maps each sign's generated pixel values onto the quantiles of that sign's real
pixel values by one monotone, piecewise-linear function per sign, fitted on the whole
generated set of the sign: the densities become the real ones, ranks and layout stay.
"""
import numpy as np

NUM_QUANTILES = 1001  # knots of each sign's map (every 0.1 percentile)


def fit_map(source: np.ndarray, reference: np.ndarray,
            num_quantiles: int = NUM_QUANTILES) -> tuple[np.ndarray, np.ndarray]:
  """The knots (x, y) of the monotone map taking `source`'s quantiles to `reference`'s."""
  q = np.linspace(0.0, 1.0, num_quantiles)
  return (np.quantile(np.ravel(source), q).astype(np.float32),
          np.quantile(np.ravel(reference), q).astype(np.float32))


def match(images: np.ndarray, labels: np.ndarray, ref_images: np.ndarray,
          ref_labels: np.ndarray, num_quantiles: int = NUM_QUANTILES
          ) -> tuple[np.ndarray, dict[int, dict[str, float]]]:
  """`images` with each sign's pixel values mapped onto that sign's reference quantiles.

  A sign without reference patches is left as it is (and not in the summary).

  Returns the matched images (float32, same shape) and, per matched sign, the medians
  of its pixel values before and after the match and of the reference, for the record.
  """
  images, ref_images = np.asarray(images, np.float32), np.asarray(ref_images)
  labels, ref_labels = np.asarray(labels), np.asarray(ref_labels)
  out = images.copy()
  summary = {}
  for s in np.unique(labels):
    ref = ref_images[ref_labels == s]
    if not len(ref):
      continue
    mine = labels == s
    before = images[mine]  # one copy of the sign's patches (18,000 in the paper config)
    x, y = fit_map(before, ref, num_quantiles)
    after = np.interp(before, x, y).astype(np.float32)
    out[mine] = after
    summary[int(s)] = {'median_before': float(np.median(before)),
                       'median_after': float(np.median(after)),
                       'median_real': float(np.median(ref))}
  return out, summary
