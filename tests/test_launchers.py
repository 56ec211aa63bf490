"""The stage launchers as a user runs them: flags, clear errors, finished stages skipped."""
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
INFO_LINE = re.compile(r'^I\d{4} ', re.M)  # absl's INFO line prefix, e.g. 'I1201 09:14:11'


def run(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def test_missing_dataset_names_the_fix(tmp_path):
  proc = run('launch/train_classifier.py', '--config=configs/train_classifier.py:quick',
             f'--workdir={tmp_path / "w"}', f'--config.data_dir={tmp_path / "none"}',
             '--config.mode=scratch')
  assert proc.returncode != 0
  assert 'launch/make_dataset.py' in proc.stderr


def test_finished_stage_is_not_rerun(tmp_path):
  workdir = tmp_path / 'gan'
  workdir.mkdir()
  (workdir / 'metrics.json').write_text(json.dumps({'stage': 'gan'}))
  proc = run('launch/train_gan.py', '--config=configs/train_gan.py:quick',
             f'--workdir={workdir}', f'--config.data_dir={tmp_path / "none"}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'not re-running' in proc.stdout
  # Quiet by default: no INFO lines (ours, Orbax's, JAX's); tests/test_terminal.py
  # checks that --verbosity keeps them.
  assert not INFO_LINE.search(proc.stdout + proc.stderr), proc.stderr[-2000:]


def test_bad_override_and_missing_workdir_are_errors(tmp_path):
  proc = run('launch/evaluate.py', '--config=configs/evaluate.py:quick',
             f'--workdir={tmp_path}', '--config.no_such_field=1')
  assert proc.returncode != 0 and 'no_such_field' in proc.stderr
  proc = run('launch/generate.py', '--config=configs/generate.py:quick')
  assert proc.returncode != 0 and 'workdir' in proc.stderr
