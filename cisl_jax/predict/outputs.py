"""predictions.csv and one PNG per slice: the lung window, the maps, the boxes."""
import csv
import io

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cisl_jax import signs

CSV_COLUMNS = ('file', 'sop_instance_uid', 'kind', 'sign', 'probability', 'x0', 'y0', 'x1',
               'y1', 'mean_probability', 'given_sign')
# One colour per sign, the same in every PNG (matplotlib's tab10 without its grey).
_COLOURS = [plt.get_cmap('tab10')(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]


def colour(sign: str):
  return _COLOURS[signs.SIGNS.index(sign)]


def csv_text(rows: list[dict], class_names: list[str]) -> str:
  """CSV of box and detection rows; box rows also carry every class's probability."""
  cols = list(CSV_COLUMNS) + [f'p_{n}' for n in class_names]
  buf = io.StringIO()
  w = csv.DictWriter(buf, cols, extrasaction='raise', lineterminator='\n')
  w.writeheader()
  for r in rows:
    w.writerow({k: (f'{v:.9g}' if isinstance(v, float) else v) for k, v in r.items()})
  return buf.getvalue()


def slice_png(img: np.ndarray, maps: np.ndarray | None, names: list[str], labelled: list,
              given: list, title: str, overlay_min: float) -> bytes:
  """PNG bytes: `img` in [-1, 1] grey, each map above `overlay_min` in its sign's colour
  (opacity growing with the probability), labelled boxes ((sign, text, xyxy)) in their
  colours and given boxes (xyxy) dashed white."""
  rows, cols = img.shape
  dpi = 100
  fig = plt.figure(figsize=(cols / dpi + 2.2, rows / dpi + 0.4), dpi=dpi)
  ax = fig.add_axes((0.0, 0.0, cols / (cols + 220.0), rows / (rows + 40.0)))
  ax.imshow(img, cmap='gray', vmin=-1, vmax=1, interpolation='nearest')
  shown = []
  if maps is not None:
    for name, m in zip(names, maps):
      if m.max() < overlay_min:
        continue
      rgba = np.zeros((rows, cols, 4), np.float32)
      rgba[..., :3] = colour(name)[:3]
      rgba[..., 3] = np.where(m >= overlay_min, 0.15 + 0.55 * m, 0.0)
      ax.imshow(rgba, interpolation='nearest')
      shown.append(name)
  for xyxy in given:
    x0, y0, x1, y1 = xyxy
    ax.add_patch(plt.Rectangle((x0 - .5, y0 - .5), x1 - x0, y1 - y0, fill=False,
                               edgecolor='white', linestyle='--', linewidth=1))
  for sign, text, (x0, y0, x1, y1) in labelled:
    c = colour(sign) if sign in signs.SIGNS else (1, 1, 1, 1)
    ax.add_patch(plt.Rectangle((x0 - .5, y0 - .5), x1 - x0, y1 - y0, fill=False,
                               edgecolor=c, linewidth=1.5))
    if text:
      ax.text(x0, max(y0 - 3, 8), text, color=c, fontsize=7, va='bottom',
              bbox=dict(facecolor='black', alpha=0.6, pad=1, linewidth=0))
  ax.set_axis_off()
  ax.set_title(title, fontsize=8, loc='left')
  handles = [plt.Rectangle((0, 0), 1, 1, color=colour(n)) for n in names]
  fig.legend(handles, [f'{n}{"" if n in shown else " (none)"}' for n in names],
             loc='upper right', fontsize=7, frameon=False,
             title='map above %.2f' % overlay_min, title_fontsize=7)
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi)
  plt.close(fig)
  return buf.getvalue()
