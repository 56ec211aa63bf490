"""Input pipelines: numpy arrays in, fixed-shape numpy batches out, tf.data inside.

Every stage reads patches through here: `load_split` reads folds of the TFDS dataset
`cisl_patches` into arrays, the task functions pick images and labels for one task,
and `train_batches` / `eval_batches` turn them into batches. TensorFlow only runs the
input pipeline, on the CPU; it is hidden from every GPU so that JAX owns them.

Batches index into the arrays instead of copying them into TensorFlow: the dataset
holds example indices (cache -> shuffle -> repeat), a batch of indices is gathered
from the numpy arrays in one vectorised `map`, then prefetched. That keeps memory at
one copy of the arrays (a paper-sized pre-training set is ~2.6 GB) and is faster than
slicing tensors one example at a time.
"""
import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cisl_jax import signs
from cisl_jax import workdir

tf.config.set_visible_devices([], 'GPU')

DATASET_NAME = 'cisl_patches'
VERSION = '1.0.0'
PATCH_SHAPE = (64, 64, 1)
_GENERATED_FILE = 'generated-train.tfrecord-00000-of-00001'
_STRING_FEATURES = ('patient_id', 'source', 'kind', 'slice_path', 'sop_uid')
# What traces a patch back to its scan (datasets built before slice_path / sop_uid
# existed lack those two).
TRACE_FEATURES = ('patient_id', 'slice_path', 'sop_uid', 'box', 'kind')


def dataset_dir(data_dir: str, source: str) -> str:
  """Folder of one built `cisl_patches` config (what make_dataset writes)."""
  return os.path.join(data_dir, DATASET_NAME, source, VERSION)


def _as_folds(folds: int | Iterable[int]) -> list[int]:
  return [int(folds)] if isinstance(folds, (int, np.integer)) else [int(f) for f in folds]


def load_split(data_dir: str, source: str, folds: int | Iterable[int]) -> dict[str, np.ndarray]:
  """Reads the given folds of `cisl_patches/<source>` into arrays, one per feature.

  Strings (patient_id, source, kind) come back as numpy str arrays. Folds are
  concatenated in the order given, each in its stored order.
  """
  path = dataset_dir(data_dir, source)
  if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
    raise FileNotFoundError(
        f'{path}: no built dataset; run `python launch/make_dataset.py --source={source} '
        f'--data_dir={data_dir}` first.')
  builder = tfds.builder_from_directory(path)
  folds = _as_folds(folds)
  known = set(builder.info.splits.keys())
  missing = [f'fold{f}' for f in folds if f'fold{f}' not in known]
  if missing:
    raise ValueError(f'{path}: no split(s) {missing}; the dataset has {sorted(known)}.')
  parts = [_read_fold(builder, path, f) for f in folds
           if builder.info.splits[f'fold{f}'].num_examples]
  if not parts:
    raise ValueError(f'{path}: folds {folds} hold no patches.')
  # Fresh arrays for the caller (np.concatenate copies): the cached folds stay as read.
  return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def share_indices(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
  """Sorted indices of a seeded, per-class stratified `share` of the patches.

  Each class keeps round(share * n) of its n patches, and at least one where it has any,
  drawn from a permutation of its patches seeded by (seed, class) alone: a smaller share
  is a prefix of a larger one (the subsets are nested), and every stage that asks for
  the same share and seed gets the same patches. share 1 keeps everything.
  """
  labels = np.asarray(labels)
  if not 0 < share <= 1:
    raise ValueError(f'train_share={share}: it must be in (0, 1] (1 = every patch).')
  if share == 1:
    return np.arange(len(labels))
  keep = []
  for c in np.unique(labels):
    pool = np.flatnonzero(labels == c)
    order = np.random.default_rng([int(seed), int(c)]).permutation(pool)
    keep.append(order[:max(1, int(round(share * len(pool))))])
  return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def load_training(data_dir: str, source: str, folds: Iterable[int], share: float = 1.0,
                  seed: int = 0) -> dict[str, np.ndarray]:
  """`load_split` of the training folds, cut to the stratified `share` of their patches
  (`share_indices` on the 10-class labels): what a stage trains on."""
  arrays = load_split(data_dir, source, folds)
  if share == 1:
    return arrays
  idx = share_indices(arrays['label'], share, seed)
  return {k: v[idx] for k, v in arrays.items()}


# One process reads the same folds for every stage of a reproduction: reading them
# through TFDS again was about 1 s of each 4-s quick classifier stage.
_FOLDS_READ: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}


def _read_fold(builder, path: str, fold: int) -> dict[str, np.ndarray]:
  """One fold's arrays, read once per process and per build (keyed by the build's
  dataset_info.json time stamp, so a rebuilt dataset is read again)."""
  stamp = os.stat(os.path.join(path, 'dataset_info.json')).st_mtime_ns
  key = (os.path.realpath(path), fold, stamp)
  if key not in _FOLDS_READ:
    arrays = tfds.as_numpy(builder.as_dataset(split=f'fold{fold}', batch_size=-1))
    _FOLDS_READ[key] = {
        k: (np.array([v.decode('utf-8') for v in a], dtype=str) if k in _STRING_FEATURES
            else a) for k, a in arrays.items()}
  return _FOLDS_READ[key]


def ten_class_task(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Every patch with its 10-class label (0-8 signs, 9 normal)."""
  return (np.asarray(arrays['image'], np.float32),
          np.asarray(arrays['label'], np.int32))


def background_pool(arrays: Mapping[str, np.ndarray], sign: int | None = None) -> np.ndarray:
  """Indices of background (normal) patches, from slices without `sign` if given."""
  keep = np.asarray(arrays['label']) == signs.NORMAL
  if sign is not None:
    keep &= np.asarray(arrays['slice_signs'])[:, sign] == 0
  return np.flatnonzero(keep)


def _sample(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
  """`n` items of `pool`: without replacement when it is big enough, else with."""
  return rng.choice(pool, size=n, replace=len(pool) < n)


def binary_indices(arrays: Mapping[str, np.ndarray], sign: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(indices into `arrays`, labels) of the balanced binary task of one sign.

  Its patches (1) and as many non-sign ones (0): background patches cut from slices
  that do not show `sign` (the paper's "samples from CT scans which do not contain the
  corresponding sign"), drawn from `seed`, with replacement only when the pool is
  smaller.
  """
  labels = np.asarray(arrays['label'])
  pos = np.flatnonzero(labels == sign)
  pool = background_pool(arrays, sign)
  name = signs.SIGNS[sign]
  if not len(pos):
    raise signs.AbsentClass(f'no {name!r} patches in these folds; the binary task of {name} '
                            'needs some (check the dataset card for counts per fold).')
  if not len(pool):
    raise signs.AbsentClass(
        f'no background patches from slices without {name!r} in these folds (every slice '
        f'shows {name}); add slices without that sign or raise patches.backgrounds_per_slice.')
  rng = np.random.default_rng(seed)
  idx = np.concatenate([pos, _sample(pool, len(pos), rng)])
  y = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(pos), np.int32)])
  return idx, y


def binary_task(arrays: Mapping[str, np.ndarray], sign: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(images, labels) of the balanced binary task of one sign (`binary_indices`)."""
  idx, y = binary_indices(arrays, sign, seed)
  return np.asarray(arrays['image'], np.float32)[idx], y


def pretrain_task(generated: Mapping[str, np.ndarray], real_train: Mapping[str, np.ndarray],
                  task: str, sign: int | None, n_per_class: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The pre-training set: generated sign patches plus real background patches.

  Args:
    generated: `load_generated` output, labels 0-8.
    real_train: `load_split` output of the training folds (source of backgrounds).
    task: 'binary' (needs `sign`): `n_per_class` generated patches of `sign` (label 1)
      plus `n_per_class` background patches from training slices without it (0).
      'ten_class': `n_per_class` generated patches of each sign (labels 0-8) plus
      `n_per_class` real background patches as `normal` (9).
    sign: the sign code of the binary task; ignored for 'ten_class'.
    n_per_class: patches per class; pools smaller than that are sampled with replacement.
    seed: sampling seed.
  Returns:
    (images float32 [N,64,64,1], labels int32 [N]), grouped by class (shuffle in
    `train_batches`).
  """
  rng = np.random.default_rng(seed)
  gen_labels = np.asarray(generated['label'])
  gen_images = np.asarray(generated['image'], np.float32)
  real_images = np.asarray(real_train['image'], np.float32)

  def generated_of(s):
    pool = np.flatnonzero(gen_labels == s)
    if not len(pool):
      raise ValueError(f'the generated set has no {signs.SIGNS[s]!r} patches; generate '
                       'every sign the task needs.')
    return gen_images[_sample(pool, n_per_class, rng)]

  def background(s):
    pool = background_pool(real_train, s)
    if not len(pool):
      raise signs.AbsentClass(
          'no real background patches in the training folds'
          + (f' from slices without {signs.SIGNS[s]!r}' if s is not None else ''))
    return real_images[_sample(pool, n_per_class, rng)]

  if task == 'binary':
    if sign is None:
      raise ValueError("task 'binary' needs a sign code (0-8).")
    images = [generated_of(sign), background(sign)]
    labels = [np.ones(n_per_class, np.int32), np.zeros(n_per_class, np.int32)]
  elif task == 'ten_class':
    images = [generated_of(s) for s in range(signs.NUM_SIGNS)] + [background(None)]
    labels = [np.full(n_per_class, c, np.int32) for c in range(signs.NUM_CLASSES)]
  else:
    raise ValueError(f"unknown task {task!r}; use 'binary' or 'ten_class'.")
  return np.concatenate(images), np.concatenate(labels)


def _generated_features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=PATCH_SHAPE, dtype=np.float32),
      'label': tfds.features.Scalar(dtype=np.int64),
  })


def write_generated(out_dir: str, images: np.ndarray, labels: np.ndarray) -> str:
  """Writes a generated patch set as a TFDS-readable folder, atomically; returns it.

  The folder holds one TFRecord split 'train' plus TFDS metadata, so
  `tfds.builder_from_directory(out_dir)` reads it too. It is written beside
  `out_dir` under a temporary name and renamed into place when complete.
  """
  images = np.asarray(images, np.float32)
  labels = np.asarray(labels).astype(np.int64)
  if images.ndim != 4 or images.shape[1:] != PATCH_SHAPE or len(images) != len(labels):
    raise ValueError(f'write_generated: images {images.shape} and labels {labels.shape}; '
                     f'need [N,{",".join(map(str, PATCH_SHAPE))}] and [N].')
  out_dir = os.path.abspath(out_dir)
  with workdir.atomic_dir(out_dir) as tmp:
    features = _generated_features()
    path = os.path.join(tmp, _GENERATED_FILE)
    with tf.io.TFRecordWriter(path) as writer:
      for image, label in zip(images, labels):
        writer.write(features.serialize_example({'image': image, 'label': label}))
    split = tfds.core.SplitInfo(name='train', shard_lengths=[len(labels)],
                                num_bytes=os.path.getsize(path))
    tfds.folder_dataset.write_metadata(
        data_dir=tmp, features=features, split_infos=[split], check_data=True,
        filename_template='{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}-of-{NUM_SHARDS}')
  return out_dir


def load_generated(directory: str) -> dict[str, np.ndarray]:
  """Reads a `write_generated` folder: {'image': float32 [N,64,64,1], 'label': int32 [N]}."""
  if not os.path.isfile(os.path.join(directory, 'dataset_info.json')):
    raise FileNotFoundError(f'{directory}: no generated set here; run the generate stage.')
  data = tfds.as_numpy(tfds.builder_from_directory(directory).as_dataset(
      split='train', batch_size=-1))
  return {'image': data['image'].astype(np.float32), 'label': data['label'].astype(np.int32)}


def _gather_fn(images: np.ndarray, labels: np.ndarray, batch_size: int, pad: bool):
  """A tf.data map from a batch of indices to (image, label[, mask]) gathered in numpy."""

  def gather(idx):
    n = len(idx)
    if pad and n < batch_size:
      idx = np.concatenate([idx, np.zeros(batch_size - n, idx.dtype)])
    mask = (np.arange(batch_size) < n).astype(np.float32)
    return images[idx], labels[idx], mask

  def fn(idx):
    image, label, mask = tf.numpy_function(gather, [idx], (tf.float32, tf.int32, tf.float32),
                                           stateful=False)
    image.set_shape((batch_size,) + PATCH_SHAPE)
    label.set_shape((batch_size,))
    mask.set_shape((batch_size,))
    out = {'image': image, 'label': label}
    if pad:
      out['mask'] = mask
    return out

  return fn


def _check(images, labels):
  images = np.ascontiguousarray(images, np.float32)
  labels = np.ascontiguousarray(labels, np.int32)
  if images.shape[1:] != PATCH_SHAPE or len(images) != len(labels):
    raise ValueError(f'images {images.shape} / labels {labels.shape}: need '
                     f'[N,{",".join(map(str, PATCH_SHAPE))}] and [N].')
  if not len(labels):
    raise ValueError('no examples to batch.')
  return images, labels


def train_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                  num_epochs: int | None = None,
                  start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Shuffled, repeated, fixed-shape training batches {'image', 'label'}.

  The order depends only on `seed` (two runs see the same batches); every epoch is
  reshuffled; the last partial batch of the stream is dropped so shapes never change.
  `num_epochs=None` repeats forever. `start_step=k` starts at the stream's k-th batch,
  so a resumed run sees exactly the batches an uninterrupted one would.
  """
  images, labels = _check(images, labels)
  n = len(labels)
  if n < batch_size and num_epochs is not None:
    raise ValueError(f'{n} examples x {num_epochs} epoch(s) cannot fill one batch of '
                     f'{batch_size}; lower the batch size.')
  ds = tf.data.Dataset.range(n).cache()
  ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat(num_epochs)
  ds = ds.batch(batch_size, drop_remainder=True)
  # Skipping index batches before the gather costs microseconds per batch.
  ds = ds.skip(start_step)
  ds = ds.map(_gather_fn(images, labels, batch_size, pad=False),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


def eval_batches(images: np.ndarray, labels: np.ndarray,
                 batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """Every example once, in order, in fixed-shape batches; the last one padded.

  Each batch has 'mask' float32 [B]: 1 for real examples, 0 for padding (padding
  repeats example 0, so it is a valid input whose predictions must be masked out).
  """
  images, labels = _check(images, labels)
  ds = tf.data.Dataset.range(len(labels)).batch(batch_size)
  ds = ds.map(_gather_fn(images, labels, batch_size, pad=True),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()

