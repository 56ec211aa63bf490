"""The configs' library: shared fields, the two variants, the config blocks the stages
share (augmentation, ImageNet transfer, a method's steps), and loading a config file.

The stage configs in the top-level `configs/` build on it. It imports ml_collections
and the sign list (cisl_jax/signs.py, plain Python) and nothing else: no JAX, no
trainer, so a config is cheap to load and cannot pull a trainer in.
"""
import importlib.util
import os

import ml_collections
from ml_collections import config_dict

from cisl_jax import signs

VARIANTS = ('quick', 'paper')
SIGNS = tuple(signs.SIGNS)  # the binary tasks' signs, in the paper's order


def variant(arg: str | None) -> str:
  """The variant named by the `--config=configs/x.py:<arg>` suffix (default 'quick')."""
  arg = (arg or 'quick').strip()
  if arg not in VARIANTS:
    raise ValueError(f'unknown config variant {arg!r}; use one of {VARIANTS}, e.g. '
                     '--config=configs/train_gan.py:quick')
  return arg


def data_fields(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the dataset and seed fields that every stage and the protocol share."""
  c.data_dir = 'data'  # folder holding the built TFDS dataset cisl_patches (make_dataset)
  c.source = 'phantom'  # builder config of cisl_patches: phantom, manifest, lidc or liss
  c.num_folds = 3  # folds of the patient-grouped cross-validation (the paper: 3)
  return c


def base(arg: str | None) -> ml_collections.ConfigDict:
  """The fields every stage shares; each stage adds its own and locks the result."""
  v = variant(arg)
  quick = v == 'quick'
  c = ml_collections.ConfigDict()
  c.variant = v  # which preset filled the defaults ('quick' or 'paper')
  data_fields(c)
  c.fold = 0  # the held-out test fold; training uses all the other folds
  c.seed = 0  # one seed: split into init, data and per-step train keys
  c.task = 'ten'  # 'ten' (9 signs + normal, 10 classes) or 'binary' (one sign vs non-sign)
  c.sign = 'GGO'  # the sign of the binary task (a name from cisl_jax.signs.SIGNS)
  c.batch_size = 32 if quick else 64  # global batch, split over all devices
  c.width = 0.25 if quick else 1.0  # channel multiplier of every network (paper: 1.0)
  # Stride-2 (transposed) convolutions in the forms fast on XLA's CPU backend (same
  # parameters and results; cisl_jax/models/layers.py); False: plain nnx layers.
  c.fast_conv = True
  c.learning_rate = 1e-3  # Adam learning rate
  c.num_steps = 100 if quick else 10_000  # optimizer steps of the stage
  c.checkpoint_every = 50 if quick else 1000  # save a checkpoint every this many steps
  c.keep_checkpoints = 2  # preservation policy: keep the latest N checkpoints
  c.log_every = 10 if quick else 100  # log progress and TensorBoard scalars every N steps
  # Multi-host: coordinator 'host:port' (or env JAX_COORDINATOR_ADDRESS); unset = one host.
  c.coordinator_address = config_dict.placeholder(str)
  c.num_processes = config_dict.placeholder(int)  # processes in a multi-host run
  c.process_id = config_dict.placeholder(int)  # this process's index in a multi-host run
  return c


def train_share(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds `train_share`, the share of the training folds' patches a training stage uses."""
  # Stratified per class and seeded by config.seed (input_pipeline.share_indices): the
  # small-data curve (configs/reproduce.py small_data_shares) sets it below 1.
  c.train_share = 1.0
  return c


def augment() -> ml_collections.ConfigDict:
  """The paper's traditional augmentation (cisl_jax/augment.py applies it)."""
  c = ml_collections.ConfigDict()
  c.rotation = 30.0  # degrees, uniform in [-rotation, rotation]
  c.shift = 0.1  # fraction of the image side, uniform in [-shift, shift] per axis
  c.shear = 10.0  # degrees, uniform in [-shear, shear]
  c.zoom = (0.9, 1.1)  # per-axis scale, uniform in [lo, hi]
  c.horizontal_flip = True  # flip left-right with probability 1/2
  c.vertical_flip = True  # flip up-down with probability 1/2
  return c


def transfer(arg: str | None = None) -> ml_collections.ConfigDict:
  """The ImageNet transfer block (cisl_jax/train/transfer.py); `arg` 'quick' (2 CPU
  cores) or 'paper' (default)."""
  c = ml_collections.ConfigDict()
  c.arch = 'vgg16'  # 'alexnet' | 'vgg16' | 'resnet101'.
  # Folder written by launch/convert_weights.py (ImageNet weights, meta.json + state/).
  c.weights = config_dict.placeholder(str)
  # Build randomly initialised networks when no weights are given (tests only; such runs
  # are marked pretrained=False and are never reported as transfer learning).
  c.allow_random_init = False
  # 'keras' | 'torch': only used with allow_random_init (otherwise read from meta.json);
  # picks ResNet-101's flavour and the input normalisation. Default: per arch.
  c.source = config_dict.placeholder(str)
  c.epochs = 20  # Paper: 20 epochs of fine-tuning.
  c.batch_size = 4  # Paper: batch 4.
  c.lr = 1e-3  # Paper: Adam, learning rate 1e-3.
  # Input side; default 227 (AlexNet) or 224 (VGG16, ResNet-101) as the paper.
  c.image_size = config_dict.placeholder(int)
  c.resize_method = 'nearest'  # The paper resizes by nearest interpolation.
  c.dropout = 0.5  # Dropout before/after the FC layers of AlexNet / VGG16 (torchvision's).
  if arg == 'quick':
    # 2 CPU cores: a VGG16 step at 224x224 takes seconds, so the quick run fine-tunes for
    # 1 epoch at 112x112 (the adaptive pool keeps the FC shapes; not the paper's setting).
    c.epochs = 1  # quick: one epoch
    c.image_size = 112  # quick: 112x112 inputs
  elif arg not in (None, '', 'paper'):
    raise ValueError(f'transfer config variant {arg!r}: use "quick" or "paper".')
  return c


def method(num_steps: int, learning_rate: float) -> ml_collections.ConfigDict:
  """One classifier method of the protocol (configs/reproduce.py's `methods`)."""
  m = ml_collections.ConfigDict()
  m.num_steps = num_steps  # optimizer steps of this classifier stage
  m.learning_rate = learning_rate  # Adam learning rate of this stage
  return m


def load(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the config file at `path`, loaded by path as
  `--config=<path>:<arg>` does (configs/ is not an installed package)."""
  path = os.fspath(path)
  name = f'cisl_config_{os.path.splitext(os.path.basename(path))[0]}'
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f'{path}: no config file there.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
