"""Classifier stages on synthetic patches: one compilation, NaN guard, resume, init_from."""
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from cisl_jax import config_lib
from cisl_jax import input_pipeline
from cisl_jax import workdir as wd
from cisl_jax.train import classifier
from cisl_jax.train import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name, arg='quick'):
  return config_lib.load(ROOT / 'configs' / f'{name}.py', arg)


def fake_load_split(n_per_fold=20, nan=False):
  """A load_split stand-in: patches whose mean intensity encodes the class."""
  def load_split(data_dir, source, folds):
    del data_dir, source
    folds = [folds] if np.ndim(folds) == 0 else list(folds)
    parts = []
    for f in folds:
      rng = np.random.default_rng(f)
      labels = np.arange(n_per_fold) % 10
      images = (rng.normal(0, 0.1, (n_per_fold, 64, 64, 1))
                + (labels / 10 - 0.5)[:, None, None, None]).astype(np.float32)
      if nan:
        images[:] = np.nan
      slice_signs = np.zeros((n_per_fold, 9), np.int32)
      signed = labels < 9
      slice_signs[np.flatnonzero(signed), labels[signed]] = 1
      i = np.arange(n_per_fold)
      parts.append({'image': images, 'label': labels.astype(np.int64),
                    'slice_signs': slice_signs, 'fold': np.full(n_per_fold, f, np.int32),
                    'patient_id': np.array([f'P{f}{k % 5}' for k in i]),
                    'slice_path': np.array([f'/scans/P{f}{k % 5}/{k:03d}.dcm' for k in i]),
                    'sop_uid': np.array([f'1.2.840.{f}.{k}' for k in i]),
                    'box': np.stack([i, i, i + 8, i + 8], 1).astype(np.int32),
                    'kind': np.where(labels == 9, 'background', 'centred')})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return load_split


def tiny_config(**overrides):
  c = load_config('train_classifier')
  c.width = 0.125
  c.batch_size = 8
  c.num_steps = 4
  c.checkpoint_every = 2
  c.log_every = 2
  for k, v in overrides.items():
    c[k] = v
  return c


def read_checkpoint(workdir):
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as m:
    return m.restore(m.latest_step(), args=ocp.args.StandardRestore())


def test_train_step_compiles_once(monkeypatch):
  c = tiny_config()
  ik, _, tk = common.split_keys(0)
  graphdef, state, tx, pre = classifier.init_state(c, ik)
  step = classifier.make_train_step(tx, pre)
  rng = np.random.default_rng(0)
  before = common.TRACES['classifier_train']
  for _ in range(3):
    batch = {'image': rng.normal(size=(8, 64, 64, 1)).astype(np.float32),
             'label': rng.integers(0, 10, 8).astype(np.int32)}
    state, metrics = step(graphdef, state, batch, tk)
  assert common.TRACES['classifier_train'] - before == 1
  assert int(state['step']) == 3
  assert np.isfinite(float(metrics['loss']))


def test_graphdef_hashes_once_and_stays_a_graphdef():
  graphdef, state, _, _ = classifier.init_state(tiny_config(), common.split_keys(0)[0])
  plain = nnx.graphlib.GraphDef(graphdef.nodes, graphdef.attributes, graphdef.num_leaves)
  assert isinstance(graphdef, common.HashedGraphDef)
  assert hash(graphdef) == hash(plain) and graphdef == common.hashed(plain)
  model = common.merge_model(graphdef, state)  # nnx merges it as its own GraphDef
  assert isinstance(model, nnx.Module)


def test_nan_batch_stops_with_step_and_checkpoint():
  c = tiny_config()
  ik, _, tk = common.split_keys(0)
  graphdef, state, tx, pre = classifier.init_state(c, ik)
  step = classifier.make_train_step(tx, pre)
  batch = {'image': np.full((8, 64, 64, 1), np.nan, np.float32),
           'label': np.zeros(8, np.int32)}
  state, metrics = step(graphdef, state, batch, tk)
  with pytest.raises(common.NonFiniteError, match=r'step 7: non-finite .*loss.*ckpt/7'):
    common.check_finite(7, jax.device_get(metrics), 'ckpt/7')


def test_nan_data_stops_training(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split(nan=True))
  # Checked at the first log step: the message gives the steps where it arose.
  with pytest.raises(common.NonFiniteError,
                     match=r'step \d+ \(first seen; it arose in steps 0-\d+\).*'
                           'last good checkpoint: none'):
    classifier.train_and_evaluate(tiny_config(), str(tmp_path / 'nan'))
  assert not wd.is_done(str(tmp_path / 'nan'))


def test_resume_is_bit_identical_and_evaluates(tmp_path, monkeypatch, run_killed_after):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  full = str(tmp_path / 'full')
  result = classifier.train_and_evaluate(tiny_config(), full)
  assert result['num_test'] == 20 and len(result['confusion_matrix']) == 10
  preds = np.load(os.path.join(full, wd.PREDICTIONS_FILE))
  assert preds['probs'].shape == (20, 10)

  # A run stopped after 3 steps (checkpoint at 2), then started again.
  broken = str(tmp_path / 'broken')
  run_killed_after(3, lambda: classifier.train_and_evaluate(tiny_config(), broken))
  classifier.train_and_evaluate(tiny_config(), broken)
  a, b = read_checkpoint(full), read_checkpoint(broken)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  # A finished stage is not re-run.
  assert classifier.train_and_evaluate(tiny_config(), broken)['accuracy'] == \
      wd.read_metrics(broken)['accuracy']

  # evaluate restores the checkpoint and reproduces the stage's own test metrics.
  ev = load_config('evaluate')
  ev.classifier_workdir = full
  out = classifier.evaluate(ev, str(tmp_path / 'eval'))
  assert out['confusion_matrix'] == result['confusion_matrix']

  # init_from: same model loads; a different head needs init_from_fresh.
  ft = tiny_config(mode='finetune', init_from=full, num_steps=2)
  assert classifier.train_and_evaluate(ft, str(tmp_path / 'ft'))['steps'] == 2
  binary = tiny_config(mode='finetune', init_from=full, num_steps=2, task='binary', sign='CV')
  with pytest.raises(ValueError, match=r"(?s)fc6/kernel: shape .*init_from_fresh"):
    classifier.train_and_evaluate(binary, str(tmp_path / 'ft_bin'))
  binary.init_from_fresh = 'fc6'
  out = classifier.train_and_evaluate(binary, str(tmp_path / 'ft_bin'))
  assert out['class_names'] == ['non-CV', 'CV'] and out['num_test'] == 4


def test_predictions_trace_each_patch_to_its_scan(tmp_path, monkeypatch):
  # predictions.npz used to hold only labels, preds and probs.
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  c = tiny_config(task='binary', sign='CV', num_steps=2)
  classifier.train_and_evaluate(c, str(tmp_path / 'bin'))
  p = np.load(tmp_path / 'bin' / wd.PREDICTIONS_FILE)
  held_out = fake_load_split()('', '', 0)
  # A labelled row of training patches per class in TensorBoard (no images before).
  from cisl_jax.report import figures  # pylint: disable=g-import-not-at-top
  images = figures.read_images(tmp_path / 'bin')
  assert sorted(images) == ['train_patches/CV', 'train_patches/non-CV']
  assert images['train_patches/CV'].shape[0] == 64
  for key in ('patient_id', 'slice_path', 'sop_uid', 'box', 'kind'):
    assert len(p[key]) == len(p['labels']), key
  # Each row is the patch it scores: the CV patches (label 1) and non-CV backgrounds (0).
  assert set(p['kind'][p['labels'] == 0]) == {'background'}
  assert set(p['kind'][p['labels'] == 1]) == {'centred'}
  row = int(np.flatnonzero(p['labels'] == 1)[0])
  k = int(np.flatnonzero(held_out['sop_uid'] == p['sop_uid'][row])[0])
  assert held_out['label'][k] == 3 and p['slice_path'][row] == held_out['slice_path'][k]
  np.testing.assert_array_equal(p['box'][row], held_out['box'][k])


def test_augment_mode_epoch_is_pretrain_sized(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  c = tiny_config(mode='augment', pretrain_per_class=4, pretrain_epochs=1)
  c.num_steps = None
  assert classifier.schedule(c, 4 * 10) == (8, 5)
  out = classifier.train_and_evaluate(c, str(tmp_path / 'aug'))
  assert out['steps'] == 5 and out['mode'] == 'augment'


def test_evaluate_scores_the_fold_the_model_held_out(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  trained = str(tmp_path / 'fold1')
  result = classifier.train_and_evaluate(tiny_config(fold=1), trained)
  assert result['evaluated_on']['split'] == 'held-out'

  # By default: the trained run's own held-out fold (the config's fold 0 used to be
  # scored, training data of this model, and called held-out).
  ev = load_config('evaluate')
  ev.classifier_workdir = trained
  out = classifier.evaluate(ev, str(tmp_path / 'eval'))
  assert out['fold'] == 1 and out['evaluated_on']['split'] == 'held-out'
  assert out['confusion_matrix'] == result['confusion_matrix']
  assert 'held-out fold 1' in capsys.readouterr().out.strip().splitlines()[-1]

  # Training folds are refused by default, scored and labelled as such when asked.
  ev.fold = 0
  with pytest.raises(ValueError, match=r'training data of this model.*allow_training_data'):
    classifier.evaluate(ev, str(tmp_path / 'eval_train'))
  assert not os.path.exists(tmp_path / 'eval_train')
  ev.allow_training_data = True
  out = classifier.evaluate(ev, str(tmp_path / 'eval_train'))
  assert out['evaluated_on']['split'] == 'training'
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert 'TRAINING data' in last and 'held-out' not in last

  # Another source is other data, labelled with what it is.
  ev = load_config('evaluate')
  ev.classifier_workdir, ev.source = trained, 'manifest'
  out = classifier.evaluate(ev, str(tmp_path / 'eval_other'))
  assert out['evaluated_on']['split'] == 'other'
  assert "other data: fold 1 of source 'manifest'" in out['evaluated_on']['description']


def test_evaluate_names_the_wrong_kind_of_workdir(tmp_path):
  gan = tmp_path / 'fold0' / 'gan'
  gan.mkdir(parents=True)
  (gan / 'config.json').write_text('{"gan": {"kl_weight": 3.0}, "num_steps": 4}')
  ev = load_config('evaluate')
  ev.classifier_workdir = str(gan)
  with pytest.raises(ValueError, match=r'gan is a train_gan.py run .*, not a classifier '
                     r'run: --config.classifier_workdir must be the --workdir of a '
                     r'train_classifier.py run'):
    classifier.evaluate(ev, str(tmp_path / 'eval'))
  (tmp_path / 'status.json').write_text('{}')
  ten = tmp_path / 'fold0' / 'ten_finetune'
  ten.mkdir()
  (ten / 'config.json').write_text('{"mode": "finetune"}')
  ev.classifier_workdir = str(tmp_path)
  with pytest.raises(ValueError, match=r'reproduce.py run.*classifier runs inside it: '
                     r'.*fold0/ten_finetune'):
    classifier.evaluate(ev, str(tmp_path / 'eval'))
  assert not os.path.exists(tmp_path / 'eval')


def test_a_workdir_of_another_config_is_refused_by_name(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  workdir = str(tmp_path / 'w')
  classifier.train_and_evaluate(tiny_config(), workdir)
  # Finished: it used to say "already has metrics.json; not re-running" and return the
  # other config's result.
  with pytest.raises(ValueError, match=r'another config \(width: 0.125 in config.json, '
                     r'0.25 now\).*use a new --workdir'):
    classifier.train_and_evaluate(tiny_config(width=0.25), workdir)
  os.remove(os.path.join(workdir, wd.METRICS_FILE))  # unfinished: resumed otherwise
  with pytest.raises(ValueError, match=r'num_steps: 4 in config.json, 6 now'):
    classifier.train_and_evaluate(tiny_config(num_steps=6), workdir)
  # Logging and checkpoint cadence change no result: resuming with them is fine.
  assert classifier.train_and_evaluate(tiny_config(log_every=1), workdir)['steps'] == 4


_RESUME = '''
import sys
sys.path.insert(0, {tests!r})
from test_train_classifier import fake_load_split, tiny_config
from cisl_jax import input_pipeline
from cisl_jax.train import classifier
input_pipeline.load_split = fake_load_split()
classifier.train_and_evaluate(tiny_config(width=float(sys.argv[2])), sys.argv[1])
'''


def test_resume_into_another_model_ends_with_the_cause(tmp_path, monkeypatch):
  """The checkpoint's mismatch is the last line printed (it was line 217 of 231, under
  Orbax's 'Event loop is closed' tracebacks at exit)."""
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  workdir = tmp_path / 'w'
  classifier.train_and_evaluate(tiny_config(width=0.125), str(workdir))
  os.remove(workdir / 'metrics.json')
  os.remove(workdir / 'config.json')  # as a run older than the config check left it
  script = tmp_path / 'resume.py'
  script.write_text(_RESUME.format(tests=str(ROOT / 'tests')))
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, str(script), str(workdir), '0.25'], env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert "does not match this run's model" in last and 'use a new --workdir' in last
  assert 'Event loop is closed' not in proc.stderr and 'Exception ignored' not in proc.stderr


@pytest.mark.parametrize('field,value,match', [
    ('sign', 'GG0', r"config.sign: .*GG0.*Did you mean 'GGO'"),
    ('fold', 5, r'config.fold=5 is not in 0..2'),
    ('task', 'tenclass', r"config.task='tenclass'"),
])
def test_a_bad_flag_leaves_no_workdir(tmp_path, monkeypatch, field, value, match):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split())
  with pytest.raises(ValueError, match=match):
    classifier.train_and_evaluate(tiny_config(**{field: value}), str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()  # a config.json used to be left there


def test_a_sign_absent_from_the_held_out_fold_stops_before_training(tmp_path, monkeypatch):
  # Small data of one's own: it used to train, then fail with a plain ValueError.
  from cisl_jax import signs  # pylint: disable=g-import-not-at-top
  base = fake_load_split()

  def load_split(data_dir, source, folds):
    arrays = base(data_dir, source, folds)
    if np.ndim(folds) == 0:  # the held-out fold: no CV patch in it
      keep = arrays['label'] != 3
      arrays = {k: v[keep] for k, v in arrays.items()}
    return arrays

  monkeypatch.setattr(input_pipeline, 'load_split', load_split)
  with pytest.raises(signs.AbsentClass, match=r"held-out fold 0: no 'CV' patches"):
    classifier.train_and_evaluate(tiny_config(task='binary', sign='CV'), str(tmp_path / 'w'))
  assert not (tmp_path / 'w' / 'checkpoints').exists()
