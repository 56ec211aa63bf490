"""The quality stage of a reproduce workdir: one fold's generated set measured on the
features of that fold's classifier trained on real patches.

`run_stage(config, workdir)` reads the real training and held-out folds and the
generated set, measures them (measures.py), writes the section (section.py) and, last,
metrics.json. `data_settings` and `find_generated` locate a run's data and generated
set from its stage folders (the visual Turing test uses them too).
"""
import json
import os

import numpy as np

from cisl_jax import signs as signs_lib
from cisl_jax import workdir as wd
from cisl_jax.quality import measures
from cisl_jax.quality import section


def find_generated(stage_dir: str) -> str:
  """The generated-set folder (holding dataset_info.json) in or just under stage_dir:
  a generate stage's `generated/` before any other (such as `generated_raw/`)."""
  candidates = [stage_dir, os.path.join(stage_dir, wd.GENERATED_DIR)] + sorted(
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


def classifier_features(stage_dir: str, batch_size: int = 256) -> measures.FeatureFn:
  """Penultimate-layer features (input of the last FC) of a trained cisl_jax Classifier.

  `stage_dir` is the classifier stage's workdir: the model is rebuilt from its
  config.json as the evaluation does (cisl_jax/train/classifier.py), restored from its
  latest checkpoint in eval mode (BatchNorm running statistics, no dropout) and run
  jitted at a fixed batch size.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from cisl_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import classifier as classifier_train  # pylint: disable=g-import-not-at-top

  train_config = ml_collections.ConfigDict(wd.read_config(
      stage_dir, 'the features come from a classifier stage: point --config.classifier_dir '
      '(or features_from) at the --workdir of a train_classifier.py run'))
  if classifier_train.mode_of(train_config).transfer:
    raise ValueError(f'{stage_dir}: an ImageNet transfer stage; the features must come '
                     'from a cisl_jax Classifier trained on real patches (ten_scratch).')
  model, _, _ = classifier_train.create_model(train_config, jax.random.PRNGKey(0))
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


def _turing_test(config, workdir: str, res: dict, train: dict, gen: dict,
                 raw: dict | None) -> None:
  """The automated Turing test (cisl_jax/c2st.py) on the same generated subsample's
  signs, and on the same patches before the intensity match where `raw` holds them;
  appends its section to quality.md, writes quality.csv, res['c2st'] (and 'c2st_raw')."""
  from cisl_jax import c2st  # pylint: disable=g-import-not-at-top
  keep = np.asarray(train['label']) < signs_lib.NUM_SIGNS
  real_images, real_labels = np.asarray(train['image'])[keep], np.asarray(train['label'])[keep]
  labels = np.asarray(gen['label'])
  rng = np.random.default_rng(int(config['seed']))
  idx = np.concatenate([rng.permutation(np.flatnonzero(labels == s))[
      :int(config['max_generated'])] for s in range(signs_lib.NUM_SIGNS)])
  test = lambda images: c2st.c2st(
      real_images, real_labels, np.asarray(images)[idx], labels[idx], signs_lib.SIGNS,
      steps=int(config.get('c2st_steps', c2st.CONVERGED_STEPS)), seed=int(config['seed']))
  res['c2st'] = test(gen['image'])
  if raw is not None:
    res['c2st_raw'] = test(raw['image'])
  rows = c2st.quality_rows(int(config['fold']), res, res['c2st'], res.get('c2st_raw'))
  wd.write_text(os.path.join(workdir, wd.QUALITY_CSV), c2st.to_csv(rows))
  md = os.path.join(workdir, wd.QUALITY_MD)
  with open(md) as f:
    section = f.read()
  wd.write_text(md, section + '\n' + c2st.to_markdown(res['c2st'], res.get('c2st_raw')))


def raw_generated(gen_dir: str) -> str | None:
  """The decoder's output before the intensity match, beside a generate stage's
  generated/ set (config.match_intensities), else None."""
  raw = os.path.join(os.path.dirname(os.path.abspath(gen_dir)), wd.GENERATED_RAW_DIR)
  matched = os.path.basename(os.path.abspath(gen_dir)) == wd.GENERATED_DIR
  return raw if matched and os.path.isfile(os.path.join(raw, 'dataset_info.json')) else None


def run_stage(config, workdir: str) -> dict:
  """The quality stage: measures one fold's generated set, writes into `workdir`.

  Args:
    config: ConfigDict (or dict) with data_dir, source, num_folds, fold (held out),
      seed, generated_dir (the generated set, or the generate stage folder holding it),
      features_from (workdir of a classifier trained on real patches, e.g. the fold's
      ten_scratch stage), max_generated; optional k (3), num_suspicious (8) and
      c2st_steps (c2st.CONVERGED_STEPS, the Turing-test CNN's training steps per half).
    workdir: the stage folder, e.g. `<run>/fold<k>/quality/`.

  Where the generated set was intensity-matched (a `generated_raw/` beside it), the
  automated Turing test also scores the decoder's output before the match.

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
  raw_dir = raw_generated(gen_dir)
  raw = input_pipeline.load_generated(raw_dir) if raw_dir else None
  logging.info('quality: %d generated patches from %s, features of %s', len(gen['label']),
               gen_dir, config['features_from'])
  res = measures.evaluate(classifier_features(config['features_from']), train['image'],
                 train['label'], held['image'], held['label'], gen['image'], gen['label'],
                 k=int(get('k', 3)), max_generated=int(config['max_generated']),
                 num_suspicious=int(get('num_suspicious', 8)), seed=int(config['seed']))
  res['features'] = f'penultimate layer of the classifier in {config["features_from"]}'
  section.write_quality_section(workdir, res)
  _turing_test(config, workdir, res, train, gen, raw)
  metrics = section.jsonable({k: v for k, v in res.items() if k != 'suspicious'})
  metrics['generated_dir'] = gen_dir
  wd.write_text(metrics_path, json.dumps(metrics, indent=2))
  return metrics
