"""The files by which stages and the reproduce orchestrator talk: atomic writes and
`metrics.json`, whose presence marks a stage as finished.

No JAX or TensorFlow here, so the orchestrator and the report can use it without
loading model code.
"""
import json
import os
import tempfile
from typing import Any

from absl import logging
import numpy as np

METRICS_FILE = 'metrics.json'


def write_text(path: str | os.PathLike, text: str) -> str:
  """Writes `text` atomically (temp file in the same folder, then os.replace)."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-')
  with os.fdopen(fd, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)
  return path


def _jsonable(x: Any) -> Any:
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.floating):
    return float(x)
  if hasattr(x, '__array__'):  # numpy and JAX arrays
    return np.asarray(x).tolist()
  raise TypeError(f'not JSON serialisable: {type(x)}')


def write_json(path: str | os.PathLike, obj: Any) -> str:
  """Writes JSON atomically; numpy and JAX scalars and arrays become plain values."""
  return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable))


def is_done(workdir: str | os.PathLike) -> bool:
  """True when the stage in `workdir` has finished (its metrics.json exists)."""
  return os.path.isfile(os.path.join(workdir, METRICS_FILE))


def read_metrics(workdir: str | os.PathLike) -> dict[str, Any]:
  with open(os.path.join(workdir, METRICS_FILE)) as f:
    return json.load(f)


def finished(workdir: str | os.PathLike) -> dict[str, Any] | None:
  """The metrics of a finished stage (logged as not re-run), or None if it must run."""
  if not is_done(workdir):
    return None
  logging.info('%s already has %s; not re-running.', workdir, METRICS_FILE)
  return read_metrics(workdir)
