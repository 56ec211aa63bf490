"""cisl_jax/terminal.py: what reaches the terminal by default."""
from absl import logging

from cisl_jax import terminal


def test_results_and_progress_lines(capsys, monkeypatch):
  monkeypatch.setattr(terminal, '_state', {'inner': 0, 'last_status': 0.0,
                                           'open_line': False})
  saved = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)  # the launchers' default
  try:
    terminal.say('wrote metrics.json')
    with terminal.inner():
      terminal.say('a stage line the orchestrator keeps off the terminal')
    terminal.status('gan step 10/800  5.00 steps/s')
    terminal.status('gan step 20/800  5.00 steps/s')  # within a minute: not repeated
  finally:
    logging.set_verbosity(saved)
  out = capsys.readouterr().out.splitlines()
  assert out == ['wrote metrics.json', 'gan step 10/800  5.00 steps/s']


def test_verbose_progress_goes_to_the_log_only(capsys, monkeypatch):
  monkeypatch.setattr(terminal, '_state', {'inner': 0, 'last_status': 0.0,
                                           'open_line': False})
  saved = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  try:
    terminal.status('classifier/scratch step 20/80')
  finally:
    logging.set_verbosity(saved)
  assert capsys.readouterr().out == ''


def test_verbosity_flag_keeps_the_info_logs(monkeypatch):
  saved = logging.get_verbosity()
  try:
    logging.set_verbosity(logging.INFO)
    monkeypatch.setattr(terminal, '_verbosity_given', lambda: True)  # --verbosity=0 given
    terminal.quiet_libraries()
    assert logging.get_verbosity() == logging.INFO
    monkeypatch.setattr(terminal, '_verbosity_given', lambda: False)  # the default
    terminal.quiet_libraries()
    assert logging.get_verbosity() == logging.WARNING
  finally:
    logging.set_verbosity(saved)


def test_quiet_libraries_turns_tfds_progress_bars_off_unless_verbose(monkeypatch):
  from tensorflow_datasets.core.utils import tqdm_utils
  saved, saved_bar = logging.get_verbosity(), tqdm_utils._active
  try:
    tqdm_utils.display_progress_bar(True)
    monkeypatch.setattr(terminal, '_verbosity_given', lambda: True)
    terminal.quiet_libraries()
    assert tqdm_utils._active  # --verbosity given: the bars stay
    monkeypatch.setattr(terminal, '_verbosity_given', lambda: False)
    terminal.quiet_libraries()
    assert not tqdm_utils._active
  finally:
    logging.set_verbosity(saved)
    tqdm_utils.display_progress_bar(saved_bar)


def test_importing_tensorflow_after_terminal_prints_nothing():
  """TF's start-up lines (oneDNN on AVX-512 CPUs, instruction sets) stay off stderr."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = {k: v for k, v in os.environ.items()
         if k not in ('TF_CPP_MIN_LOG_LEVEL', 'TF_ENABLE_ONEDNN_OPTS')}
  proc = subprocess.run(
      [sys.executable, '-c', 'from cisl_jax import terminal; import tensorflow'],
      capture_output=True, text=True, env=env, check=True)
  assert proc.stdout == '' and proc.stderr == '', proc.stderr
