"""cisl_jax/workdir.py: stage names, the finished check and atomic writes."""
import json
import os

import numpy as np
import pytest

from cisl_jax import workdir as wd


def test_stage_names_and_paths(tmp_path):
  assert wd.ten_stage('scratch') == 'ten_scratch'
  assert wd.binary_stage('GGO', 'finetune') == 'binary_GGO_finetune'
  assert wd.sweep_stage(128, 'pretrain') == 'sweep_GGO_128_pretrain'
  assert wd.transfer_stage('vgg16') == 'ten_transfer_vgg16'
  assert wd.transfer_stage('vgg16', 'CV') == 'binary_CV_transfer_vgg16'
  assert wd.stage_key(2, 'gan') == 'fold2/gan'
  assert wd.stage_dir(tmp_path, 1, 'generate') == tmp_path / 'fold1' / 'generate'
  for name in ('fold0', 'fold10', 'foldx', 'fold1.bak'):
    (tmp_path / name).mkdir()
  (tmp_path / 'fold3').write_text('a file, not a fold')
  assert wd.fold_dirs(tmp_path) == {0: tmp_path / 'fold0', 10: tmp_path / 'fold10'}


def test_finished_only_after_metrics(tmp_path):
  stage = tmp_path / 'fold0' / 'gan'
  assert wd.finished(stage) is None and not wd.is_done(stage)
  wd.write_json(stage / wd.CONFIG_FILE, {'seed': 0})
  assert wd.finished(stage) is None  # config.json alone is not a finished stage
  wd.write_json(stage / wd.METRICS_FILE, {'accuracy': np.float32(0.5), 'n': np.int64(3),
                                          'probs': np.array([0.25, 0.75])})
  assert wd.finished(stage) == {'accuracy': 0.5, 'n': 3, 'probs': [0.25, 0.75]}
  assert wd.read_config(stage, 'hint') == {'seed': 0}
  with pytest.raises(FileNotFoundError, match=r'config.json not found: the hint'):
    wd.read_config(tmp_path, 'the hint')
  assert wd.read_json(tmp_path / 'absent.json') is None


def test_failed_writes_leave_the_old_file_and_no_temp(tmp_path):
  path = tmp_path / 'metrics.json'
  wd.write_text(path, 'old')
  with pytest.raises(TypeError):
    wd.write_json(path, {'x': object()})
  assert path.read_text() == 'old'
  with pytest.raises(TypeError):
    wd.write_text(path, None)
  assert path.read_text() == 'old'
  wd.save_npz(tmp_path / 'p.npz', labels=np.arange(3))
  with np.load(tmp_path / 'p.npz') as d:
    np.testing.assert_array_equal(d['labels'], np.arange(3))
  assert sorted(os.listdir(tmp_path)) == ['metrics.json', 'p.npz']


def test_atomic_dir_replaces_only_when_whole(tmp_path):
  final = tmp_path / 'generated'
  with wd.atomic_dir(final) as tmp:
    (final.parent / 'seen').write_text(str(os.path.exists(final)))
    with open(os.path.join(tmp, 'a.json'), 'w') as f:
      json.dump({'v': 1}, f)
  assert (tmp_path / 'seen').read_text() == 'False'
  assert json.loads((final / 'a.json').read_text()) == {'v': 1}
  with pytest.raises(RuntimeError, match='boom'):
    with wd.atomic_dir(final) as tmp:
      with open(os.path.join(tmp, 'b.json'), 'w') as f:
        f.write('half')
      raise RuntimeError('boom')
  assert sorted(os.listdir(final)) == ['a.json']  # the old folder, untouched
  with wd.atomic_dir(final) as tmp:
    with open(os.path.join(tmp, 'c.json'), 'w') as f:
      f.write('{}')
  assert sorted(os.listdir(final)) == ['c.json']
  assert sorted(os.listdir(tmp_path)) == ['generated', 'seen']  # no temp folders left


def test_a_field_added_later_matches_its_old_value_only(tmp_path):
  # A GAN recorded before mode seeking existed ran with it off: reusable at 0, not at 1.
  wd.write_json(tmp_path / wd.CONFIG_FILE, {'gan': {'improved': {'adv_weight': 10.0}}})
  wd.write_json(tmp_path / wd.METRICS_FILE, {'steps': 4})
  config = {'gan': {'improved': {'adv_weight': 10.0, 'mode_seeking_weight': 0.0}}}
  assert wd.config_changes(tmp_path, config) == []
  config['gan']['improved']['mode_seeking_weight'] = 1.0
  assert wd.config_changes(tmp_path, config) == [
      "gan.improved.mode_seeking_weight: '<absent>' in config.json, 1.0 now"]
  config['gan']['improved'].update(mode_seeking_weight=0.0, classifier_augment='')
  assert wd.config_changes(tmp_path, config) == []
  config['gan']['improved']['classifier_augment'] = 'color'
  assert wd.config_changes(tmp_path, config) == [
      "gan.improved.classifier_augment: '<absent>' in config.json, 'color' now"]
