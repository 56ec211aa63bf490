"""Converts ImageNet weight files into Orbax checkpoints of cisl_jax.models.transfer.

Sources (the files users already have; nothing is downloaded):
  keras: keras.applications VGG16 / ResNet101 as a full model (.keras, or .h5 from
    model.save) or a weights-only .h5 (the files keras.applications downloads, or
    model.save_weights). Read with h5py by layer name; Keras is not imported.
  torch: torchvision state dicts (.pth) of AlexNet, VGG16 and ResNet-101 (needs torch).
Layout changes: torch conv OIHW -> HWIO, torch Linear (out, in) -> (in, out), and the
first FC of torch AlexNet / VGG16, which reads an NCHW flatten, is permuted to read our
NHWC flatten (Keras flattens NHWC like us). BatchNorm epsilons differ by source (Keras
1.001e-5, torch 1e-5) and are part of the model flavour (models/transfer.py).
Normalisation: Keras weights were trained on 'caffe' inputs (BGR, 0-255, ImageNet mean
subtracted, no scaling), torchvision weights on 'torch' inputs ([0, 1], mean/std
normalised); meta.json records which, and cisl_jax/train/transfer.py applies it.

Output folder: meta.json (arch, source, normalisation, input file) and state/ (Orbax:
{'params': ..., 'batch_stats': ...} keyed like the model's state, list indices as
strings), with the 1000-class ImageNet head kept as `head`.
"""
import json
import os
import re
import tempfile
import zipfile

from flax import nnx
from flax import traverse_util
import h5py
import numpy as np
import orbax.checkpoint as ocp

from cisl_jax import workdir
from cisl_jax.models import transfer

NORMALISATION = {'keras': 'caffe', 'torch': 'torch'}
_BN_STATS = ('mean', 'var')
_KERAS_ARCHS = ('vgg16', 'resnet101')


class ConversionError(ValueError):
  """A weight file that does not convert; the message names the file and the fix."""


def _expected(arch, source):
  """Flat {'a.b.kernel': shape} of the model's params and batch stats (1000 classes)."""
  model = nnx.eval_shape(lambda: transfer.create_model(arch, 1000, source=source,
                                                       rngs=nnx.Rngs(0)))
  flat = {}
  for kind in (nnx.Param, nnx.BatchStat):
    pure = nnx.to_pure_dict(nnx.state(model, kind))
    for path, leaf in traverse_util.flatten_dict(pure).items():
      flat['.'.join(map(str, path))] = tuple(leaf.shape)
  return flat


# ----------------------------------------------------------------------------- Keras


def _read_keras_h5(group, path):
  """{layer name: [arrays in Keras order]} from a legacy or a Keras 3 weights group."""
  layers = {}
  if 'layer_names' in group.attrs:  # legacy format: model.save('x.h5'), applications files
    for name in group.attrs['layer_names']:
      name = name.decode() if isinstance(name, bytes) else str(name)
      names = [n.decode() if isinstance(n, bytes) else str(n)
               for n in group[name].attrs['weight_names']]
      if names:
        layers[name] = [np.asarray(group[name][n]) for n in names]
  elif 'layers' in group:  # Keras 3 format: model.weights.h5, inside .keras archives
    for key in group['layers']:
      sub = group['layers'][key]
      if 'vars' not in sub:
        continue
      name = str(sub['vars'].attrs.get('name', key))
      arrays = [np.asarray(sub['vars'][str(i)]) for i in range(len(sub['vars']))]
      if arrays:
        layers[name] = arrays
  else:
    raise ConversionError(f'{path}: an HDF5 file without Keras layers (no layer_names and no '
                          'layers/ group); give a keras.applications .h5 or .keras file.')
  return layers


def read_keras(path):
  """Reads every layer's weights of a Keras .h5 / .keras file, by layer name."""
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
        if 'model.weights.h5' not in archive.namelist():
          raise ConversionError(f'{path}: a zip archive without model.weights.h5: not a '
                                '.keras model file.')
        archive.extract('model.weights.h5', tmp)
        with h5py.File(os.path.join(tmp, 'model.weights.h5'), 'r') as f:
          return _read_keras_h5(f, path)
    with h5py.File(path, 'r') as f:
      return _read_keras_h5(f['model_weights'] if 'model_weights' in f else f, path)
  except ConversionError:
    raise
  except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise ConversionError(f'{path}: cannot be read as a Keras .h5/.keras file '
                          f'({type(e).__name__}: {e}); the file is probably truncated or '
                          'corrupt: copy or save it again.') from e


def _guess_keras(layers):
  if 'block1_conv1' in layers:
    return 'VGG19' if 'block5_conv4' in layers else 'VGG16'
  if 'conv1_conv' in layers:
    blocks = {'6': 'ResNet50', '23': 'ResNet101', '36': 'ResNet152'}
    n = sum(1 for name in layers if re.fullmatch(r'conv4_block\d+_1_conv', name))
    return blocks.get(str(n), f'a ResNet with {n} conv4 blocks')
  return 'an unknown network'


def _keras_names(arch, layers):
  """{our key: (file layer, index in its weight list, ours is a BatchNorm stat)}."""
  mapping = {}

  def dense_or_conv(ours, theirs):
    mapping[f'{ours}.kernel'] = (theirs, 0)
    mapping[f'{ours}.bias'] = (theirs, 1)

  def bn(ours, theirs):
    for i, var in enumerate(('scale', 'bias', 'mean', 'var')):
      mapping[f'{ours}.{var}'] = (theirs, i)

  if arch == 'vgg16':
    for b, widths in enumerate(transfer.VGG16_BLOCKS, 1):
      for i in range(1, len(widths) + 1):
        dense_or_conv(f'block{b}_conv{i}', f'block{b}_conv{i}')
    dense_or_conv('fc1', 'fc1')
    dense_or_conv('fc2', 'fc2')
  else:
    dense_or_conv('conv1', 'conv1_conv')
    bn('bn1', 'conv1_bn')
    for s, (_, blocks, _) in enumerate(transfer.RESNET101_STAGES, 1):
      for i in range(blocks):
        theirs = f'conv{s + 1}_block{i + 1}'
        for k in (1, 2, 3):
          dense_or_conv(f'layer{s}.{i}.conv{k}', f'{theirs}_{k}_conv')
          bn(f'layer{s}.{i}.bn{k}', f'{theirs}_{k}_bn')
        if i == 0:
          dense_or_conv(f'layer{s}.{i}.downsample_conv', f'{theirs}_0_conv')
          bn(f'layer{s}.{i}.downsample_bn', f'{theirs}_0_bn')
  if 'predictions' in layers:  # absent from include_top=False ('notop') files
    dense_or_conv('head', 'predictions')
  return mapping


def from_keras(path, arch):
  """{our key: array} from a keras.applications file of `arch`."""
  if arch not in _KERAS_ARCHS:
    raise ConversionError(f'--arch={arch}: keras.applications has no torchvision-layout '
                          f'{arch}; convert a torchvision .pth with --source=torch.')
  layers = read_keras(path)
  want = {'vgg16': 'VGG16', 'resnet101': 'ResNet101'}[arch]
  found = _guess_keras(layers)
  if found != want:
    raise ConversionError(f'{path}: holds {found} (layers: {", ".join(list(layers)[:5])}, '
                          f'...), not {want}; pass the matching --arch or the right file.')
  if arch == 'vgg16' and 'fc1' not in layers:
    raise ConversionError(f'{path}: a VGG16 without its FC layers (include_top=False, a '
                          '"notop" file); the paper fine-tunes fc2 on top of ImageNet fc1: '
                          'use the include_top=True weights.')
  out, names = {}, {}
  for ours, (layer, index) in _keras_names(arch, layers).items():
    if layer not in layers:
      raise ConversionError(f'{path}: layer {layer!r} is missing; the file is not a complete '
                            f'keras.applications {want}.')
    arrays = layers[layer]
    if index >= len(arrays):
      raise ConversionError(f'{path}: layer {layer!r} has {len(arrays)} weight arrays, '
                            f'{want} needs {index + 1} (kernel and bias; BatchNorm: gamma, '
                            'beta, moving mean and variance).')
    out[ours], names[ours] = arrays[index], f'{layer}[{index}]'
  return out, names


# ----------------------------------------------------------------------------- torch

_ALEXNET_TORCH = {'features.0': 'conv1', 'features.3': 'conv2', 'features.6': 'conv3',
                  'features.8': 'conv4', 'features.10': 'conv5', 'classifier.1': 'fc6',
                  'classifier.4': 'fc7', 'classifier.6': 'head'}
# BatchNorm gamma is torch's 1-D 'weight'.
_TORCH_VARS = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}
_VGG16_TORCH_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _vgg16_torch():
  mapping, convs = {}, iter(_VGG16_TORCH_CONVS)
  for b, widths in enumerate(transfer.VGG16_BLOCKS, 1):
    for i in range(1, len(widths) + 1):
      mapping[f'features.{next(convs)}'] = f'block{b}_conv{i}'
  mapping.update({'classifier.0': 'fc1', 'classifier.3': 'fc2', 'classifier.6': 'head'})
  return mapping


def _resnet101_torch():
  mapping = {'conv1': 'conv1', 'bn1': 'bn1', 'fc': 'head'}
  for s, (_, blocks, _) in enumerate(transfer.RESNET101_STAGES, 1):
    for i in range(blocks):
      for k in (1, 2, 3):
        mapping[f'layer{s}.{i}.conv{k}'] = f'layer{s}.{i}.conv{k}'
        mapping[f'layer{s}.{i}.bn{k}'] = f'layer{s}.{i}.bn{k}'
      mapping[f'layer{s}.{i}.downsample.0'] = f'layer{s}.{i}.downsample_conv'
      mapping[f'layer{s}.{i}.downsample.1'] = f'layer{s}.{i}.downsample_bn'
  return mapping


def read_torch(path):
  """Loads a torch state dict as {name: float32 numpy array}."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConversionError(f'{path}: reading .pth files needs torch (pip install '
                          'torch==2.13.0, the CPU wheel is enough).') from e
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # truncated zips and bad pickles raise many kinds of errors
    raise ConversionError(f'{path}: cannot be read as a torch state dict '
                          f'({type(e).__name__}: {e}); the file is not a .pth file, or it '
                          'is truncated or corrupt: copy or save it again.') from e
  if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
    state = state['state_dict']
  if not isinstance(state, dict) or not all(hasattr(v, 'numpy') for v in state.values()):
    raise ConversionError(f'{path}: holds a {type(state).__name__}, not a state dict of '
                          'tensors; save it with torch.save(model.state_dict(), path).')
  return {k.removeprefix('module.'): v.detach().float().numpy() for k, v in state.items()}


def _guess_torch(state):
  if 'layer1.0.conv1.weight' in state:
    n = len({k.split('.')[1] for k in state if k.startswith('layer3.')})
    return {6: 'resnet50', 23: 'resnet101', 36: 'resnet152'}.get(n, f'a ResNet ({n} layer3 blocks)')
  if 'features.0.weight' in state:
    if state['features.0.weight'].shape[-1] == 11:
      return 'alexnet'
    n = sum(1 for k in state if k.startswith('features.') and k.endswith('.weight'))
    return {13: 'vgg16', 16: 'vgg19'}.get(n, f'a VGG-like network ({n} convs)')
  return 'an unknown network'


def from_torch(path, arch):
  """{our key: array} from a torchvision state dict of `arch`, in our layout."""
  state = read_torch(path)
  found = _guess_torch(state)
  if found != arch:
    raise ConversionError(f'{path}: holds {found} (keys: {", ".join(list(state)[:4])}, ...), '
                          f'not {arch}; pass the matching --arch or the right file.')
  modules = {'alexnet': _ALEXNET_TORCH, 'vgg16': _vgg16_torch(),
             'resnet101': _resnet101_torch()}[arch]
  flatten_from = {'alexnet': ('classifier.1', (256, 6, 6)),
                  'vgg16': ('classifier.0', (512, 7, 7))}.get(arch)
  out, names = {}, {}
  for key, value in state.items():
    if key.endswith('num_batches_tracked'):
      continue
    module, _, var = key.rpartition('.')
    if module not in modules:
      raise ConversionError(f'{path}: key {key!r} (shape {value.shape}) has no place in '
                            f'torchvision {arch}; the file is of another architecture or '
                            'version.')
    ours = modules[module]
    if var == 'weight' and value.ndim == 4:  # conv OIHW -> HWIO
      ours, value = f'{ours}.kernel', value.transpose(2, 3, 1, 0)
    elif var == 'weight' and value.ndim == 2:  # Linear (out, in) -> (in, out)
      if flatten_from and module == flatten_from[0] and value.shape[1] == np.prod(flatten_from[1]):
        # torch flattens NCHW (c, h, w); our NHWC flatten is (h, w, c).
        c, h, w = flatten_from[1]
        value = value.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(value.shape[0], -1)
      ours, value = f'{ours}.kernel', value.T
    elif var in _TORCH_VARS:
      ours = f'{ours}.{_TORCH_VARS[var]}'
    else:
      raise ConversionError(f'{path}: key {key!r} is not a weight, bias or BatchNorm '
                            f'statistic of torchvision {arch}.')
    out[ours], names[ours] = value, key
  return out, names


# ----------------------------------------------------------------------------- checkpoints


def _check(flat, names, arch, source, path):
  """Refuses missing, unexpected or misshapen layers, naming them and their shapes."""
  expected = _expected(arch, source)
  if 'head.kernel' not in flat:  # a notop file: the head is replaced anyway
    expected = {k: v for k, v in expected.items() if not k.startswith('head.')}
  unexpected = sorted(set(flat) - set(expected))
  if unexpected:
    raise ConversionError(f'{path}: {names[unexpected[0]]} (shape '
                          f'{flat[unexpected[0]].shape}) does not fit {arch} '
                          f'({len(unexpected)} such arrays).')
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise ConversionError(f'{path}: no weights for {arch} layer {missing[0]} (shape '
                          f'{expected[missing[0]]}); {len(missing)} arrays missing: the file '
                          'is incomplete or of another architecture.')
  for key, shape in expected.items():
    if tuple(flat[key].shape) != shape:
      raise ConversionError(f'{path}: {names[key]} has shape {flat[key].shape} in our '
                            f'layout, {arch} layer {key} needs {shape}: the file is of '
                            'another variant of the network.')


def _nest(flat, stats):
  keep = {k: v for k, v in flat.items() if (k.rsplit('.', 1)[1] in _BN_STATS) == stats}
  return traverse_util.unflatten_dict({tuple(k.split('.')): np.asarray(v, np.float32)
                                       for k, v in keep.items()})


def convert(source, arch, input_path, output_dir, *, overwrite=False):
  """Converts `input_path` into a checkpoint folder `output_dir`; returns its meta."""
  input_path, output_dir = os.fspath(input_path), os.fspath(output_dir)
  if arch not in transfer.ARCHS:
    raise ConversionError(f'--arch={arch}: use one of {", ".join(transfer.ARCHS)}.')
  if source not in transfer.SOURCES:
    raise ConversionError(f'--source={source}: use one of {", ".join(transfer.SOURCES)}.')
  if not os.path.isfile(input_path):
    raise ConversionError(f'{input_path}: no such file.')
  if os.path.exists(output_dir) and not overwrite:
    raise ConversionError(f'{output_dir}: exists; choose another --output or pass --overwrite.')
  reader = from_keras if source == 'keras' else from_torch
  flat, names = reader(input_path, arch)
  _check(flat, names, arch, source, input_path)
  meta = {'arch': arch, 'source': source, 'normalisation': NORMALISATION[source],
          'input_size': transfer.INPUT_SIZE[arch], 'bn_epsilon': transfer.BN_EPSILON[source],
          'has_imagenet_head': 'head.kernel' in flat,
          'input_file': os.path.abspath(input_path)}
  with workdir.atomic_dir(output_dir) as tmp:
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(tmp, 'state'),
                      {'params': _nest(flat, False), 'batch_stats': _nest(flat, True)})
    checkpointer.wait_until_finished()
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=2)
  return meta


def load_meta(weights_dir):
  """meta.json of a converted checkpoint folder; refuses anything else."""
  path = os.path.join(os.fspath(weights_dir), 'meta.json')
  if not os.path.isfile(path):
    raise ConversionError(f'{weights_dir}: not a converted weights folder (no meta.json); '
                          'write one with launch/convert_weights.py.')
  with open(path) as f:
    return json.load(f)


def restore(model, weights_dir, arch, *, skip=('head',)):
  """Loads a converted checkpoint into `model` (in place), leaving `skip` layers as built."""
  meta = load_meta(weights_dir)
  if meta['arch'] != arch:
    raise ConversionError(f'{weights_dir}: holds {meta["arch"]} weights, but the model is '
                          f'{arch}; set config.transfer.arch={meta["arch"]} or convert '
                          f'{arch} weights.')
  saved = ocp.StandardCheckpointer().restore(os.path.join(os.fspath(weights_dir), 'state'))
  for kind, group in ((nnx.Param, 'params'), (nnx.BatchStat, 'batch_stats')):
    state = nnx.state(model, kind)
    pure = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    have = {tuple(map(str, k)): v for k, v in traverse_util.flatten_dict(saved[group]).items()}
    for path, current in pure.items():
      if str(path[0]) in skip:
        continue
      key = tuple(map(str, path))
      if key not in have or tuple(have[key].shape) != tuple(current.shape):
        got = have[key].shape if key in have else 'nothing'
        raise ConversionError(f'{weights_dir}: {".".join(key)} has {got}, the model needs '
                              f'{tuple(current.shape)}; convert the weights again.')
      pure[path] = np.asarray(have[key], current.dtype)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(pure))
    nnx.update(model, state)
  return meta
