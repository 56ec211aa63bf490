"""The TFDS dataset `cisl_patches`: 64x64 sign and normal patches in patient folds.

One builder config per source (phantom, manifest, lidc, liss); splits `fold0` ..
`fold{k-1}`; features as in CONTRACTS.md: image (64,64,1) float32 in [-1,1], label
(0-8 signs, 9 normal), patient_id, fold, slice_signs (9,) multi-hot, box (4,) x0,y0,x1,y1
(the sign's box; a background patch's own crop), source, kind, slice_path (the slice
file: absolute, or relative to the phantom's folder for the phantom, which is not kept)
and sop_uid (its DICOM SOP Instance UID; '' for PNG and NPY): enough to trace any
prediction back to the scan.

`build_dataset` is the whole job of `launch/make_dataset.py`: load the source, cut
patches, assign folds, write the TFDS folder, the dataset card and the example grid
into a temporary folder under `data_dir`, and move the finished version folder into
place only at the end, so a failed or killed build leaves no half-built dataset.

The builder also works alone with a manual_dir (e.g. for LISS):
    tfds.builder('cisl_patches/liss', data_dir=D).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir='/path/to/liss'))
"""
import contextlib
import dataclasses
import functools
import os
import shutil
import tempfile
import time

from absl import logging
from etils import epath
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cisl_jax import signs
from cisl_jax import terminal
from cisl_jax import workdir
from cisl_jax.data import card as card_lib
from cisl_jax.data import patches as patches_lib
from cisl_jax.data import slices
from cisl_jax.data import splits
from cisl_jax.data.records import BoxedSlice
from cisl_jax.data.sources import liss
from cisl_jax.data.sources import manifest
from cisl_jax.data.sources import phantom

tf.config.set_visible_devices([], 'GPU')

NAME = 'cisl_patches'
VERSION = '1.0.0'
SOURCES = ('phantom', 'manifest', 'lidc', 'liss')


def default_config() -> ml_collections.ConfigDict:
  """Settings of a dataset build (fields documented inline)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # background positions, fold tie-breaks, the phantom
  c.num_folds = 3  # cross-validation folds, grouped by patient (the paper's 3)
  c.require_classes = 'present'  # every fold must hold: 'present' classes, 'all' 10, 'none'
  c.patches = patches_lib.default_config()
  c.manifest = manifest.default_config()
  c.phantom = phantom.default_config()  # keyword arguments of phantom.write_phantom
  c.lidc = ml_collections.ConfigDict()  # LIDC ratings -> signs thresholds (lidc.py)
  c.examples_per_class = 8  # patches per class in the card's example grid
  return c


@dataclasses.dataclass
class Collected:
  """Everything a build produced before writing: patches, folds and what was left out."""
  source: str
  input_path: str
  patches: list[patches_lib.Patch]
  folds: dict[str, int]  # patient -> fold
  num_folds: int
  records: list[BoxedSlice]
  dropped: list[BoxedSlice]
  skipped: list[tuple[str, str]]
  source_summary: dict = dataclasses.field(default_factory=dict)  # e.g. LIDC's readers

  def fold_patches(self, k: int) -> list[patches_lib.Patch]:
    return [p for p in self.patches if self.folds[p.patient_id] == k]


def load_source(source: str, input_path: str | None, cfg: ml_collections.ConfigDict,
                skip_bad: bool) -> tuple[list[BoxedSlice], list[tuple[str, str]], dict]:
  """(records, skipped, summary) of one source; the summary goes into the card.

  The phantom is written first, then read as a manifest; only LIDC has a summary.
  """
  if source not in SOURCES:
    raise ValueError(f'unknown source {source!r}; use one of {", ".join(SOURCES)}.')
  if not input_path:
    raise ValueError(f'--source={source} needs --input=PATH (the phantom writes its own).')
  m = cfg.manifest
  if source in ('manifest', 'phantom'):
    return (*manifest.load(input_path, skip_bad=skip_bad, voc_sign=m.voc_sign,
                           png_hu_offset=m.png_hu_offset), {})
  if source == 'liss':
    return (*liss.load(input_path, skip_bad=skip_bad, voc_sign=m.voc_sign,
                       png_hu_offset=m.png_hu_offset), {})
  from cisl_jax.data.sources import lidc  # pylint: disable=g-import-not-at-top
  return lidc.load(input_path, skip_bad=skip_bad, thresholds=cfg.lidc.to_dict() or None)


def write_phantom(out_dir: str, cfg: ml_collections.ConfigDict) -> str:
  """Writes the phantom's DICOM slices and manifest into `out_dir`; returns the manifest."""
  return phantom.write_phantom(out_dir, seed=cfg.seed, **cfg.phantom.to_dict())


def _progress(start: float):
  def log(done, total):
    if done % 100 == 0 or done == total:
      dt = time.time() - start
      rate = done / max(dt, 1e-9)
      terminal.status(f'patches: {done}/{total} slices, {rate:.1f} slices/s, '
                      f'ETA {(total - done) / max(rate, 1e-9):.0f} s')
  return log


def collect(source: str, input_path: str, cfg: ml_collections.ConfigDict,
            skip_bad: bool = False) -> Collected:
  """Loads a source, cuts its patches and assigns patient folds."""
  records, skipped, summary = load_source(source, input_path, cfg, skip_bad)
  read = functools.partial(slices.read_slice, png_hu_offset=cfg.manifest.png_hu_offset)
  patch_list, dropped, bad = patches_lib.extract(
      records, cfg.patches, cfg.seed, read, skip_bad=skip_bad, progress=_progress(time.time()))
  skipped = list(skipped) + bad
  if not patch_list:
    raise ValueError(f'{input_path}: no patches could be cut (every box dropped or no '
                     'lung field found); check the boxes and the HU of the slices.')
  counts: dict[str, np.ndarray] = {}
  for p in patch_list:
    counts.setdefault(p.patient_id, np.zeros(signs.NUM_CLASSES, np.int64))[p.label] += 1
  folds = splits.assign_folds(counts, cfg.num_folds, cfg.seed)
  result = Collected(source, input_path, patch_list, folds, cfg.num_folds, records, dropped,
                     skipped, summary)
  _check_classes(result, cfg.require_classes)
  return result


def _check_classes(c: Collected, mode: str) -> None:
  if mode == 'none':
    return
  if mode == 'all':
    needed = range(signs.NUM_CLASSES)
  elif mode == 'present':
    needed = sorted({p.label for p in c.patches})
  else:
    raise ValueError(f"require_classes={mode!r}; use 'present', 'all' or 'none'.")
  labels = {k: np.array([p.label for p in c.fold_patches(k)]) for k in range(c.num_folds)}
  try:
    splits.check_fold_classes(labels, needed, f'{c.source} dataset (require_classes={mode})')
  except splits.FoldError as e:
    raise splits.FoldError(f'{e} To build it anyway (tasks check their own classes), pass '
                           '--config.require_classes=none.') from None


def features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(64, 64, 1), dtype=np.float32),
      'label': tfds.features.ClassLabel(names=list(signs.CLASS_NAMES)),
      'patient_id': tfds.features.Text(),
      'fold': tfds.features.Scalar(dtype=np.int32),
      'slice_signs': tfds.features.Tensor(shape=(signs.NUM_SIGNS,), dtype=np.int32),
      'box': tfds.features.Tensor(shape=(4,), dtype=np.int32),
      'source': tfds.features.Text(),
      'kind': tfds.features.Text(),
      'slice_path': tfds.features.Text(),
      'sop_uid': tfds.features.Text(),
  })


@functools.lru_cache(maxsize=4096)
def _sop_uid(path: str) -> str:
  """The SOP Instance UID of a DICOM slice ('' for PNG / NPY or when absent)."""
  if os.path.splitext(path)[1].lower() in ('.png', '.npy'):
    return ''
  import pydicom  # pylint: disable=g-import-not-at-top
  ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=['SOPInstanceUID'])
  return str(ds.get('SOPInstanceUID', ''))


def _slice_path(c: 'Collected', path: str) -> str:
  if c.source != 'phantom':
    return os.path.abspath(path)
  root = c.input_path if os.path.isdir(c.input_path) else os.path.dirname(c.input_path)
  return os.path.relpath(path, root)


class CislPatches(tfds.core.GeneratorBasedBuilder):
  """64x64 CT patches of the 9 lung imaging signs and normal tissue, in patient folds."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {str(VERSION): 'Initial release: the paper patch rules, a fixed HU window.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='phantom', description='The seeded CT phantom.'),
      tfds.core.BuilderConfig(name='manifest', description='A CSV/JSON manifest or VOC folder.'),
      tfds.core.BuilderConfig(name='lidc', description='LIDC-IDRI with ratings -> signs.'),
      tfds.core.BuilderConfig(name='liss', description='LISS from a manual_dir manifest.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = liss.MANUAL_DIR_LAYOUT

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default probes `importlib_resources`, which is not installed on Python
    # >= 3.9 (TFDS only requires it below), for a builder inside an installed package.
    return epath.Path(__file__)

  def __init__(self, *, collected: Collected | None = None,
               build_config: ml_collections.ConfigDict | None = None, skip_bad: bool = False,
               **kwargs):
    self._collected = collected
    self._build_config = build_config or default_config()
    self._skip_bad = skip_bad
    super().__init__(**kwargs)

  def _log_download_bytes(self) -> None:
    # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout; nothing
    # is downloaded here and make_dataset reports its own progress, so it goes to the log.
    logging.info('tfds: preparing %s in %s', self.info.full_name, self.data_dir)

  @property
  def collected(self) -> Collected | None:
    return self._collected

  def _log_download_done(self) -> None:
    # TFDS would print the temporary build folder, which is renamed once the card is
    # written; make_dataset prints the final path.
    pass

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('64x64 CT patches of the 9 common imaging signs of lung diseases and '
                     'normal lung tissue, in patient-grouped folds (cisl_jax).'),
        features=features(),
        supervised_keys=('image', 'label'),
        homepage='https://doi.org/10.1109/TBME.2014.2363131',  # the LISS database paper
    )

  def _split_generators(self, dl_manager):
    if self._collected is None:
      name = self.builder_config.name
      cfg = self._build_config
      if name == 'phantom':
        out = os.path.join(tempfile.mkdtemp(prefix='cisl_phantom_'), 'phantom')
        self._collected = collect(name, write_phantom(out, cfg), cfg, self._skip_bad)
      else:
        self._collected = collect(name, os.fspath(dl_manager.manual_dir), cfg, self._skip_bad)
    return {f'fold{k}': self._generate_examples(k) for k in range(self._collected.num_folds)}

  def _generate_examples(self, fold: int):
    c = self._collected
    for i, p in enumerate(c.fold_patches(fold)):
      yield f'{p.patient_id}/{i:06d}', {
          'image': p.image[..., None].astype(np.float32),
          'label': int(p.label),
          'patient_id': p.patient_id,
          'fold': fold,
          'slice_signs': p.slice_signs.astype(np.int32),
          'box': np.asarray(p.box, np.int32),
          'source': c.source,
          'kind': p.kind,
          'slice_path': _slice_path(c, p.path),
          'sop_uid': _sop_uid(p.path),
      }


def build_dataset(source: str, input_path: str | None, data_dir: str,
                  cfg: ml_collections.ConfigDict | None = None,
                  skip_bad: bool = False) -> str:
  """Builds `cisl_patches/<source>` under `data_dir` atomically; returns the card's path.

  The version folder `<data_dir>/cisl_patches/<source>/1.0.0/` holds the TFDS files,
  `dataset_card.json` and `examples.png`. An existing build is replaced only after the
  new one is complete.
  """
  cfg = cfg or default_config()
  data_dir = os.path.abspath(data_dir)
  created = [d for d in _missing_parents(data_dir)]  # removed again if the build fails
  os.makedirs(data_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{NAME}-{source}-tmp-', dir=data_dir)
  start = time.time()
  final = None
  try:
    if source == 'phantom':
      t0 = time.time()
      input_path = write_phantom(os.path.join(tmp, 'phantom_src'), cfg)
      logging.info('phantom written in %.1f s: %s', time.time() - t0, input_path)
    collected = collect(source, input_path, cfg, skip_bad)
    builder = CislPatches(config=source, data_dir=os.path.join(tmp, 'tfds'),
                          collected=collected, build_config=cfg, skip_bad=skip_bad)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        compute_stats=tfds.download.ComputeStatsMode.SKIP))
    built = os.fspath(builder.data_dir)
    card = card_lib.make_card(collected, cfg, version=VERSION,
                              seconds=round(time.time() - start, 1))
    card_lib.write_json(os.path.join(built, card_lib.CARD_NAME), card)
    card_lib.write_grid(os.path.join(built, card_lib.GRID_NAME), collected.patches,
                        cfg.examples_per_class, seed=cfg.seed,
                        title=f'cisl_patches/{source}: examples per class (lung window)')
    final = workdir.replace_dir(built, os.path.join(data_dir, NAME, source, VERSION))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    if final is None:  # a failed build leaves no empty data folder behind either
      for d in created:
        with contextlib.suppress(OSError):
          os.rmdir(d)  # only if empty
  return os.path.join(final, card_lib.CARD_NAME)


def built_card(data_dir: str, source: str) -> str | None:
  """The card of an existing build of `source` under `data_dir`, or None."""
  path = os.path.join(os.path.abspath(data_dir), NAME, source, VERSION, card_lib.CARD_NAME)
  return path if os.path.isfile(path) else None


def _missing_parents(path: str) -> list[str]:
  """`path` and its parents that do not exist yet, deepest first."""
  out = []
  while path and not os.path.exists(path):
    out.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return out
