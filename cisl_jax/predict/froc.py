"""Free-response ROC of map-mode detections against boxed signs.

A boxed sign is found at a threshold when a detection of the same sign overlaps its box
(any shared pixel); a detection that overlaps no box of its sign on its slice is a false
positive. Sensitivity is found boxes over all boxes; false positives are counted per
slice over every slice looked at, sign-free slices included.
"""
import dataclasses


from cisl_jax.predict import maps as maps_lib


@dataclasses.dataclass
class Point:
  threshold: float
  sensitivity: float
  fp_per_slice: float
  found: int
  boxes: int
  false_positives: int
  per_sign: dict  # sign -> [found, boxes]


def _overlap(a, b) -> bool:
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def score(slices: list[tuple[list, list]], threshold: float) -> Point:
  """slices: (boxes [(sign, xyxy)], detections [Detection]) per slice."""
  found = fps = n = 0
  per_sign: dict[str, list[int]] = {}
  for boxes, dets in slices:
    for sign, box in boxes:
      hit = any(d.sign == sign and _overlap(d.box, box) for d in dets)
      per_sign.setdefault(sign, [0, 0])
      per_sign[sign][0] += int(hit)
      per_sign[sign][1] += 1
      found += int(hit)
      n += 1
    fps += sum(1 for d in dets
               if not any(d.sign == sign and _overlap(d.box, box) for sign, box in boxes))
  return Point(threshold, found / n if n else float('nan'), fps / max(len(slices), 1),
               found, n, fps, per_sign)


def sweep(slice_maps: list[tuple[list, maps_lib.SliceMaps]], names: list[str],
          thresholds) -> list[Point]:
  """FROC points: each threshold's detections on every slice's maps."""
  points = []
  full = [(boxes, m.full()) for boxes, m in slice_maps]
  for t in thresholds:
    scored = [(boxes, maps_lib.detections(m, names, float(t))) for boxes, m in full]
    points.append(score(scored, float(t)))
  return points


def plot(points: list[Point], default: float, title: str, path: str) -> None:
  """Sensitivity against false positives per slice, each point's threshold written by it."""
  import textwrap  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  from cisl_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  fp = [max(p.fp_per_slice, 1e-3) for p in points]
  ax.plot(fp, [p.sensitivity for p in points], 'o-', color='tab:blue')
  for p, x in zip(points, fp):
    ax.annotate(f'{p.threshold:g}', (x, p.sensitivity), textcoords='offset points',
                xytext=(3, -9), fontsize=7)
    if abs(p.threshold - default) < 1e-9:
      ax.plot([x], [p.sensitivity], 's', color='tab:red', ms=9, fillstyle='none',
              label=f'default threshold {default:g}')
  ax.set_xscale('log')
  # Plain numbers at 1, 2, 5 x 10^k: the default minor labels (2x10^0, 3x10^0 ...)
  # overlap one another at this size.
  ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'))
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.set_xlabel('false positives per slice')
  ax.set_ylabel('sign-level sensitivity')
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3, which='both')
  ax.legend(loc='lower right', fontsize=8)
  ax.set_title(textwrap.fill(title, 70), fontsize=9)  # wrapped: a long title is cut
  fig.tight_layout()
  workdir_lib.save_figure(fig, path, dpi=120)
