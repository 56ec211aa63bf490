"""What a run shows on the terminal: progress lines with rate and ETA, results, warnings
and errors; library INFO logs only when asked for with --verbosity=0 (or higher).

- `quiet_libraries()` (launchers call it first thing in main): unless --verbosity is
  given, absl logging (ours and Orbax's, JAX's, TFDS's INFO lines) shows warnings and
  errors only. Importing this module first also keeps TensorFlow's C++ start-up INFO
  (oneDNN, CPU instruction sets) off the terminal unless TF_CPP_MIN_LOG_LEVEL or
  TF_ENABLE_ONEDNN_OPTS is set.
- `say(line)`: a result line (a written file, a stage finished). Inside `inner()` (a
  stage run by the reproduce orchestrator) it goes to the INFO log instead, so that the
  orchestrator's one line per stage is what the terminal shows.
- `status(line)`: a progress line. On a terminal it is rewritten in place; in a log file
  it is written at most once every `STATUS_EVERY_S` seconds.
"""
import contextlib
import os
import sys
import time
from typing import Iterator

from absl import logging

# TensorFlow reads these once, when it loads: they must be set before anything imports TF.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
# On CPUs where TF turns its oneDNN kernels on by default (AVX-512 VNNI / BF16 and newer),
# it prints "oneDNN custom operations are on" at import, before absl logging starts, so
# TF_CPP_MIN_LOG_LEVEL cannot hide it. TF only feeds tf.data here (JAX does the math), so
# its oneDNN kernels buy nothing; off, TF computes as on CPUs without them.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

STATUS_EVERY_S = 60.0
_state = {'inner': 0, 'last_status': 0.0, 'open_line': False}


def _verbosity_given() -> bool:
  from absl import flags  # pylint: disable=g-import-not-at-top
  return bool(flags.FLAGS.is_parsed() and flags.FLAGS['verbosity'].present)


def quiet_libraries() -> None:
  """Warnings and errors only from absl logging, and no TFDS progress bars (the
  launchers print their own progress), unless --verbosity was given."""
  if not _verbosity_given():
    logging.set_verbosity(logging.WARNING)
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()


def _verbose() -> bool:
  return logging.get_verbosity() >= logging.INFO


def _end_status_line() -> None:
  if _state['open_line']:
    sys.stdout.write('\n')
    _state['open_line'] = False


def say(line: str) -> None:
  """A result line on stdout (or the INFO log inside `inner()`)."""
  if _state['inner']:
    logging.info('%s', line)
    return
  _end_status_line()
  print(line, flush=True)


def status(line: str) -> None:
  """A progress line: in place on a terminal, at most once a minute in a log file."""
  logging.info('%s', line)
  if _verbose():
    return  # the INFO log already shows it
  if sys.stdout.isatty():
    sys.stdout.write('\r' + line[:200].ljust(80))
    sys.stdout.flush()
    _state['open_line'] = True
    return
  now = time.monotonic()
  if now - _state['last_status'] >= STATUS_EVERY_S:
    _state['last_status'] = now
    print(line, flush=True)


@contextlib.contextmanager
def inner() -> Iterator[None]:
  """Within: `say` lines go to the INFO log (a stage run inside the orchestrator)."""
  _state['inner'] += 1
  try:
    yield
  finally:
    _state['inner'] -= 1
