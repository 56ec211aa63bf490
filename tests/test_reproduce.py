"""Tests of the reproduce orchestrator: resume after a failure, report, and a tiny real run."""
import collections
import json
import pathlib

import numpy as np
import pytest

from cisl_jax import config_lib
from cisl_jax import reproduce


REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(variant='quick'):
  """configs/reproduce.py:<variant>, loaded by path as config_flags does."""
  return config_lib.load(REPO / 'configs' / 'reproduce.py', variant)


def fake_config(folds=(0, 1), signs=('GGO', 'CV')):
  """The quick config cut down to `folds` and `signs`, sweep on fold 0."""
  c = load_config()
  with c.unlocked():
    c.folds, c.signs, c.sweep_folds = folds, signs, (0,)
    c.sweep_sizes = (64, c.generated_per_sign)
    c.quality.enabled = False
  return c


class FakeRunners(reproduce.Runners):
  """Writes what each stage would; counts calls; raises once for the stages in `fail`."""

  def __init__(self, fail=()):
    self.calls = collections.Counter()
    self.fail = set(fail)

  def check_data(self, config):
    del config  # no dataset: the stages are stood in for

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
  # Per fold: 4 ten-class + 36 binary (scratch, pretrain, finetune, traditional per
  # sign) = 40 classifiers; the sweep adds 2 on fold 0.
  assert kinds['gan'] == 3 and kinds['generate'] == 3
  methods = ('scratch', 'pretrain', 'finetune', 'traditional')
  assert sum(kinds[f'ten_{k}'] for k in methods) == 4 * 3
  assert sum(kinds[f'binary_{k}'] for k in methods) == 36 * 3 + 2
  scratch = next(s for s in stages if s.name == 'fold1/binary_OP_scratch')
  assert (scratch.config.mode, scratch.config.task, scratch.config.sign) == (
      'scratch', 'binary', 'OP')
  assert not scratch.needs  # Table I's baseline needs no GAN
  fine = next(s for s in stages if s.name == 'fold2/binary_PI_finetune')
  assert (fine.config.fold, fine.config.sign, fine.config.task) == (2, 'PI', 'binary')
  assert fine.config.init_from.endswith('fold2/binary_PI_pretrain')
  assert fine.needs == ('fold2/binary_PI_pretrain',)
  # Transfer stages appear only when weights are configured.
  assert not [n for n in names if 'transfer' in n]
  with config.unlocked():
    config.transfer.weights = '/weights'
  transfer = [s for s in reproduce.plan(config, tmp_path) if s.kind.endswith('_transfer')]
  assert len(transfer) == 3 * 3 * (9 + 1)
  assert {s.config.transfer.arch for s in transfer} == {'alexnet', 'vgg16', 'resnet101'}
  assert all(s.config.transfer.weights == '/weights' for s in transfer)


def test_paper_config_has_the_paper_sizes(tmp_path):
  config = load_config('paper')
  stages = {s.name: s for s in reproduce.plan(config, tmp_path)}
  assert stages['fold0/generate'].config.num_per_sign >= 18_000
  assert stages['fold1/binary_AB_pretrain'].config.pretrain_per_class == 18_000
  assert stages['fold1/ten_pretrain'].config.pretrain_per_class == 16_000
  assert stages['fold1/ten_traditional'].config.pretrain_per_class == 16_000
  assert stages['fold2/ten_finetune'].config.finetune_learning_rate == 1e-3
  assert stages['fold2/ten_finetune'].config.width == 1.0


def fake_load_split(data_dir, source, folds):
  """Synthetic patches for every fold: mean intensity encodes the class."""
  del data_dir, source
  folds = [folds] if np.ndim(folds) == 0 else list(folds)
  parts = []
  for f in folds:
    rng = np.random.default_rng(f)
    labels = np.arange(30) % 10
    images = np.tanh(rng.normal(0, 0.1, (30, 64, 64, 1))
                     + (labels / 5 - 1)[:, None, None, None]).astype(np.float32)
    slice_signs = np.zeros((30, 9), np.int32)
    slice_signs[np.flatnonzero(labels < 9), labels[labels < 9]] = 1
    parts.append({'image': images, 'label': labels.astype(np.int64),
                  'slice_signs': slice_signs, 'fold': np.full(30, f, np.int32),
                  'patient_id': np.array([f'p{f}_{i % 5}' for i in range(30)])})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class Killed(BaseException):
  """Stands for a kill: not an Exception, so the orchestrator does not catch it."""


class KillOnce(reproduce.Runners):
  """The real classifier stages; counts calls; the first call of `kill_at` is killed.

  The GAN and generation are stood in for (tests/test_train_gan.py covers them): a GAN
  compile alone takes about a minute on 2 loaded cores. The stand-in writes the generated
  set in the contract's format (input_pipeline.write_generated) and a Fig. 3 PNG.
  """

  def __init__(self, kill_at=None):
    self.calls = collections.Counter()
    self.kill_at = kill_at

  def check_data(self, config):
    del config  # load_split is stood in for

  def _count(self, workdir):
    name = f'{pathlib.Path(workdir).parent.name}/{pathlib.Path(workdir).name}'
    self.calls[name] += 1
    if name == self.kill_at:
      self.kill_at = None
      raise Killed(name)

  def gan(self, config, workdir):
    self._count(workdir)
    pathlib.Path(workdir).mkdir(parents=True)
    (pathlib.Path(workdir) / 'metrics.json').write_text('{}')

  def generate(self, config, workdir):
    from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    self._count(workdir)
    workdir = pathlib.Path(workdir)
    labels = np.arange(9 * config.num_per_sign) % 9
    images = fake_load_split('', '', 0)['image'][labels]
    input_pipeline.write_generated(str(workdir / 'generated'), images, labels)
    plt.imsave(workdir / 'fig3_real_vs_generated.png', images[:9, :, :, 0].reshape(-1, 64))
    (workdir / 'metrics.json').write_text('{}')

  def classifier(self, config, workdir):
    self._count(workdir)
    return super().classifier(config, workdir)


def tiny_config():
  """One held-out fold, one sign, a couple of steps, tiny networks."""
  c = fake_config(folds=(0,), signs=('GGO',))
  with c.unlocked():
    c.generated_per_sign = c.generated_per_class = 16
    c.sweep_sizes = (8, 16)
    c.classifier.width, c.classifier.batch_size, c.classifier.log_every = 0.125, 8, 1
    for m in ('scratch', 'pretrain', 'finetune', 'traditional'):
      c.methods[m].num_steps = 2
      c.methods[m].learning_rate = 1e-3  # one optimiser: fewer compilations
    c.ten_steps_factor = 1.0
  return c


def test_tiny_run_killed_then_resumed(tmp_path, monkeypatch):
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split)
  config = tiny_config()
  first = KillOnce(kill_at='fold0/binary_GGO_pretrain')
  with pytest.raises(Killed):
    reproduce.run(config, tmp_path, first)
  finished = {p.parent.name: p.stat().st_mtime_ns for p in tmp_path.glob('fold0/*/metrics.json')}
  assert {'gan', 'generate', 'ten_scratch', 'ten_pretrain', 'ten_finetune',
          'ten_traditional'} <= set(finished)
  assert 'binary_GGO_pretrain' not in finished

  second = KillOnce()
  readme, not_ok = reproduce.run(config, tmp_path, second)
  assert not not_ok
  # Nothing finished before the kill ran again; everything else ran exactly once.
  assert not set(second.calls) & set(f'fold0/{n}' for n in finished)
  assert set(second.calls.values()) == {1}
  assert {p.parent.name: p.stat().st_mtime_ns
          for p in tmp_path.glob('fold0/*/metrics.json') if p.parent.name in finished} == finished
  text = readme.read_text()
  assert text.splitlines()[0].startswith('# Results on SYNTHETIC PHANTOM data')
  assert '## Table I' in text and '## Table II' in text
  for png in ('fig3_real_vs_generated_fold0.png', 'confusion_ten_class.png',
              'confusion_binary.png', 'fig4_pretraining_size.png', 'training_curves.png'):
    assert (readme.parent / png).is_file() and f']({png})' in text, png


def test_missing_dataset_stops_once_before_any_stage(tmp_path):
  """It used to try all stages, each failing alike, then write an empty phantom report."""
  config = fake_config()
  with config.unlocked():
    config.data_dir = str(tmp_path / 'no_data')
  counting = FakeRunners()
  counting.check_data = reproduce.Runners().check_data  # the real check, fake stages
  with pytest.raises(FileNotFoundError, match=r'no built dataset, so no stage can run.*'
                     r'launch/make_dataset.py --source=phantom'):
    reproduce.run(config, tmp_path / 'run', counting)
  assert not counting.calls and not (tmp_path / 'run').exists()


def test_finished_stages_of_another_config_are_refused_by_name(tmp_path):
  config = fake_config()
  stage = tmp_path / 'fold0' / 'ten_scratch'
  stage.mkdir(parents=True)
  (stage / 'metrics.json').write_text('{}')
  recorded = reproduce.plan(config, tmp_path)[2].config
  with recorded.unlocked():
    recorded.num_steps = 7
  from cisl_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.write_json(stage / 'config.json', workdir_lib.plain(recorded))
  runners = FakeRunners()
  with pytest.raises(ValueError, match=r'(?s)fold0/ten_scratch: num_steps: 7 in config.json, '
                     r'160 now.*use a new --workdir'):
    reproduce.run(config, tmp_path, runners)
  assert not runners.calls and not (tmp_path / 'report').exists()


class AbsentRunners(FakeRunners):
  """FakeRunners on data of one's own: no lobulation in the held-out 10-class sets, binary
  scratch models that always answer 'no sign', and a stage that finds its class absent."""

  def __init__(self, absent=()):
    super().__init__()
    self.absent = set(absent)

  def classifier(self, config, workdir):
    key = f'{pathlib.Path(workdir).parent.name}/{pathlib.Path(workdir).name}'
    if key in self.absent:
      from cisl_jax import signs  # pylint: disable=g-import-not-at-top
      raise signs.AbsentClass('held-out fold 0: no background patches from slices '
                              "without 'GGO' in these folds")
    if config.task == 'ten':
      labels = np.where(np.arange(40) % 10 == 1, 9, np.arange(40) % 10)
      return self._done(workdir, labels=labels, preds=labels)
    labels = np.arange(40) % 2
    preds = np.zeros(40, int) if config.mode == 'scratch' else labels
    return self._done(workdir, labels=labels, preds=preds)


def test_absent_classes_are_skipped_with_the_reason_not_failed(tmp_path, capsys):
  # A small dataset of one's own: CV only in fold 1. Its binary stages used to show as
  # failed (ValueError), the report as 'Failed stages' with an empty Binary bullet.
  config = fake_config()
  with config.unlocked():
    config.data_dir = str(tmp_path / 'data')
  card = {'folds': {f'fold{k}': {'per_class': {'GGO': 5, 'CV': 5 if k == 1 else 0,
                                               'normal': 20}} for k in range(3)}}
  from cisl_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.write_json(tmp_path / 'data' / 'cisl_patches' / 'phantom' / '1.0.0' /
                         'dataset_card.json', card)
  runners = AbsentRunners(absent={'fold1/binary_GGO_pretrain'})
  readme, not_ok = reproduce.run(config, tmp_path / 'run', runners)
  assert not not_ok  # nothing failed: the data cannot feed those stages
  status = json.loads((tmp_path / 'run' / 'status.json').read_text())
  held = 'no CV patches in the held-out fold 0 (dataset card)'
  train = 'no CV patches in the training folds [0, 2] (dataset card)'
  for m in ('scratch', 'pretrain', 'finetune', 'traditional'):
    assert status[f'fold0/binary_CV_{m}']['state'] == 'skipped'
    assert status[f'fold0/binary_CV_{m}']['cause'] == held
    assert status[f'fold1/binary_CV_{m}']['cause'] == train
    assert f'fold0/binary_CV_{m}' not in runners.calls
  # Found by the stage itself: skipped, and the stage that needs it too, with the cause.
  assert status['fold1/binary_GGO_pretrain']['state'] == 'skipped'
  assert status['fold1/binary_GGO_finetune']['reason'].startswith(
      'needs fold1/binary_GGO_pretrain, skipped: held-out fold 0: no background')
  out = capsys.readouterr()
  assert f'fold0/binary_CV_scratch: skipped: {held}' in out.out + out.err
  text = readme.read_text()
  assert '## Failed stages' not in text
  assert '## Not measured on this data' in text and f'- {held}: `fold0/binary_CV_' in text
  assert f'- CV: not measured: {held}; {train}.' in text
  # A class absent from every held-out fold has no Table II row (not AC 1.000).
  assert '| lobulation | – (–) | – (' in text
  assert '- lobulation: no held-out patches in folds [0, 1]: not measured' in text
  assert '- CV: no training patches when fold 1 is held out (dataset card)' in text
  # Always answering 'no sign' is chance on a balanced set: flagged.
  assert '- **Scratch: not distinguishable from chance (0.50)** by the 95% interval: GGO ' \
      '0.500' in text


def test_eta_waits_for_a_classifier_stage_before_estimating_classifier_stages():
  stage = lambda kind: reproduce.Stage(name=f'fold0/{kind}', kind=kind, runner='', config=None,
                                       workdir=None)
  todo = [stage('generate'), stage('scratch'), stage('finetune')]
  after_gan = {'fold0/gan': {'state': 'done', 'kind': 'gan', 'seconds': 300.0}}
  # The GAN's minutes say nothing of a classifier stage's seconds.
  assert reproduce._eta(todo, after_gan) is None
  status = {**after_gan,
            'fold0/generate': {'state': 'done', 'kind': 'generate', 'seconds': 10.0},
            'fold0/pretrain': {'state': 'done', 'kind': 'pretrain', 'seconds': 4.0}}
  # generate as measured; scratch and finetune at the measured classifier mean.
  assert reproduce._eta(todo, status) == pytest.approx(10.0 + 4.0 + 4.0)


def test_eta_costs_a_binary_stage_by_the_binary_stages():
  stage = lambda kind: reproduce.Stage(name=f'fold0/{kind}', kind=kind, runner='', config=None,
                                       workdir=None)
  done = lambda name, kind, seconds: (name, {'state': 'done', 'kind': kind, 'seconds': seconds})
  status = dict([done('fold0/ten_scratch', 'ten_scratch', 30.0),
                 done('fold0/ten_pretrain', 'ten_pretrain', 6.0),
                 done('fold0/binary_GGO_scratch', 'binary_scratch', 2.0)])
  # binary_pretrain, not measured yet: the binary stages' mean (2), not the 10-class ones'.
  assert reproduce._eta([stage('binary_pretrain')], status) == pytest.approx(2.0)
  assert reproduce._eta([stage('ten_finetune')], status) == pytest.approx(18.0)
  # Another kind not measured yet (the quality stage): every classifier stage's mean, as
  # before the kinds named their task (a None here hid the ETA for a whole fold).
  assert reproduce._eta([stage('quality')], status) == pytest.approx(38.0 / 3)


def test_eta_leaves_out_each_kinds_first_compiling_run():
  stage = lambda kind: reproduce.Stage(name=f'fold1/{kind}', kind=kind, runner='', config=None,
                                       workdir=None)
  done = lambda name, kind, seconds: (name, {'state': 'done', 'kind': kind, 'seconds': seconds})
  status = dict([done('fold0/gan', 'gan', 200.0), done('fold0/scratch_GGO', 'scratch', 40.0),
                 done('fold0/scratch_CV', 'scratch', 6.0),
                 done('fold0/scratch_AB', 'scratch', 8.0),
                 done('fold0/pretrain_GGO', 'pretrain', 30.0)])
  # scratch: the warm runs (6, 8) without the first, compiling one (40); pretrain has one
  # run, which is its estimate; finetune, unmeasured, the warm classifier mean (6, 8, 30).
  todo = [stage('scratch'), stage('pretrain'), stage('finetune'), stage('gan')]
  assert reproduce._eta(todo, status) == pytest.approx(7.0 + 30.0 + 44.0 / 3 + 200.0)
