"""Tests of the small-data curve: the share subset, its stages in plan(), what the
stages train on, and the report's figure (from faked stage results) or its absence."""
import json
import pathlib

import numpy as np
import pytest

from cisl_jax import config_lib
from cisl_jax import input_pipeline
from cisl_jax import reproduce
from cisl_jax import signs
from cisl_jax import workdir as wd
from cisl_jax.report import readme as report
from cisl_jax.report import small_data

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(variant='quick', shares=(), folds=(0,)):
  c = config_lib.load(REPO / 'configs' / 'reproduce.py', variant)
  with c.unlocked():
    c.folds, c.signs, c.small_data_shares, c.small_data_folds = (0, 1), ('GGO',), shares, folds
  return c


def test_share_subset_is_stratified_seeded_and_nested():
  # 3 patches of class 0, 40 of class 1, 1 of class 2, none of the others.
  labels = np.array([0] * 3 + [1] * 40 + [2])
  quarter = input_pipeline.share_indices(labels, 0.25, seed=5)
  half = input_pipeline.share_indices(labels, 0.5, seed=5)
  counts = lambda idx: np.bincount(labels[idx], minlength=3).tolist()
  assert counts(quarter) == [1, 10, 1]  # every class keeps one where it has any
  assert counts(half) == [2, 20, 1]
  assert set(quarter) <= set(half)  # nested: a smaller share is part of a larger one
  np.testing.assert_array_equal(quarter, np.sort(quarter))  # stored order kept
  np.testing.assert_array_equal(quarter, input_pipeline.share_indices(labels, 0.25, 5))
  assert set(input_pipeline.share_indices(labels, 0.25, 6)) != set(quarter)
  np.testing.assert_array_equal(input_pipeline.share_indices(labels, 1.0, 5),
                                np.arange(len(labels)))
  with pytest.raises(ValueError, match='train_share=0'):
    input_pipeline.share_indices(labels, 0.0, 5)


def test_plan_has_the_curve_stages_only_when_shares_are_set(tmp_path):
  plain = {s.name for s in reproduce.plan(load_config(), tmp_path)}
  assert not [n for n in plain if 'share' in n]  # quick: off by default
  stages = reproduce.plan(load_config(shares=(0.25, 0.5), folds=(0,)), tmp_path)
  extra = {s.name: s for s in stages if s.name not in plain}
  per_share = ['gan', 'generate', 'ten_scratch', 'ten_pretrain', 'ten_finetune',
               'ten_traditional']
  assert set(extra) == {f'fold0/share{p}_{n}' for p in (25, 50) for n in per_share}
  for name, s in extra.items():  # every training stage of a share trains on that share
    share = 0.25 if '/share25_' in name else 0.5
    assert s.config.fold == 0 and s.config.get('train_share', share) == share, name
    assert s.kind == 'generate' or s.config.train_share == share, name
  # One seed per fold: the same subset for every method of a share.
  assert len({s.config.seed for s in extra.values()}) == 1
  gen = extra['fold0/share25_generate']
  assert gen.config.gan_workdir.endswith('fold0/share25_gan') and gen.needs == (
      'fold0/share25_gan',)
  assert extra['fold0/share25_ten_pretrain'].config.generated_dir.endswith(
      'fold0/share25_generate')
  assert extra['fold0/share25_ten_finetune'].config.init_from.endswith(
      'fold0/share25_ten_pretrain')
  assert extra['fold0/share50_ten_traditional'].config.mode == 'augment'
  # The 100% point is the main run's stages, unchanged.
  assert {s.config.train_share for s in stages if s.name in plain
          and 'train_share' in s.config} == {1.0}
  for bad in ((1.0,), (0.25, 0.25), (-0.5,)):
    with pytest.raises(ValueError, match='small_data_shares'):
      reproduce.plan(load_config(shares=bad), tmp_path)
  paper = reproduce.plan(config_lib.load(REPO / 'configs' / 'reproduce.py', 'paper'), tmp_path)
  assert 'fold2/share50_ten_finetune' in {s.name for s in paper}


def fake_load_split(data_dir, source, folds):
  """60 patches per fold, labels 0-9 (6 each); the image encodes (fold, index)."""
  del data_dir, source
  folds = [folds] if np.ndim(folds) == 0 else list(folds)
  parts = []
  for f in folds:
    labels = np.arange(60) % 10
    images = np.zeros((60, 64, 64, 1), np.float32)
    images[:, 0, 0, 0] = f * 1000 + np.arange(60)
    slice_signs = np.zeros((60, 9), np.int32)
    slice_signs[np.flatnonzero(labels < 9), labels[labels < 9]] = 1
    parts.append({'image': images, 'label': labels.astype(np.int64),
                  'slice_signs': slice_signs})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class Captured(Exception):
  pass


def test_stages_of_a_share_see_only_that_share(tmp_path, monkeypatch):
  from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split)
  stages = {s.name: s for s in reproduce.plan(load_config(shares=(0.25,)), tmp_path)}
  real = fake_load_split('', '', [1, 2])  # fold 0 held out: folds 1 and 2 train
  real_ids = real['image'][:, 0, 0, 0].astype(int)
  want = input_pipeline.share_indices(real['label'], 0.25, stages['fold0/gan'].config.seed)
  seen = {}

  def fit(config, workdir, **kw):
    seen['images'], seen['labels'] = kw['images'], kw['labels']
    raise Captured

  monkeypatch.setattr(gan.loop, 'fit', fit)
  share_gan = stages['fold0/share25_gan']
  with pytest.raises(Captured):
    gan.train_and_evaluate(share_gan.config, str(share_gan.workdir))
  ids = np.sort(seen['images'][:, 0, 0, 0].astype(int))
  signs_wanted = want[real['label'][want] < signs.NUM_SIGNS]
  np.testing.assert_array_equal(ids, real_ids[signs_wanted])  # the share's sign patches only
  assert len(ids) == 9 * 3  # 12 per sign, a quarter each
  full_gan = stages['fold0/gan']
  with pytest.raises(Captured):
    gan.train_and_evaluate(full_gan.config, str(full_gan.workdir))
  assert len(seen['labels']) == 9 * 12
  # The classifiers of the share train on the same subset (backgrounds included).
  for name in ('fold0/share25_ten_scratch', 'fold0/share25_ten_traditional'):
    images, _, _ = classifier.training_data(stages[name].config, data_seed=0)
    np.testing.assert_array_equal(np.sort(images[:, 0, 0, 0].astype(int)), real_ids[want])


def test_a_stage_recorded_before_train_share_existed_is_reused(tmp_path):
  config = load_config().classifier
  recorded = wd.plain(config)
  del recorded['train_share']
  wd.write_json(tmp_path / 'config.json', recorded)
  (tmp_path / 'metrics.json').write_text('{}')
  assert not wd.config_changes(tmp_path, config)
  with config.unlocked():
    config.train_share = 0.5
  assert wd.config_changes(tmp_path, config) == [
      "train_share: '<absent>' in config.json, 0.5 now"]


def _write_preds(stage_dir, labels, preds):
  stage_dir.mkdir(parents=True, exist_ok=True)
  np.savez(stage_dir / 'predictions.npz', labels=labels, preds=preds)
  (stage_dir / 'metrics.json').write_text('{}')


def make_workdir(root, shares, folds=(0,), main_folds=(0, 1)):
  """Main-run 10-class stages on `main_folds`, the curve's on `folds`; the right share of
  predictions grows with the share and the method."""
  rng = np.random.default_rng(0)
  skill = {'scratch': 0.3, 'traditional': 0.4, 'finetune': 0.5}
  y = np.arange(200) % signs.NUM_CLASSES
  for k in main_folds:
    for p in list(shares if k in folds else []) + [1.0]:
      for m in small_data.METHODS:
        right = rng.random(y.shape) < skill[m] + 0.4 * p
        _write_preds(root / f'fold{k}' / small_data.stage(p, m), y,
                     np.where(right, y, (y + 1) % signs.NUM_CLASSES))
  (root / 'reproduce.json').write_text(json.dumps({
      'source': 'phantom', 'num_folds': 3, 'signs': ['GGO'], 'variant': 'test',
      'small_data_shares': list(shares), 'small_data_folds': list(folds)}))
  (root / 'status.json').write_text('{}')
  return root


def test_report_draws_the_curve_from_finished_stages(tmp_path):
  text = report.write_report(make_workdir(tmp_path, (0.25, 0.5))).read_text()
  section = text.split(small_data.TITLE, 1)[1].split('\n## ', 1)[0]
  assert (tmp_path / 'report' / small_data.FIGURE).is_file()
  assert f']({small_data.FIGURE})' in section
  # The 100% point over the curve's fold only (200 held-out patches), not the main run's two.
  assert 'Held-out fold(s) [0]' in section and 'over the 200 held-out patches' in section
  rows = [r for r in section.splitlines() if r.startswith('| ') and '%' in r.split('|')[1]]
  assert [r.split('|')[1].strip() for r in rows] == ['25%', '50%', '100%']
  ac = lambda row, col: float(row.split('|')[col].split()[0])
  assert ac(rows[0], 7) < ac(rows[2], 7)  # fine-tuned AC grows with the share here
  assert '- 25%: GAN pre-training + fine-tuning AC' in section


def test_report_says_how_to_get_the_curve_when_absent(tmp_path):
  text = report.write_report(make_workdir(tmp_path, ())).read_text()
  assert small_data.TITLE in text and f'`{small_data.HOW}`' in text
  assert not (tmp_path / 'report' / small_data.FIGURE).exists()
  # Shares asked for but their stages failed: the reason, no figure.
  root = make_workdir(tmp_path / 'failed', (0.25,), folds=())
  status = {'fold0/share25_gan': {'state': 'failed', 'error': 'ValueError: boom'}}
  (root / 'status.json').write_text(json.dumps(status))
  text = report.write_report(root).read_text()
  assert 'No point of the curve has finished' in text and 'fold0/share25_gan' in text
  assert not (root / 'report' / small_data.FIGURE).exists()
