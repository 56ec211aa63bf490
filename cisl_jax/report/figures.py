"""The report's figures (PNG): confusion matrices, training curves, Fig. 4 and Fig. 5."""
import dataclasses
import pathlib

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cisl_jax import signs
from cisl_jax import workdir as wd
from cisl_jax.report import results

DPI = 110


def _save(fig, path) -> pathlib.Path:
  """Saves atomically and closes the figure."""
  return wd.save_figure(fig, path, dpi=DPI, bbox_inches='tight')


def _matrix(ax, cm: np.ndarray, names, title: str):
  """Row-normalised confusion matrix with the counts written in the cells."""
  rows = cm.sum(axis=1, keepdims=True)
  frac = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
  ax.imshow(frac, cmap='Blues', vmin=0, vmax=1)
  small = len(names) > 4
  for i in range(cm.shape[0]):
    for j in range(cm.shape[1]):
      ax.text(j, i, str(cm[i, j]), ha='center', va='center',
              fontsize=7 if small else 9, color='white' if frac[i, j] > 0.6 else 'black')
  ax.set_xticks(range(len(names)), names, rotation=60 if small else 0,
                fontsize=7 if small else 8, ha='right' if small else 'center')
  ax.set_yticks(range(len(names)), names, fontsize=7 if small else 8)
  ax.set_title(title, fontsize=9)


def confusion_ten(workdir, methods, titles, path) -> pathlib.Path | None:
  """One panel per 10-class method, counts summed over the folds."""
  cms = {m: results.pooled_confusion(workdir, wd.ten_stage(m), signs.NUM_CLASSES)
         for m in methods}
  cms = {m: c for m, c in cms.items() if c is not None}
  if not cms:
    return None
  fig, axes = plt.subplots(1, len(cms), figsize=(5.0 * len(cms), 4.6), squeeze=False,
                           gridspec_kw={'wspace': 0.45})
  for ax, (m, cm) in zip(axes[0], cms.items()):
    _matrix(ax, cm, signs.CLASS_NAMES, f'10-class, {titles[m]}')
    ax.set_xlabel('predicted', fontsize=8)
  axes[0][0].set_ylabel('true', fontsize=8)
  return _save(fig, path)


def confusion_binary(workdir, sign_names, methods, titles, path) -> pathlib.Path | None:
  """A grid of 2x2 matrices: one row per method, one column per sign."""
  grid = {(m, s): results.pooled_confusion(workdir, wd.binary_stage(s, m), 2)
          for m in methods for s in sign_names}
  if all(v is None for v in grid.values()):
    return None
  fig, axes = plt.subplots(len(methods), len(sign_names),
                           figsize=(2.1 * len(sign_names) + 0.6, 2.1 * len(methods)),
                           squeeze=False, gridspec_kw={'wspace': 0.5, 'hspace': 0.45})
  for r, m in enumerate(methods):
    for c, s in enumerate(sign_names):
      ax = axes[r][c]
      cm = grid[m, s]
      if cm is None:
        ax.axis('off')
        ax.set_title(f'{s}: not run', fontsize=8)
        continue
      _matrix(ax, cm, ('non', 'sign'), s if r == 0 else '')
      if c == 0:
        ax.set_ylabel(titles[m], fontsize=9)
  fig.suptitle('Binary tasks: confusion matrices summed over folds (rows true, '
               'columns predicted)', fontsize=10)
  return _save(fig, path)


def read_scalars(stage_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{tag: (steps, values)} of a stage's TensorBoard event files."""
  stage_dir = pathlib.Path(stage_dir)
  series: dict[str, list[tuple[int, float]]] = {}
  events = sorted(stage_dir.rglob('events.out.tfevents.*'))
  if events:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for ev in events:
      prefix = '' if ev.parent == stage_dir else f'{ev.parent.name}/'
      try:
        for e in _events(tf, ev):
          for v in e.summary.value:
            if v.HasField('simple_value'):
              value = v.simple_value
            elif v.HasField('tensor'):
              arr = tf.make_ndarray(v.tensor)
              if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
                continue
              value = float(arr.reshape(()))
            else:
              continue
            series.setdefault(prefix + v.tag, []).append((int(e.step), float(value)))
      except tf.errors.DataLossError:
        continue  # a file cut short by a kill: keep what was read
  out = {}
  for k, pts in series.items():
    pts.sort()
    out[k] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
  return out


@dataclasses.dataclass
class Panel:
  """One panel of the training curves: its tags share one y axis."""
  title: str
  tags: list[str]
  log: bool  # log y axis: a positive series spanning DECADES_FOR_LOG decades or more


DECADES_FOR_LOG = 2  # max/min of a positive loss at or above 10**2: log axis
_LOSS_WORDS = ('loss', 'kl', 'recon')


def _spans_decades(y: np.ndarray) -> bool:
  y = np.asarray(y, np.float64)
  y = y[np.isfinite(y)]
  return bool(len(y) > 1 and y.min() > 0 and np.log10(y.max() / y.min()) >= DECADES_FOR_LOG)


def curve_panels(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Panel]:
  """One panel per loss (losses differ in scale by orders of magnitude, so they never
  share an axis; log scale where one spans decades), then one for the accuracies
  (all in [0, 1])."""
  accs = sorted(t for t in series if 'acc' in t.lower())
  losses = sorted(t for t in series
                  if t not in accs and any(w in t.lower() for w in _LOSS_WORDS))
  panels = [Panel(t, [t], _spans_decades(series[t][1])) for t in losses]
  if accs:
    panels.append(Panel('accuracy', accs, False))
  return panels


def _events(tf, path):
  """The Event protos of one event file (what summary_iterator reads, without its
  deprecation warning on the terminal)."""
  for record in tf.data.TFRecordDataset(str(path)):
    yield tf.compat.v1.Event.FromString(record.numpy())


def read_images(stage_dir) -> dict[str, np.ndarray]:
  """{tag: the last logged image (H, W) uint8} of a stage's TensorBoard image summaries
  (the GAN's `samples/<sign>`, a classifier's `train_patches/<class>`)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for ev in sorted(pathlib.Path(stage_dir).glob('events.out.tfevents.*')):
    try:
      for e in _events(tf, ev):
        for v in e.summary.value:
          if v.HasField('tensor') and v.metadata.plugin_data.plugin_name == 'images':
            png = tf.make_ndarray(v.tensor)[2]  # width, height, then the encoded images
            out[v.tag] = tf.io.decode_png(png).numpy()[..., 0]
    except tf.errors.DataLossError:
      continue
  return out


def training_curves(workdir, stages: dict[str, str], path) -> pathlib.Path | None:
  """The scalars of each stage (title -> stage folder under fold 0): one row of panels
  per stage (`curve_panels`), four panels a row at most; None when nothing was logged."""
  folds = wd.fold_dirs(workdir)
  if not folds:
    return None
  first = folds[min(folds)]
  logged = {t: read_scalars(first / s) for t, s in stages.items()}
  panels = {t: (v, curve_panels(v)) for t, v in logged.items() if v and curve_panels(v)}
  if not panels:
    return None
  cols = min(4, max(len(p) for _, p in panels.values()))
  rows = [(t, v, p[i:i + cols]) for t, (v, p) in panels.items() for i in range(0, len(p), cols)]
  fig, axes = plt.subplots(len(rows), cols, figsize=(3.3 * cols, 2.5 * len(rows)),
                           squeeze=False)
  for r, (title, series, row) in enumerate(rows):
    for c in range(cols):
      ax = axes[r][c]
      if c >= len(row):
        ax.axis('off')
        continue
      panel = row[c]
      for tag in panel.tags:
        x, y = series[tag]
        ax.plot(x, y, label=tag, lw=1.2, marker='o' if len(x) < 3 else None)
      if panel.log:
        ax.set_yscale('log')
      if panel.title == 'accuracy':
        ax.set_ylim(-0.02, 1.02)
      ax.set_title(f'{title}: {panel.title}' + (' (log)' if panel.log else ''), fontsize=8)
      ax.set_xlabel('step', fontsize=7)
      ax.tick_params(labelsize=6)
      if len(panel.tags) > 1:
        ax.legend(fontsize=6, loc='best')
  fig.suptitle(f'Training curves, fold {min(folds)}: one panel per loss', fontsize=10)
  # Keep the top 0.35 inch for the suptitle, or the first row's titles run into it.
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
  return _save(fig, path)


def fig4(sizes, cells, path) -> pathlib.Path | None:
  """Pre-training set size against fine-tuned AC (black), SE (blue), SP (red), GGO;
  `cells[size]` is a results.Cell (mean +- std over folds)."""
  pts = [(n, cells[n]) for n in sorted(sizes) if cells.get(n) and cells[n].num_folds]
  if not pts:
    return None
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  x = np.array([n for n, _ in pts])
  for i, (name, color) in enumerate((('accuracy', 'black'), ('sensitivity', 'tab:blue'),
                                     ('specificity', 'tab:red'))):
    mean = np.array([c.mean[i] for _, c in pts])
    std = np.nan_to_num(np.array([c.std[i] for _, c in pts]))
    ax.errorbar(x, mean, yerr=std, color=color, marker='o', capsize=3, label=name)
  ax.set_xscale('log' if x.max() / max(x.min(), 1) > 20 else 'linear')
  ax.set_xticks(x, [str(v) for v in x], fontsize=8)
  ax.minorticks_off()
  ax.set_ylim(0, 1.02)
  ax.set_xlabel('generated GGO patches used for pre-training')
  ax.set_ylabel('fine-tuned GGO binary task')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc='lower right')
  ax.set_title('Fig. 4: pre-training set size (mean ± std over folds)', fontsize=9)
  return _save(fig, path)


def fig5(bars: dict[str, dict[str, np.ndarray]], path) -> pathlib.Path | None:
  """Grouped bars (AC, SE, SP) per model, one panel per task: bars[task][model] =
  (AC, SE, SP) means. None when nothing to show."""
  bars = {t: v for t, v in bars.items() if v}
  if not bars:
    return None
  fig, axes = plt.subplots(1, len(bars), figsize=(5.2 * len(bars), 3.6), squeeze=False)
  for ax, (task, models) in zip(axes[0], bars.items()):
    names = list(models)
    width = 0.8 / 3
    for i, (metric, color) in enumerate((('AC', 'black'), ('SE', 'tab:blue'),
                                         ('SP', 'tab:red'))):
      ax.bar(np.arange(len(names)) + (i - 1) * width, [models[n][i] for n in names],
             width, color=color, label=metric)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(task, fontsize=9)
    ax.legend(fontsize=7)
  return _save(fig, path)
