"""ImageNet transfer-learning baselines (paper Section III-C4, Fig. 5), for the trainer.

The classifier stage (cisl_jax/train/classifier.py) calls `make_model_and_optimizer`
when config.mode == 'transfer' and trains the returned model like its own classifier:
  * grey 64x64 patches in [-1, 1] are mapped to 0-255 grey levels, copied to 3 channels
    and resized to 227 (AlexNet) or 224 (VGG16, ResNet-101) by nearest interpolation, as
    the paper did, then normalised as the weights expect ('caffe' for Keras weights,
    'torch' for torchvision ones; see cisl_jax/models/convert.py);
  * only the last three FC layers of AlexNet, the last two FC layers of VGG16, and the
    4th block and logits of ResNet-101 are trained: the optimizer gives every other
    parameter a zero update (optax.multi_transform) and the logged gradient norm covers
    the trained layers only (`trained_norm`), so XLA drops the frozen gradients;
  * Adam, 20 epochs, batch 4, lr 1e-3, from config.transfer.
Weights come from a folder written by launch/convert_weights.py; without one the
function refuses (unless allow_random_init, for tests), because a randomly initialised
network must never be reported as ImageNet transfer learning.
"""
import functools
import os

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cisl_jax.models import convert
from cisl_jax.models import transfer
from cisl_jax.train import common

# Caffe (Keras 'caffe' mode): BGR channel order, 0-255, per-channel mean subtracted.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision: RGB in [0, 1], then mean / std.
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
DEFAULT_SOURCE = {'alexnet': 'torch', 'vgg16': 'keras', 'resnet101': 'keras'}


def _names(path):
  for entry in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(entry, attr):
        yield str(getattr(entry, attr))
        break
    else:
      yield str(entry)


def _trained(arch, path):
  return any(name in transfer.TRAINABLE[arch] for name in _names(path))


def param_labels(arch):
  """optax label function: 'trainable' for the fine-tuned layers, else 'frozen'."""
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: 'trainable' if _trained(arch, path) else 'frozen', params)
  return labels


def make_optimizer(arch, lr):
  """Adam on the fine-tuned layers, zero updates (and no Adam state) elsewhere."""
  return optax.multi_transform({'trainable': optax.adam(lr), 'frozen': optax.set_to_zero()},
                               param_labels(arch))


def trained_norm(config, grads):
  """Global norm of the trained layers' gradients (the step's logged grad_norm).

  A norm over all gradients keeps the frozen layers' gradients alive, and XLA then
  back-propagates through the whole network: slower steps for VGG16 on a CPU.
  """
  return grad_norm_fn(config.transfer.arch)(grads)


@functools.lru_cache(maxsize=None)
def grad_norm_fn(arch):
  """`trained_norm` for one arch, one function object per arch (the jitted classifier
  step is cached per gradient-norm function)."""
  label_fn = param_labels(arch)

  def norm(grads):
    labels = label_fn(grads)
    return common.global_norm(jax.tree.map(
        lambda g, label: g if label == 'trainable' else jnp.zeros((), g.dtype), grads,
        labels))

  return norm


def trainable_filter(config):
  """nnx filter of the fine-tuned params, e.g. for nnx.DiffState or nnx.Optimizer(wrt=)."""
  arch = config.transfer.arch
  return nnx.All(nnx.Param, lambda path, _: transfer.is_trainable(arch, path))


def preprocess(images, *, size, normalisation, method='nearest'):
  """float32[B, H, W, 1] in [-1, 1] -> float32[B, size, size, 3] normalised for ImageNet nets."""
  images = jnp.asarray(images, jnp.float32)
  grey = (jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5  # 0-255 grey levels, like a photo.
  grey = jax.image.resize(grey, (grey.shape[0], size, size, 1), method=method)
  rgb = jnp.tile(grey, (1, 1, 1, 3))  # Duplicated channels (and so already "BGR").
  if normalisation == 'caffe':
    return rgb - jnp.asarray(CAFFE_MEAN_BGR, jnp.float32)
  if normalisation == 'torch':
    return (rgb / 255.0 - jnp.asarray(TORCH_MEAN_RGB)) / jnp.asarray(TORCH_STD_RGB)
  raise ValueError(f'unknown normalisation {normalisation!r}; use "caffe" or "torch".')


def weights_dir(config):
  """config.transfer.weights, or its `<arch>/` subfolder when it holds one per arch.

  One folder for all three networks (weights/imagenet/{alexnet,vgg16,resnet101}) lets a
  single --config.transfer.weights serve the whole Fig. 5 comparison.
  """
  tc = config.transfer
  if not tc.weights:
    return None
  per_arch = os.path.join(tc.weights, tc.arch)
  if os.path.isfile(os.path.join(tc.weights, 'meta.json')):
    return tc.weights
  if os.path.isfile(os.path.join(per_arch, 'meta.json')):
    return per_arch
  raise convert.ConversionError(
      f'config.transfer.weights={tc.weights!r}: no converted {tc.arch} weights; looked for '
      f'{os.path.join(tc.weights, "meta.json")} (one network) and '
      f'{os.path.join(per_arch, "meta.json")} (one subfolder per network). Write them with '
      f'launch/convert_weights.py --arch={tc.arch} --output={per_arch}.')


def _source(config):
  tc = config.transfer
  if tc.weights:
    return convert.load_meta(weights_dir(config))['source']
  return tc.source or DEFAULT_SOURCE[tc.arch]


def make_preprocess_fn(config):
  """The jittable preprocessing for config.transfer (size, resize, normalisation)."""
  tc = config.transfer
  size = tc.image_size or transfer.INPUT_SIZE[tc.arch]
  normalisation = convert.NORMALISATION[_source(config)]
  def preprocess_fn(images):
    return preprocess(images, size=size, normalisation=normalisation, method=tc.resize_method)
  return preprocess_fn


def make_model_and_optimizer(config, num_classes, rngs):
  """Returns (model, tx, preprocess_fn) for config.transfer; see the module docstring."""
  tc = config.transfer
  if tc.arch not in transfer.ARCHS:
    raise ValueError(f'config.transfer.arch={tc.arch!r}: use one of {", ".join(transfer.ARCHS)}.')
  if not tc.weights and not tc.allow_random_init:
    raise ValueError(
        'config.transfer.weights is not set: transfer learning needs ImageNet weights. '
        'Convert a keras.applications .h5/.keras or torchvision .pth file with '
        'launch/convert_weights.py --source=keras|torch --arch=ARCH --input=FILE '
        '--output=DIR and pass --config.transfer.weights=DIR.')
  source = _source(config)
  model = transfer.create_model(tc.arch, num_classes, source=source, dropout=tc.dropout,
                                zero_init=bool(tc.weights), rngs=rngs)
  if tc.weights:
    convert.restore(model, weights_dir(config), tc.arch)
  else:
    logging.warning('transfer: %s is randomly initialised (allow_random_init); this is '
                    'not ImageNet transfer learning.', tc.arch)
  params = nnx.state(model, nnx.Param)
  counts = {'trainable': 0, 'frozen': 0}
  for label, leaf in zip(jax.tree.leaves(param_labels(tc.arch)(params)),
                         jax.tree.leaves(params)):
    counts[label] += int(np.prod(leaf.shape))
  logging.info('transfer: %s (%s weights), %d parameters trained (%s), %d frozen.', tc.arch,
               source, counts['trainable'], ', '.join(transfer.TRAINABLE[tc.arch]),
               counts['frozen'])
  return model, make_optimizer(tc.arch, tc.lr), make_preprocess_fn(config)


def describe(config):
  """JSON-able facts for metrics.json, so that reports never mistake random for ImageNet."""
  tc = config.transfer
  meta = convert.load_meta(weights_dir(config)) if tc.weights else None
  return {
      'arch': tc.arch,
      'weights': weights_dir(config),
      'pretrained': meta is not None,
      'source': meta['source'] if meta else (tc.source or DEFAULT_SOURCE[tc.arch]),
      'normalisation': convert.NORMALISATION[_source(config)],
      'weights_file': meta['input_file'] if meta else None,
      'image_size': tc.image_size or transfer.INPUT_SIZE[tc.arch],
      'trained_layers': list(transfer.TRAINABLE[tc.arch]),
  }
