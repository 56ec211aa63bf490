"""The run layout: stage paths, file names, the finished-stage check, atomic writes.

A reproduce run's workdir is `<workdir>/fold<k>/<stage>/` per stage, plus
`<workdir>/report/`, `status.json` and `reproduce.json`. A stage folder holds
`checkpoints/`, TensorBoard events, `config.json` (the config it ran with) and, last,
`metrics.json`, whose presence marks the stage as finished. A folder recorded with
another config is refused, naming the fields that differ (`check_config`). Every reader and writer of
these names goes through this module, and every file or folder that a later step reads
is written atomically (a temporary name beside it, then `os.replace`), so a kill never
leaves a half-written result that looks whole.

No JAX or TensorFlow here, so the orchestrator and the report use it without loading
model code.
"""
import contextlib
import json
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np

from cisl_jax import terminal

PathLike = str | os.PathLike

# Fields that change how a run logs or is spread over hosts, never its results: a
# workdir may be resumed with them changed.
# The generate stage's extra per-sign exports are copies of the set, not results either.
IGNORED_FIELDS = frozenset({'log_every', 'checkpoint_every', 'keep_checkpoints',
                            'coordinator_address', 'num_processes', 'process_id',
                            'export_png', 'export_npy', 'export_grid_size'})
_MAX_SHOWN = 8
# Fields added after runs were recorded, with the value those runs had: a config.json
# without the field matches a config that holds this value (finished stages stay reusable).
ADDED_FIELDS = {'train_share': 1.0, 'mode_seeking_weight': 0.0, 'classifier_augment': '',
                'intensity_weight': 0.0, 'color_strength': 1.0, 'match_intensities': False,
                'real_symmetry': '', 'decoder_width': 0.0,
                'discriminator_projection': False}

# Files of a stage folder.
METRICS_FILE = 'metrics.json'  # written last: the stage is finished
CONFIG_FILE = 'config.json'  # the config the stage ran with
PREDICTIONS_FILE = 'predictions.npz'  # classifier stages: labels, preds, probs, trace
CHECKPOINTS_DIR = 'checkpoints'  # Orbax checkpoints
GENERATED_DIR = 'generated'  # generate stage: the generated patch set
# generate stage, with match_intensities: the decoder's output before the match
GENERATED_RAW_DIR = 'generated_raw'
FIG3_FILE = 'fig3_real_vs_generated.png'  # generate stage: the paper's Fig. 3 grid
EXPORT_DIR = 'export'  # generate stage: <sign>.npy and <sign>.png per sign, when asked
QUALITY_JSON = 'quality.json'  # quality stage: every measure
QUALITY_MD = 'quality.md'  # quality stage: the report section
MEMORISATION_PNG = 'memorisation.png'  # quality stage: the most suspicious patches
QUALITY_CSV = 'quality.csv'  # quality stage (and report): one row per fold and sign

# Files and folders of a reproduce run's workdir.
STATUS_FILE = 'status.json'  # stage states, errors and times
SETTINGS_FILE = 'reproduce.json'  # the run's settings, for the report
REPORT_DIR = 'report'

# Stage folder names under fold<k>/.
GAN = 'gan'
GENERATE = 'generate'
QUALITY = 'quality'
FOLD_RE = re.compile(r'^fold(\d+)$')


def ten_stage(method: str) -> str:
  """A 10-class classifier stage: 'ten_scratch', 'ten_pretrain', ..."""
  return f'ten_{method}'


def binary_stage(sign: str, method: str) -> str:
  """A binary classifier stage of one sign: 'binary_GGO_finetune', ..."""
  return f'binary_{sign}_{method}'


def sweep_stage(size: int, method: str, sign: str = 'GGO') -> str:
  """A Fig. 4 sweep stage: 'sweep_GGO_128_pretrain', ..."""
  return f'sweep_{sign}_{size}_{method}'


def share_name(share: float) -> str:
  """'share25' for 0.25, 'share12.5' for 0.125: a share of the training patches, in %."""
  return f'share{round(100 * share, 6):g}'


def share_stage(share: float, stage: str) -> str:
  """A small-data stage trained on a share of the real patches: 'share25_gan',
  'share25_ten_finetune', ..."""
  return f'{share_name(share)}_{stage}'


def transfer_stage(arch: str, sign: str | None = None) -> str:
  """An ImageNet transfer stage: 'ten_transfer_vgg16' or 'binary_GGO_transfer_vgg16'."""
  return ten_stage(f'transfer_{arch}') if sign is None else binary_stage(
      sign, f'transfer_{arch}')


def fold_name(fold: int) -> str:
  return f'fold{fold}'


def stage_key(fold: int, stage: str) -> str:
  """'fold<k>/<stage>': a stage's name in status.json and in the log."""
  return f'{fold_name(fold)}/{stage}'


def fold_dir(workdir: PathLike, fold: int) -> pathlib.Path:
  return pathlib.Path(workdir) / fold_name(fold)


def stage_dir(workdir: PathLike, fold: int, stage: str) -> pathlib.Path:
  return fold_dir(workdir, fold) / stage


def fold_dirs(workdir: PathLike) -> dict[int, pathlib.Path]:
  """{fold index: folder} of the folds present in `workdir`."""
  out = {}
  for p in sorted(pathlib.Path(workdir).glob('fold*')):
    m = FOLD_RE.match(p.name)
    if m and p.is_dir():
      out[int(m.group(1))] = p
  return out


def report_dir(workdir: PathLike) -> pathlib.Path:
  return pathlib.Path(workdir) / REPORT_DIR


# ---- Atomic writes -----------------------------------------------------------------------


def _temp_beside(path: str, suffix: str = '') -> tuple[int, str]:
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  return tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=suffix)


def write_text(path: PathLike, text: str) -> str:
  """Writes `text` atomically (temp file in the same folder, then os.replace)."""
  path = os.fspath(path)
  fd, tmp = _temp_beside(path)
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    _remove(tmp)
    raise
  return path


def _jsonable(x: Any) -> Any:
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.floating):
    return float(x)
  if hasattr(x, '__array__'):  # numpy and JAX arrays
    return np.asarray(x).tolist()
  raise TypeError(f'not JSON serialisable: {type(x)}')


def write_json(path: PathLike, obj: Any) -> str:
  """Writes JSON atomically; numpy and JAX scalars and arrays become plain values."""
  return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable))


def save_npz(path: PathLike, **arrays: np.ndarray) -> str:
  """Writes an .npz atomically."""
  path = os.fspath(path)
  fd, tmp = _temp_beside(path, suffix='.npz')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    _remove(tmp)
    raise
  return path


def save_figure(fig: Any, path: PathLike, **savefig_kwargs: Any) -> pathlib.Path:
  """Saves a matplotlib figure atomically and closes it; kwargs go to `fig.savefig`."""
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  fd, tmp = _temp_beside(os.fspath(path), suffix=path.suffix or '.png')
  os.close(fd)
  try:
    fig.savefig(tmp, **savefig_kwargs)
    os.replace(tmp, path)
  except BaseException:
    _remove(tmp)
    raise
  finally:
    plt.close(fig)
  return path


def _remove(path: str) -> None:
  with contextlib.suppress(FileNotFoundError):
    os.remove(path)


def replace_dir(built: PathLike, final: PathLike) -> str:
  """Moves the finished folder `built` to `final`; an existing `final` is moved aside
  first and deleted only once the new one is in place. Both must be on one filesystem."""
  built, final = os.path.abspath(built), os.path.abspath(final)
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  if os.path.exists(final):
    trash = tempfile.mkdtemp(prefix=f'.{os.path.basename(final)}.old-', dir=parent)
    os.replace(final, os.path.join(trash, 'old'))
    os.replace(built, final)
    shutil.rmtree(trash, ignore_errors=True)
  else:
    os.replace(built, final)
  return final


@contextlib.contextmanager
def atomic_dir(final: PathLike) -> Iterator[str]:
  """Yields a temporary folder beside `final`; on success it replaces `final`
  (`replace_dir`), on any failure it is deleted and `final` is left as it was."""
  final = os.path.abspath(final)
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(final)}.tmp-', dir=parent)
  try:
    yield tmp
    replace_dir(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


# ---- Reading stage folders ---------------------------------------------------------------


def is_done(stage: PathLike) -> bool:
  """True when the stage in folder `stage` has finished (its metrics.json exists)."""
  return os.path.isfile(os.path.join(stage, METRICS_FILE))


def read_json(path: PathLike) -> Any:
  """The JSON at `path`, or None when the file does not exist."""
  if not os.path.isfile(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def read_metrics(stage: PathLike) -> dict[str, Any]:
  with open(os.path.join(stage, METRICS_FILE), encoding='utf-8') as f:
    return json.load(f)


# ---- The config a stage folder belongs to ----------------------------------------------


class ConfigChanged(ValueError):
  """A workdir whose results belong to another config; the message names the fields."""


def plain(config: Any) -> dict[str, Any]:
  """A ConfigDict (or dict) as plain JSON values (placeholders as None)."""
  if hasattr(config, 'to_json_best_effort'):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(dict(config), default=_jsonable))


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f'{prefix}{k}.'))
    return out
  return {prefix[:-1]: tree}


def config_changes(workdir: str | os.PathLike, config: Any) -> list[str]:
  """'field: <recorded> in config.json, <new> now' for each result-changing field that
  differs between `workdir`'s config.json and `config`.

  None when nothing there belongs to the recorded config (no metrics.json and no
  checkpoint: a run that failed before its first save may be retried with a fix).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path) or not (is_done(workdir) or _has_checkpoint(workdir)):
    return []
  with open(path) as f:
    old = _flatten(json.load(f))
  new = _flatten(plain(config))
  changes = []
  for key in sorted(set(old) | set(new)):
    if key.rsplit('.', 1)[-1] in IGNORED_FIELDS:
      continue
    a, b = old.get(key, '<absent>'), new.get(key, '<absent>')
    if a == '<absent>' and ADDED_FIELDS.get(key.rsplit('.', 1)[-1], a) == b:
      continue
    if a != b:
      changes.append(f'{key}: {a!r} in {CONFIG_FILE}, {b!r} now')
  return changes


def _has_checkpoint(stage: PathLike) -> bool:
  folder = os.path.join(stage, CHECKPOINTS_DIR)
  return os.path.isdir(folder) and any(n.isdigit() for n in os.listdir(folder))


def describe_changes(workdir: str | os.PathLike, changes: list[str]) -> str:
  shown = '; '.join(changes[:_MAX_SHOWN])
  more = f'; and {len(changes) - _MAX_SHOWN} more' if len(changes) > _MAX_SHOWN else ''
  return (f'{workdir} holds a run of another config ({shown}{more}). Its checkpoints and '
          'results belong to that config: use a new --workdir for this one (or rerun with '
          'the config that wrote it).')


def check_config(workdir: str | os.PathLike, config: Any) -> None:
  """Raises ConfigChanged naming the fields in which `config` differs from the run
  recorded in `workdir`."""
  if changes := config_changes(workdir, config):
    raise ConfigChanged(describe_changes(workdir, changes))


def record_config(workdir: str | os.PathLike, config: Any) -> str:
  """Checks `config` against the recorded one, then (re)writes config.json."""
  check_config(workdir, config)
  return write_json(os.path.join(workdir, CONFIG_FILE), plain(config))


def finished(stage: PathLike, config: Any = None) -> dict[str, Any] | None:
  """The metrics of a finished stage (logged as not re-run), or None if it must run.

  With `config`, a folder recorded with another config is refused (ConfigChanged), so
  that neither a finished result nor a resumed checkpoint is passed off as this config's.
  """
  if config is not None:
    check_config(stage, config)
  if not is_done(stage):
    return None
  terminal.say(f'{stage} already has {METRICS_FILE}; not re-running.')
  return read_metrics(stage)


def read_config(stage: PathLike, what: str) -> dict[str, Any]:
  """The config.json of the stage in folder `stage`; `what` names the flag that gave
  the folder, for the error (e.g. 'config.gan_workdir must be the --workdir of a
  train_gan.py run')."""
  path = os.path.join(stage, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} not found: {what}.')
  with open(path, encoding='utf-8') as f:
    return json.load(f)
