"""Tests for cisl_jax/quality/ (measures, section, stage) on sets whose answer is known."""
import json
import os

import numpy as np
import pytest

from cisl_jax import config_lib
from cisl_jax.quality import measures
from cisl_jax.quality import section
from cisl_jax.quality import stage
from cisl_jax import signs as signs_lib
from cisl_jax import workdir as wd


def _gauss(n, d=8, seed=0, shift=0.0):
  return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_identical_sets_have_zero_fd_and_full_precision_recall():
  x = _gauss(200)
  assert measures.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
  assert measures.precision_recall(x, x, k=3) == (1.0, 1.0)


def test_fd_matches_closed_form_and_grows_with_shift():
  x = _gauss(4000, d=4, seed=1)
  fds = [measures.frechet_distance(x, x + s) for s in (0.0, 0.5, 1.0, 2.0)]
  assert np.all(np.diff(fds) > 0)
  # A pure mean shift s in d=4 dims adds |mu1-mu2|^2 = 4 s^2 and nothing else.
  assert fds[3] == pytest.approx(4 * 2.0 ** 2, rel=1e-6)
  # Independent samples of the same Gaussian: small but not zero.
  assert measures.frechet_distance(x, _gauss(4000, d=4, seed=2)) < 0.05


def test_far_shift_loses_precision_and_recall():
  real = _gauss(300, seed=3)
  p, r = measures.precision_recall(real, _gauss(300, seed=4, shift=10.0), k=3)
  assert p == 0.0 and r == 0.0
  p, r = measures.precision_recall(real, _gauss(300, seed=5), k=3)
  assert p > 0.8 and r > 0.8


def test_collapsed_set_has_low_diversity_and_recall():
  real = _gauss(300, seed=6)
  collapsed = real[:3].repeat(100, axis=0) + 1e-3 * _gauss(300, seed=7)
  div = measures.diversity(real, collapsed)
  assert div['ratio'] < 0.7
  assert measures.diversity(real, _gauss(300, seed=8))['ratio'] == pytest.approx(1.0, abs=0.1)
  _, recall = measures.precision_recall(real, collapsed, k=3)
  assert recall < 0.2


def test_memorisation_copies_vs_fresh_samples():
  train, held = _gauss(400, seed=9), _gauss(200, seed=10)
  copies = measures.memorisation(train[:150] + 1e-6, train, held)
  assert copies['share'] == 1.0
  fresh = measures.memorisation(_gauss(2000, seed=11), train, held)
  assert fresh['chance'] == pytest.approx(400 / 600)
  assert abs(fresh['share'] - fresh['chance']) < 0.05


def _patches(rng, labels, mean):
  x = rng.normal(mean[labels][:, None, None, None], 0.3, size=(len(labels), 8, 8, 1))
  return np.clip(x, -1, 1).astype(np.float32)


def test_evaluate_and_write_section(tmp_path):
  rng = np.random.default_rng(0)
  mean = np.linspace(-0.8, 0.8, signs_lib.NUM_SIGNS)
  tl = np.repeat(np.arange(signs_lib.NUM_SIGNS), 12)
  hl = np.repeat(np.arange(signs_lib.NUM_SIGNS), 6)
  train, held = _patches(rng, tl, mean), _patches(rng, hl, mean)
  # Generated: GGO copies the training patches, the other signs are fresh samples.
  gl = np.repeat(np.arange(signs_lib.NUM_SIGNS), 30)
  gen = _patches(rng, gl, mean)
  gen[gl == 0] = np.resize(train[tl == 0], (30, 8, 8, 1))
  calls = []

  def features(x):
    calls.append(len(x))
    return x.reshape(len(x), -1)[:, :16]

  res = measures.evaluate(features, train, tl, held, hl, gen, gl, k=3, num_suspicious=4)
  assert max(calls) <= 256
  assert set(res['per_sign']) == set(signs_lib.SIGNS)
  assert res['per_sign']['GGO']['memorisation']['pixel_share'] == 1.0
  assert res['per_sign']['OP']['memorisation']['pixel_share'] < 0.95
  first = res['suspicious'][0]
  assert first['sign'] == 'GGO' and first['d_train'] == 0.0
  # Every sign's most suspicious patch, although 4 rows were asked for: 9 signs used to
  # give 8 rows and drop one without saying so.
  assert [row['sign'] for row in res['suspicious']][:1] == ['GGO']
  assert sorted(row['sign'] for row in res['suspicious']) == sorted(signs_lib.SIGNS)
  assert 'Caution' not in section.to_markdown(res)
  off_manifold = dict(res, overall=dict(res['overall'], precision=0.0))
  assert 'Caution' in section.to_markdown(off_manifold)
  paths = section.write_quality_section(str(tmp_path / 'report'), res)
  data = json.loads(open(paths['json']).read())
  assert data['per_sign']['GGO']['num_generated'] == 30
  assert 'images' not in json.dumps(data)
  md = open(paths['markdown']).read()
  assert md.startswith('## Quality of the generated patches')
  assert '| **overall** |' in md and '](memorisation.png)' in md
  assert os.path.getsize(paths['figure']) > 1000
  assert not [f for f in os.listdir(tmp_path / 'report') if '.tmp' in f]


def _classifier_config(width):
  import pathlib  # pylint: disable=g-import-not-at-top
  config = config_lib.load(pathlib.Path(__file__).resolve().parent.parent / 'configs'
                           / 'train_classifier.py', 'quick')
  config.width = width
  return config


def _saved_classifier(workdir, width=0.125):
  """A tiny Classifier saved the way the training stages save it."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from cisl_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from cisl_jax.models import classifier  # pylint: disable=g-import-not-at-top
  model = classifier.Classifier(10, width=width, rngs=nnx.Rngs(1))
  # Non-trivial BatchNorm statistics, so that eval mode is what gets checked.
  model.bn5.mean[...] = model.bn5.mean[...] + 0.5
  _, params, batch_stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  config = _classifier_config(width)
  wd.write_json(os.path.join(workdir, wd.CONFIG_FILE), json.loads(config.to_json_best_effort()))
  ckpt = checkpointing.Checkpoints(str(workdir), save_every=1)
  ckpt.maybe_save(3, {'step': np.int32(3), 'params': params, 'batch_stats': batch_stats},
                  force=True)
  ckpt.close()
  model.eval()
  return model


def test_classifier_features_and_stage(tmp_path, monkeypatch):
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  model = _saved_classifier(tmp_path / 'ten_scratch')
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, size=(5, 64, 64, 1)).astype(np.float32)
  fn = stage.classifier_features(str(tmp_path / 'ten_scratch'), batch_size=4)
  feats = fn(x)
  assert feats.shape == (5, 128)
  np.testing.assert_allclose(feats, np.asarray(model.features(x)), rtol=1e-4, atol=1e-5)

  # The whole stage on a tiny fold: 2 real patches per sign and fold, 6 generated.
  labels = np.repeat(np.arange(signs_lib.NUM_CLASSES), 2)
  folds = {f: {'image': rng.uniform(-1, 1, size=(len(labels), 64, 64, 1)).astype(np.float32),
               'label': labels} for f in range(3)}

  def fake_load_split(data_dir, source, fs):
    parts = [folds[f] for f in fs]
    return {k: np.concatenate([p[k] for p in parts]) for k in ('image', 'label')}

  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split)
  gl = np.repeat(np.arange(signs_lib.NUM_SIGNS), 6)
  gen = rng.uniform(-1, 1, size=(len(gl), 64, 64, 1)).astype(np.float32)
  gen[gl == 1] = np.resize(folds[1]['image'][folds[1]['label'] == 1], (6, 64, 64, 1))
  input_pipeline.write_generated(str(tmp_path / 'generate' / 'set'), gen, gl)
  config = {'data_dir': 'd', 'source': 'phantom', 'num_folds': 3, 'fold': 0, 'seed': 0,
            'generated_dir': str(tmp_path / 'generate'), 'max_generated': 4, 'k': 1,
            'features_from': str(tmp_path / 'ten_scratch'), 'c2st_steps': 5}
  metrics = stage.run_stage(config, str(tmp_path / 'quality'))
  assert metrics['per_sign']['lobulation']['num_generated'] == 4
  assert metrics['per_sign']['lobulation']['memorisation']['pixel_share'] == 1.0
  assert metrics['per_sign']['GGO']['num_train'] == 4
  assert (tmp_path / 'quality' / 'memorisation.png').is_file()
  assert 'ten_scratch' in (tmp_path / 'quality' / 'quality.md').read_text()
  assert 'Automated visual Turing test' in (tmp_path / 'quality' / 'quality.md').read_text()
  csv = (tmp_path / 'quality' / 'quality.csv').read_text().splitlines()
  assert csv[0].split(',')[-2:] == ['c2st', 'c2st_raw'] and csv[-1].startswith('0,overall,')
  assert csv[-1].endswith(',')  # no intensity match: no raw reading
  assert len(csv) == 1 + signs_lib.NUM_SIGNS + 1
  assert 0 <= metrics['c2st']['overall']['c2st'] <= 1
  # Finished: a second call reads metrics.json back.
  assert stage.run_stage(config, str(tmp_path / 'quality')) == json.loads(
      (tmp_path / 'quality' / 'metrics.json').read_text())

  # An intensity-matched set (configs/generate.py match_intensities): generated/ is what
  # is measured, the decoder's output in generated_raw/ beside it is scored as well.
  input_pipeline.write_generated(str(tmp_path / 'matched' / 'generated'), gen, gl)
  input_pipeline.write_generated(str(tmp_path / 'matched' / 'generated_raw'), -gen, gl)
  config['generated_dir'] = str(tmp_path / 'matched')
  metrics = stage.run_stage(config, str(tmp_path / 'quality_matched'))
  assert metrics['generated_dir'].endswith(os.path.join('matched', 'generated'))
  assert 0 <= metrics['c2st_raw']['overall']['c2st'] <= 1
  csv = (tmp_path / 'quality_matched' / 'quality.csv').read_text().splitlines()
  assert csv[-1].split(',')[-1] != ''
  assert 'C2ST before the match' in (tmp_path / 'quality_matched' / 'quality.md').read_text()


def test_signs_absent_from_a_set_are_skipped_with_the_reason(tmp_path):
  # Small data of one's own: spiculation only in training, lobulation nowhere real. The
  # stage used to crash ("cannot reshape array of size 0").
  rng = np.random.default_rng(0)
  mean = np.linspace(-0.8, 0.8, signs_lib.NUM_SIGNS)
  tl = np.array([0] * 12 + [4] * 6)
  hl = np.array([0] * 6)
  gl = np.repeat(np.arange(signs_lib.NUM_SIGNS), 10)  # the GAN generates every sign
  train, held, gen = (_patches(rng, l, mean) for l in (tl, hl, gl))
  res = measures.evaluate(lambda x: x.reshape(len(x), -1)[:, :16], train, tl, held, hl,
                         gen, gl, k=3, num_suspicious=2)
  assert set(res['per_sign']) == {'GGO'}
  assert res['skipped_signs']['spiculation'] == 'no real held-out patches'
  assert res['skipped_signs']['lobulation'] == 'no real training and no real held-out patches'
  assert '- spiculation: not measured: no real held-out patches in this fold.' in \
      section.to_markdown(res)
  # The figure shows every sign: the measured one's patches, a labelled row for each other.
  assert set(res['per_sign']) | set(res['skipped_signs']) == set(signs_lib.SIGNS)
  rows = section.plot_suspicious(res['suspicious'], str(tmp_path / 'm.png'),
                                 res['skipped_signs'])
  assert rows[:2] == ['GGO', 'GGO'] and len(rows) == 2 + signs_lib.NUM_SIGNS - 1
  assert 'spiculation: not measured (no real held-out patches)' in rows
  assert (tmp_path / 'm.png').stat().st_size > 1000
