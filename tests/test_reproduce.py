"""Tests of the reproduce orchestrator: resume after a failure, report, and a tiny real run."""
import collections
import json
import pathlib

import ml_collections
import numpy as np
import pytest

from cisl_jax import reproduce


def _stage_config(**extra):
  c = ml_collections.ConfigDict(dict(
      data_dir='', source='phantom', num_folds=3, fold=0, seed=0, **extra))
  c.lock()
  return c


def fake_config(folds=(0, 1), signs=('GGO', 'CV')):
  """A reproduce config whose stage configs hold just the fields the plan sets."""
  c = ml_collections.ConfigDict()
  c.variant = 'test'
  c.data_dir, c.source, c.num_folds, c.folds, c.seed = '', 'phantom', 3, folds, 0
  c.signs, c.run_ten = signs, True
  c.generated_per_sign, c.generated_per_class = 16, 16
  c.sweep_sizes, c.sweep_folds = (8, 16), (0,)
  c.gan = _stage_config()
  c.generate = _stage_config(gan_workdir='', num_per_class=0)
  c.classifier = _stage_config(task='ten', sign='GGO', mode='scratch', num_steps=1,
                               learning_rate=1e-3, generated_dir='', num_generated=0,
                               init_from='', num_augmented=0)
  c.methods = ml_collections.ConfigDict({m: {'num_steps': 1, 'learning_rate': 1e-3} for m in (
      'scratch', 'pretrain', 'finetune', 'traditional', 'transfer')})
  c.transfer = ml_collections.ConfigDict({'archs': ('vgg16',), 'weights': ''})
  c.quality = ml_collections.ConfigDict({'enabled': False, 'max_generated': 10})
  return c


class FakeRunners(reproduce.Runners):
  """Writes what each stage would; counts calls; raises once for the stages in `fail`."""

  def __init__(self, fail=()):
    self.calls = collections.Counter()
    self.fail = set(fail)

  def _done(self, workdir, **arrays):
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self.calls[f'{workdir.parent.name}/{workdir.name}'] += 1
    if f'{workdir.parent.name}/{workdir.name}' in self.fail:
      self.fail.discard(f'{workdir.parent.name}/{workdir.name}')
      raise ValueError('injected failure')
    if arrays:
      np.savez(workdir / 'predictions.npz', **arrays)
    (workdir / 'metrics.json').write_text('{}')

  def gan(self, config, workdir):
    self._done(workdir)

  def generate(self, config, workdir):
    self._done(workdir)

  def classifier(self, config, workdir):
    if config.mode == 'finetune':
      assert pathlib.Path(config.init_from, 'metrics.json').exists()
    k = 10 if config.task == 'ten' else 2
    labels = np.arange(40) % k
    self._done(workdir, labels=labels, preds=np.where(np.arange(40) % 3, labels, 0))


def test_failure_is_recorded_then_resume_runs_only_the_rest(tmp_path):
  config = fake_config()
  first = FakeRunners(fail={'fold0/ten_pretrain'})
  readme, not_ok = reproduce.run(config, tmp_path, first)
  # The failed stage and the one that needs it did not finish; everything else did.
  assert not_ok == ['fold0/ten_pretrain', 'fold0/ten_finetune']
  status = json.loads((tmp_path / 'status.json').read_text())
  assert status['fold0/ten_pretrain']['state'] == 'failed'
  assert 'injected failure' in status['fold0/ten_pretrain']['error']
  assert status['fold0/ten_finetune']['state'] == 'blocked'
  assert status['fold1/ten_finetune']['state'] == 'done'
  text = readme.read_text()
  assert 'fold0/ten_pretrain' in text and '## Table II' in text
  num_stages = len(reproduce.plan(config, tmp_path))
  assert sum(first.calls.values()) == num_stages - 1
  mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob('fold*/*/metrics.json')}

  second = FakeRunners()
  _, not_ok = reproduce.run(config, tmp_path, second)
  assert not not_ok
  assert set(second.calls) == {'fold0/ten_pretrain', 'fold0/ten_finetune'}
  assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
  status = json.loads((tmp_path / 'status.json').read_text())
  assert all(v['state'] == 'done' for v in status.values())


def test_plan_covers_the_protocol(tmp_path):
  config = fake_config(folds=(0, 1, 2), signs=('GGO', 'lobulation', 'calcification', 'CV',
                                               'spiculation', 'PI', 'BMP', 'AB', 'OP'))
  stages = reproduce.plan(config, tmp_path)
  names = [s.name for s in stages]
  assert len(names) == len(set(names))
  kinds = collections.Counter(s.kind for s in stages)
  # Per fold: 4 ten-class + 27 binary = 31 classifiers; the sweep adds 2 on fold 0.
  assert kinds['gan'] == 3 and kinds['generate'] == 3
  assert sum(kinds[k] for k in ('scratch', 'pretrain', 'finetune', 'traditional')) == 93 + 2
  fine = next(s for s in stages if s.name == 'fold2/binary_PI_finetune')
  assert (fine.config.fold, fine.config.sign, fine.config.task) == (2, 'PI', 'binary')
  assert fine.config.init_from.endswith('fold2/binary_PI_pretrain')
  assert fine.needs == ('fold2/binary_PI_pretrain',)
  # Transfer stages appear only when weights are configured.
  assert not [n for n in names if 'transfer' in n]
  config.transfer.weights = '/weights'
  with pytest.raises(KeyError, match='transfer'):
    reproduce.plan(config, tmp_path)  # the stage config has no transfer block
