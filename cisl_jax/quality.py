"""Quality of a generated patch set: fidelity, coverage, diversity and memorisation.

All measures work on features of a classifier trained on REAL CT patches (not an
ImageNet network, whose features know nothing of Hounsfield units); the extractor is
any function `images[N,64,64,1] -> features[N,D]`, e.g. `classifier_features(...)`.

- Fréchet distance (FD) between the real and generated feature Gaussians, beside the
  FD between the real training and real held-out patches: the floor that sampling
  noise alone reaches with sets this small.
- Precision and recall of the generated set against the real manifold, with k-nearest
  neighbour balls (Kynkäänniemi et al. 2019, "Improved precision and recall metric").
- Diversity: mean pairwise distance within the generated set over that within the
  real set; a ratio far below 1 is mode collapse.
- Memorisation: the share of generated patches whose nearest real TRAINING patch is
  nearer than every real HELD-OUT patch. A generator that samples the distribution
  without copying is at chance, n_train / (n_train + n_held) (the nearest of all
  real patches is equally likely to be any of them); a copying one is near 1. It is
  measured in feature space and in pixel space (copies are exact in pixels).

`evaluate` computes everything per sign and overall; `write_quality_section` writes
`quality.json`, `quality.md` (a Markdown section for the report) and
`memorisation.png` (the most suspicious generated patches beside their nearest
training and held-out patches).
"""
import json
import os
from typing import Callable, Sequence

import numpy as np

from cisl_jax import signs as signs_lib
from cisl_jax import workdir as wd

FeatureFn = Callable[[np.ndarray], np.ndarray]
# Below this overall precision the generated set is off the real manifold and the
# nearest-neighbour memorisation test has nothing near to find; the section says so.
PRECISION_FLOOR = 0.1


def _as_2d(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  return x.reshape(x.shape[0], -1)


def pairwise_distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
  """Euclidean distances [len(a), len(b)] between rows, in float64, chunked."""
  a, b = _as_2d(a), _as_2d(b)
  b_sq = np.sum(b * b, axis=1)
  out = np.empty((a.shape[0], b.shape[0]))
  for i in range(0, a.shape[0], chunk):
    ai = a[i:i + chunk]
    d2 = np.sum(ai * ai, axis=1)[:, None] + b_sq[None, :] - 2.0 * ai @ b.T
    out[i:i + chunk] = np.sqrt(np.maximum(d2, 0.0))
  return out


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((m + m.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(real: np.ndarray, gen: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets (rows = samples).

  Uses tr(sqrt(S1 S2)) = tr(sqrt(S1^1/2 S2 S1^1/2)), a symmetric PSD square root by
  eigendecomposition: stable where the covariances are singular (few samples).
  """
  real, gen = _as_2d(real), _as_2d(gen)
  if len(real) < 2 or len(gen) < 2:
    return float('nan')
  mu1, mu2 = real.mean(0), gen.mean(0)
  s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
  s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
  root1 = _sqrtm_psd(s1)
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0.0, None)).sum()
  fd = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross
  return float(max(fd, 0.0))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
  """Distance from each row to its k-th nearest other row."""
  d = pairwise_distances(x, x)
  np.fill_diagonal(d, np.inf)
  return np.partition(d, k - 1, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
  """k-NN precision and recall (Kynkäänniemi et al. 2019).

  Precision: share of generated samples inside the real manifold (the union of balls
  around each real sample reaching its k-th real neighbour); recall: share of real
  samples inside the generated manifold. NaN when a set has k samples or fewer.
  """
  real, gen = _as_2d(real), _as_2d(gen)
  if len(real) <= k or len(gen) <= k:
    return float('nan'), float('nan')
  cross = pairwise_distances(gen, real)  # [G, R]
  precision = np.mean(np.any(cross <= _knn_radii(real, k)[None, :], axis=1))
  recall = np.mean(np.any(cross.T <= _knn_radii(gen, k)[None, :], axis=1))
  return float(precision), float(recall)


def mean_pairwise_distance(x: np.ndarray, max_items: int = 2000, seed: int = 0) -> float:
  """Mean distance between distinct rows (a seeded subsample of max_items rows)."""
  x = _as_2d(x)
  if len(x) > max_items:
    x = x[np.random.default_rng(seed).choice(len(x), max_items, replace=False)]
  if len(x) < 2:
    return float('nan')
  d = pairwise_distances(x, x)
  n = len(x)
  return float(d.sum() / (n * (n - 1)))


def diversity(real: np.ndarray, gen: np.ndarray, seed: int = 0) -> dict:
  """Mean pairwise distance of the generated and real sets, and their ratio."""
  g, r = mean_pairwise_distance(gen, seed=seed), mean_pairwise_distance(real, seed=seed)
  return {'generated': g, 'real': r, 'ratio': g / r if r > 0 else float('nan')}


def memorisation(gen: np.ndarray, train: np.ndarray, held: np.ndarray) -> dict:
  """Share of generated rows whose nearest training row beats every held-out row.

  Returns share, chance (n_train / (n_train + n_held)), and per generated row:
  d_train, d_held (distances to the nearest of each) and nearest_train,
  nearest_held (their indices).
  """
  gen, train, held = _as_2d(gen), _as_2d(train), _as_2d(held)
  if len(gen) == 0 or len(train) == 0 or len(held) == 0:
    nan = float('nan')
    return {'share': nan, 'chance': nan, 'd_train': np.zeros(0), 'd_held': np.zeros(0),
            'nearest_train': np.zeros(0, int), 'nearest_held': np.zeros(0, int)}
  dt, dh = pairwise_distances(gen, train), pairwise_distances(gen, held)
  it, ih = dt.argmin(1), dh.argmin(1)
  d_train, d_held = dt[np.arange(len(gen)), it], dh[np.arange(len(gen)), ih]
  return {'share': float(np.mean(d_train < d_held)),
          'chance': len(train) / (len(train) + len(held)),
          'd_train': d_train, 'd_held': d_held, 'nearest_train': it, 'nearest_held': ih}


def extract_features(feature_fn: FeatureFn, images: np.ndarray,
                     batch_size: int = 256) -> np.ndarray:
  """Runs feature_fn over images in batches; returns float64 [N, D]."""
  images = np.asarray(images, np.float32)
  if len(images) == 0:
    return np.zeros((0, 0))
  parts = [np.asarray(feature_fn(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
  return _as_2d(np.concatenate(parts))


def _measures(tr, ho, ge, tr_px, ho_px, ge_px, k, seed):
  precision, recall = precision_recall(tr, ge, k)
  mem = memorisation(ge, tr, ho)
  mem_px = memorisation(ge_px, tr_px, ho_px)
  return {
      'num_train': len(tr), 'num_held_out': len(ho), 'num_generated': len(ge),
      'fd': frechet_distance(tr, ge),
      'fd_real_train_vs_held_out': frechet_distance(tr, ho),
      'precision': precision, 'recall': recall,
      'diversity': diversity(tr, ge, seed),
      'memorisation': {'share': mem['share'], 'chance': mem['chance'],
                       'pixel_share': mem_px['share']},
  }, mem


def evaluate(feature_fn: FeatureFn, train_images: np.ndarray, train_labels: np.ndarray,
             held_images: np.ndarray, held_labels: np.ndarray, gen_images: np.ndarray,
             gen_labels: np.ndarray, *, k: int = 3, max_generated: int = 1000,
             num_suspicious: int = 8, seed: int = 0) -> dict:
  """All measures per sign and overall, on features of the given extractor.

  Args:
    feature_fn: images [B,64,64,1] in [-1,1] -> features [B,D].
    train_images, train_labels: the real patches the generator was trained on.
    held_images, held_labels: real held-out patches (never seen by the generator).
    gen_images, gen_labels: the generated set (label codes 0-8).
    k: neighbours for precision/recall.
    max_generated: generated patches used per sign (a seeded subsample), to bound cost.
    num_suspicious: how many most-suspicious generated patches to keep for the figure.
    seed: subsampling seed.

  Returns:
    {'per_sign': {sign: measures}, 'overall': measures, 'suspicious': [...]} where
    'suspicious' rows hold the generated, nearest training and nearest held-out images
    (numpy, not JSON): each sign's smallest d_train / d_held (feature space) first,
    then the rest by that ratio.
  """
  rng = np.random.default_rng(seed)
  train_labels, held_labels = np.asarray(train_labels), np.asarray(held_labels)
  gen_labels = np.asarray(gen_labels)
  keep = []
  for s in range(signs_lib.NUM_SIGNS):
    idx = np.flatnonzero(gen_labels == s)
    if len(idx) > max_generated:
      idx = np.sort(rng.choice(idx, max_generated, replace=False))
    keep.append(idx)
  keep = np.concatenate(keep)
  gen_images, gen_labels = np.asarray(gen_images)[keep], gen_labels[keep]
  sign_mask = lambda l: l < signs_lib.NUM_SIGNS
  t_keep, h_keep = sign_mask(train_labels), sign_mask(held_labels)
  train_images, train_labels = np.asarray(train_images)[t_keep], train_labels[t_keep]
  held_images, held_labels = np.asarray(held_images)[h_keep], held_labels[h_keep]

  ft, fh, fg = (extract_features(feature_fn, x)
                for x in (train_images, held_images, gen_images))
  pt, ph, pg = (_as_2d(x) for x in (train_images, held_images, gen_images))
  per_sign, rows, skipped = {}, [], {}
  for s, name in enumerate(signs_lib.SIGNS):
    t, h, g = train_labels == s, held_labels == s, gen_labels == s
    if not g.any() and not t.any():
      continue
    # A sign absent from one of the three sets cannot be measured (small data of one's
    # own): say which and why, rather than fail on an empty array.
    absent = [what for what, m in (('real training', t), ('real held-out', h),
                                   ('generated', g)) if not m.any()]
    if absent:
      skipped[name] = f'no {" and no ".join(absent)} patches'
      continue
    per_sign[name], mem = _measures(ft[t], fh[h], fg[g], pt[t], ph[h], pg[g], k, seed)
    # Suspects are ranked within their sign: a GGO copy is a copy of a GGO patch.
    gi, ti, hi = np.flatnonzero(g), np.flatnonzero(t), np.flatnonzero(h)
    for j in range(len(mem['d_train'])):
      rows.append((mem['d_train'][j] / max(mem['d_held'][j], 1e-12), name, gi[j],
                   ti[mem['nearest_train'][j]], hi[mem['nearest_held'][j]],
                   mem['d_train'][j], mem['d_held'][j]))
  overall, _ = _measures(ft, fh, fg, pt, ph, pg, k, seed)
  # Overall memorisation: the per-sign shares weighted by generated counts.
  shares = [(m['num_generated'], m['memorisation']) for m in per_sign.values()
            if not np.isnan(m['memorisation']['share'])]
  if shares:
    n = sum(w for w, _ in shares)
    for key in ('share', 'chance', 'pixel_share'):
      overall['memorisation'][key] = float(sum(w * m[key] for w, m in shares) / n)
  # The figure shows each sign's most suspicious patch first (most suspicious sign
  # first), then the rest by ratio, so that one sign's near-twins do not fill it.
  rows.sort(key=lambda r: r[0])
  firsts = list({r[1]: r for r in reversed(rows)}.values())[::-1]
  firsts.sort(key=lambda r: r[0])
  rows = firsts + [r for r in rows if not any(r is f for f in firsts)]
  suspicious = [{'sign': name, 'ratio': float(ratio), 'd_train': float(dt),
                 'd_held': float(dh), 'generated': gen_images[gi],
                 'nearest_train': train_images[ti], 'nearest_held': held_images[hi]}
                for ratio, name, gi, ti, hi, dt, dh in rows[:num_suspicious]]
  return {'per_sign': per_sign, 'overall': overall, 'suspicious': suspicious, 'k': k,
          'skipped_signs': skipped}


def _fmt(x: float, digits: int = 3) -> str:
  return 'n/a' if x is None or (isinstance(x, float) and np.isnan(x)) else f'{x:.{digits}f}'


def to_markdown(results: dict, figure_name: str = 'memorisation.png',
                heading: str = '## Quality of the generated patches') -> str:
  """A Markdown section (table + reading guide + figure link) for the report."""
  lines = [heading, '',
           'Measured on penultimate-layer features of a classifier trained on real '
           f'patches. FD: Fréchet distance (real training vs generated); FD floor: real '
           f'training vs real held-out, the noise level of sets this small. '
           f'Precision/recall: k-NN manifolds, k={results["k"]}. Diversity: mean pairwise '
           'distance generated / real (well below 1 = mode collapse). Memorisation: share '
           'of generated patches nearer a training patch than any held-out one, in '
           'feature and pixel space, against the chance level n_train/(n_train+n_held).',
           '']
  if results.get('features'):
    lines += [f'Features: {results["features"]}.', '']
  lines += [
            '| sign | n train | n held-out | n gen | FD | FD floor | precision | recall | '
            'diversity ratio | memorised (feat) | memorised (pixel) | chance |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|']
  rows = list(results['per_sign'].items()) + [('**overall**', results['overall'])]
  for name, m in rows:
    mem = m['memorisation']
    lines.append(
        f'| {name} | {m["num_train"]} | {m["num_held_out"]} | {m["num_generated"]} | '
        f'{_fmt(m["fd"], 2)} | {_fmt(m["fd_real_train_vs_held_out"], 2)} | '
        f'{_fmt(m["precision"])} | {_fmt(m["recall"])} | {_fmt(m["diversity"]["ratio"])} | '
        f'{_fmt(mem["share"])} | {_fmt(mem["pixel_share"])} | {_fmt(mem["chance"])} |')
  lines += ['', 'Overall FD/precision/recall/diversity pool all signs; overall '
            'memorisation is the per-sign shares weighted by generated counts.']
  for name, why in (results.get('skipped_signs') or {}).items():
    lines += [f'- {name}: not measured: {why} in this fold.']
  precision = results['overall']['precision']
  if precision is not None and not np.isnan(precision) and precision < PRECISION_FLOOR:
    lines += ['', f'**Caution:** overall precision is {precision:.3f}: the generated patches '
              'lie outside the real manifold, so their nearest real patch is not a near '
              'copy and the memorisation shares here say nothing about copying. The '
              'generator has not (yet) learned the real patches: see FD against its floor '
              'and the figure.']
  if results['suspicious']:
    lines += ['', f'![Most suspicious generated patches]({figure_name})', '',
              'Each row: a generated patch, its nearest real training patch and its '
              'nearest real held-out patch (feature space); each sign\'s most suspicious '
              'patch (smallest d_train/d_held) first, then the rest by that ratio.']
  return '\n'.join(lines) + '\n'


def _jsonable(x):
  """Nested dicts/lists with NaN as null (strict JSON) and images dropped."""
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items() if not isinstance(v, np.ndarray)}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return None if np.isnan(x) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  return x


def plot_suspicious(suspicious: Sequence[dict], path: str) -> None:
  """Writes a PNG: generated | nearest training | nearest held-out, one row each."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  n = max(len(suspicious), 1)
  fig, axes = plt.subplots(n, 3, figsize=(6, 2.1 * n), squeeze=False)
  titles = ('generated', 'nearest train', 'nearest held-out')
  for r, row in enumerate(suspicious):
    for c, key in enumerate(('generated', 'nearest_train', 'nearest_held')):
      ax = axes[r, c]
      ax.imshow(np.squeeze(row[key]), cmap='gray', vmin=-1, vmax=1, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(f'{row["sign"]}\nratio {row["ratio"]:.2f}', fontsize=8)
      dist = {'nearest_train': row['d_train'], 'nearest_held': row['d_held']}.get(key)
      ax.set_title(titles[c] + (f'\nd={dist:.2f}' if dist is not None else ''), fontsize=8)
  fig.tight_layout()
  wd.save_figure(fig, path, dpi=100)


def write_quality_section(out_dir: str, results: dict) -> dict:
  """Writes quality.json, quality.md and memorisation.png into out_dir (atomically).

  Args:
    out_dir: folder to write into (created if missing), e.g. `<workdir>/report/`.
    results: the dict returned by `evaluate`.

  Returns:
    {'json': path, 'markdown': path, 'figure': path or None, 'section': markdown text}.
  """
  os.makedirs(out_dir, exist_ok=True)
  paths = {'json': os.path.join(out_dir, wd.QUALITY_JSON),
           'markdown': os.path.join(out_dir, wd.QUALITY_MD), 'figure': None}
  wd.write_text(paths['json'], json.dumps(_jsonable(results), indent=2, allow_nan=False))
  section = to_markdown(results, wd.MEMORISATION_PNG)
  wd.write_text(paths['markdown'], section)
  if results['suspicious']:
    paths['figure'] = os.path.join(out_dir, wd.MEMORISATION_PNG)
    plot_suspicious(results['suspicious'], paths['figure'])
  paths['section'] = section
  return paths


# ---- Reading a reproduce workdir: <workdir>/fold<k>/<stage>/ ---------------------------


def find_generated(stage_dir: str) -> str:
  """The generated-set folder (holding dataset_info.json) in or just under stage_dir."""
  candidates = [stage_dir] + sorted(
      os.path.join(stage_dir, d) for d in (os.listdir(stage_dir) if os.path.isdir(stage_dir)
                                           else ()))
  for c in candidates:
    if os.path.isfile(os.path.join(c, 'dataset_info.json')):
      return c
  raise FileNotFoundError(
      f'{stage_dir}: no generated set (a folder with dataset_info.json) in it or just under '
      'it; run the generate stage of this fold first, or set --config.generated_dir.')


def data_settings(config, stage_dir: str) -> dict:
  """data_dir, source and num_folds of the run behind a stage, else from `config`.

  Read from the stage's config.json, or (the generate stage writes none) from the
  config.json of the GAN run named in its metrics.json: what the run really used.
  """
  out = {'data_dir': config.data_dir, 'source': config.source, 'num_folds': config.num_folds}
  candidates = [stage_dir]
  if wd.is_done(stage_dir):
    gan_workdir = wd.read_metrics(stage_dir).get('gan_workdir')
    if gan_workdir:
      candidates.append(gan_workdir)
  for folder in candidates:
    stage = wd.read_json(os.path.join(folder, wd.CONFIG_FILE))
    if stage is not None:
      out.update({k: stage[k] for k in out if stage.get(k) is not None})
      break
  return out


def _tree_shapes(tree, prefix=''):
  """{'conv1/kernel': shape, ...} of a restored checkpoint tree (nested dicts)."""
  out = {}
  for k, v in (tree.items() if isinstance(tree, dict) else ()):
    name = f'{prefix}/{k}' if prefix else str(k)
    if isinstance(v, dict):
      out.update(_tree_shapes(v, name))
    else:
      out[name.removesuffix('/value')] = tuple(np.shape(v))
  return out


def classifier_features(stage_dir: str, batch_size: int = 256) -> FeatureFn:
  """Penultimate-layer features (input of the last FC) of a trained cisl_jax Classifier.

  `stage_dir` is the classifier stage's workdir (holding checkpoints/). The width and
  class count are read from the checkpoint's shapes, the model is restored in eval
  mode (BatchNorm running statistics, no dropout) and run jitted at a fixed batch size.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from cisl_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from cisl_jax.models import classifier as classifier_lib  # pylint: disable=g-import-not-at-top

  directory = checkpointing.checkpoint_dir(stage_dir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{directory}: no classifier checkpoints; train the classifier '
                            'stage first or set --config.classifier_dir.')
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True)) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'{directory}: no finished checkpoint; train the stage first.')
    shapes = _tree_shapes(manager.restore(step, args=ocp.args.StandardRestore())['params'])
  try:
    c1, hidden, num_classes = (shapes['conv1/kernel'][-1], shapes['fc5/kernel'][-1],
                               shapes['fc6/kernel'][-1])
  except KeyError as e:
    raise ValueError(f'{directory}/{step}: not a cisl_jax Classifier checkpoint (no {e}); '
                     'point --config.classifier_dir at a classifier stage.') from e
  width = c1 / 32
  model = classifier_lib.Classifier(num_classes, width=width, rngs=nnx.Rngs(0))
  if classifier_lib.scaled(1024, width) != hidden:
    raise ValueError(f'{directory}/{step}: conv1 has {c1} channels but fc5 {hidden} units; '
                     'not a Classifier of one width multiplier.')
  graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  params, batch_stats, _ = checkpointing.init_from(stage_dir, params, batch_stats)
  model = nnx.merge(graphdef, params, batch_stats, rest)
  model.eval()
  graphdef, state = nnx.split(model)

  @jax.jit
  def forward(state, x):
    return nnx.merge(graphdef, state).features(x)

  def fn(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, np.float32)
    out = []
    for i in range(0, len(images), batch_size):
      x = images[i:i + batch_size]
      pad = batch_size - len(x)  # fixed shape: one compilation
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
      out.append(np.asarray(forward(state, x))[:batch_size - pad])
    return np.concatenate(out)

  return fn


def _turing_test(config, workdir: str, res: dict, train: dict, gen: dict) -> None:
  """The automated Turing test (cisl_jax/c2st.py) on the same generated subsample's
  signs; appends its section to quality.md, writes quality.csv and res['c2st']."""
  from cisl_jax import c2st  # pylint: disable=g-import-not-at-top
  keep = np.asarray(train['label']) < signs_lib.NUM_SIGNS
  labels = np.asarray(gen['label'])
  rng = np.random.default_rng(int(config['seed']))
  idx = np.concatenate([rng.permutation(np.flatnonzero(labels == s))[
      :int(config['max_generated'])] for s in range(signs_lib.NUM_SIGNS)])
  res['c2st'] = c2st.c2st(np.asarray(train['image'])[keep], np.asarray(train['label'])[keep],
                          np.asarray(gen['image'])[idx], labels[idx], signs_lib.SIGNS,
                          steps=int(config.get('c2st_steps', 300)), seed=int(config['seed']))
  rows = c2st.quality_rows(int(config['fold']), res, res['c2st'])
  wd.write_text(os.path.join(workdir, wd.QUALITY_CSV), c2st.to_csv(rows))
  md = os.path.join(workdir, wd.QUALITY_MD)
  with open(md) as f:
    section = f.read()
  wd.write_text(md, section + '\n' + c2st.to_markdown(res['c2st']))


def run_stage(config, workdir: str) -> dict:
  """The quality stage: measures one fold's generated set, writes into `workdir`.

  Args:
    config: ConfigDict (or dict) with data_dir, source, num_folds, fold (held out),
      seed, generated_dir (the generated set, or the generate stage folder holding it),
      features_from (workdir of a classifier trained on real patches, e.g. the fold's
      ten_scratch stage), max_generated; optional k (3), num_suspicious (8) and
      c2st_steps (300, the Turing-test CNN's training steps per half).
    workdir: the stage folder, e.g. `<run>/fold<k>/quality/`.

  Writes quality.json, quality.md (with the automated Turing test), quality.csv,
  memorisation.png and, last, metrics.json (which
  marks the stage done; a finished stage is not recomputed). Returns the metrics.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  get = config.get
  metrics_path = os.path.join(workdir, wd.METRICS_FILE)
  if (done := wd.finished(workdir)) is not None:
    return done
  fold, num_folds = int(config['fold']), int(config['num_folds'])
  gen_dir = find_generated(config['generated_dir'])
  train = input_pipeline.load_split(config['data_dir'], config['source'],
                                    [f for f in range(num_folds) if f != fold])
  held = input_pipeline.load_split(config['data_dir'], config['source'], [fold])
  gen = input_pipeline.load_generated(gen_dir)
  logging.info('quality: %d generated patches from %s, features of %s', len(gen['label']),
               gen_dir, config['features_from'])
  res = evaluate(classifier_features(config['features_from']), train['image'],
                 train['label'], held['image'], held['label'], gen['image'], gen['label'],
                 k=int(get('k', 3)), max_generated=int(config['max_generated']),
                 num_suspicious=int(get('num_suspicious', 8)), seed=int(config['seed']))
  res['features'] = f'penultimate layer of the classifier in {config["features_from"]}'
  write_quality_section(workdir, res)
  _turing_test(config, workdir, res, train, gen)
  metrics = _jsonable({k: v for k, v in res.items() if k != 'suspicious'})
  metrics['generated_dir'] = gen_dir
  wd.write_text(metrics_path, json.dumps(metrics, indent=2))
  return metrics
