"""Transfer baselines: converted Keras / torchvision weights give the same logits in Flax.

The Keras networks are keras.applications VGG16 and ResNet101 with random weights
(weights=None: nothing is downloaded). The torchvision layouts are rebuilt here in a few
lines of torch (torchvision itself is not needed), with state-dict keys exactly as
torchvision names them; those tests need the optional `torch` extra and are skipped
without it.
"""
import os

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cisl_jax import config_lib
from cisl_jax.models import convert
from cisl_jax.models import transfer
from cisl_jax.train import transfer as transfer_train

RTOL = 1e-4  # relative to the largest logit: float32 sums in a different order


def _flax_logits(arch, source, weights_dir, x):
  model = transfer.create_model(arch, 1000, source=source, zero_init=True, rngs=nnx.Rngs(0))
  convert.restore(model, weights_dir, arch, skip=())
  model.eval()
  return np.asarray(model(jnp.asarray(x)))


def _assert_logits_close(ours, ref):
  scale = np.abs(ref).max()
  assert scale > 0
  np.testing.assert_allclose(ours, ref, rtol=0, atol=RTOL * scale)
  # The ranking of classes is what a classifier uses; it must match too.
  np.testing.assert_array_equal(np.argsort(ours[0])[-5:], np.argsort(ref[0])[-5:])


# ----------------------------------------------------------------------------- Keras


@pytest.fixture(scope='module')
def keras_resnet(tmp_path_factory):
  """A random keras.applications ResNet101 saved as .keras and as .weights.h5."""
  keras = pytest.importorskip('keras')
  keras.utils.set_random_seed(0)
  model = keras.applications.ResNet101(weights=None, classifier_activation=None)
  rng = np.random.default_rng(0)
  for layer in model.layers:  # non-trivial BatchNorm statistics, so epsilon and order matter
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.get_weights()[0].shape
      layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                         rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)])
  x = rng.normal(0, 60, (1, 224, 224, 3)).astype(np.float32)
  folder = tmp_path_factory.mktemp('keras_resnet')
  model.save(folder / 'resnet101.keras')
  model.save_weights(folder / 'resnet101.weights.h5')
  # One folder per arch, as a user's weights/imagenet/ holds them.
  meta = convert.convert('keras', 'resnet101', folder / 'resnet101.keras',
                         folder / 'imagenet' / 'resnet101')
  assert meta['normalisation'] == 'caffe' and meta['has_imagenet_head']
  return folder, x, model.predict(x, verbose=0)


def test_keras_resnet101_logits_match(keras_resnet):
  folder, x, ref = keras_resnet
  ours = _flax_logits('resnet101', 'keras', folder / 'imagenet' / 'resnet101', x)
  _assert_logits_close(ours, ref)


def test_keras_weights_only_file_reads_the_same(keras_resnet):
  folder, _, _ = keras_resnet
  a, _ = convert.from_keras(folder / 'resnet101.keras', 'resnet101')
  b, _ = convert.from_keras(folder / 'resnet101.weights.h5', 'resnet101')
  assert a.keys() == b.keys()
  for key in ('conv1.kernel', 'layer3.22.bn3.var', 'layer4.0.downsample_conv.kernel', 'head.bias'):
    np.testing.assert_array_equal(a[key], b[key])


def test_keras_vgg16_logits_match(tmp_path):
  keras = pytest.importorskip('keras')
  keras.utils.set_random_seed(1)
  model = keras.applications.VGG16(weights=None, classifier_activation=None)
  x = np.random.default_rng(1).normal(0, 60, (1, 224, 224, 3)).astype(np.float32)
  ref = model.predict(x, verbose=0)
  model.save(tmp_path / 'vgg16.h5')  # the legacy HDF5 format, as older files are
  del model
  convert.convert('keras', 'vgg16', tmp_path / 'vgg16.h5', tmp_path / 'ckpt')
  _assert_logits_close(_flax_logits('vgg16', 'keras', tmp_path / 'ckpt', x), ref)


def test_wrong_architecture_is_named(keras_resnet, tmp_path):
  folder, _, _ = keras_resnet
  with pytest.raises(convert.ConversionError, match=r'holds ResNet101 .* not VGG16'):
    convert.convert('keras', 'vgg16', folder / 'resnet101.keras', tmp_path / 'out')
  with pytest.raises(convert.ConversionError, match='no torchvision-layout alexnet'):
    convert.convert('keras', 'alexnet', folder / 'resnet101.keras', tmp_path / 'out')
  assert not os.path.exists(tmp_path / 'out')


def test_layer_that_does_not_fit_is_named_with_shapes(tmp_path):
  keras = pytest.importorskip('keras')
  # A VGG16 built for 32x32 inputs: its fc1 reads 1x1x512 features, not 7x7x512.
  model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3))
  model.save_weights(tmp_path / 'small.weights.h5')
  with pytest.raises(convert.ConversionError,
                     match=r'fc1\[0\] has shape \(512, 4096\).*fc1.kernel needs \(25088, 4096\)'):
    convert.convert('keras', 'vgg16', tmp_path / 'small.weights.h5', tmp_path / 'out')


def test_truncated_file_is_refused(keras_resnet, tmp_path):
  folder, _, _ = keras_resnet
  for name in ('resnet101.keras', 'resnet101.weights.h5'):
    data = (folder / name).read_bytes()
    (tmp_path / name).write_bytes(data[:len(data) // 3])
    with pytest.raises(convert.ConversionError, match='truncated or corrupt'):
      convert.convert('keras', 'resnet101', tmp_path / name, tmp_path / 'out')
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.')]  # no temp folder left


def test_existing_output_needs_overwrite(keras_resnet, tmp_path):
  folder, _, _ = keras_resnet
  (tmp_path / 'out').mkdir()
  with pytest.raises(convert.ConversionError, match='pass --overwrite'):
    convert.convert('keras', 'resnet101', folder / 'resnet101.keras', tmp_path / 'out')


# ----------------------------------------------------------------------------- torch


def _torch_models(torch):
  """torchvision's AlexNet, VGG16 and ResNet-101 layouts (same module names and keys)."""
  nn = torch.nn

  def alexnet():
    m = nn.Module()
    m.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    m.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    m.classifier = nn.Sequential(nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return m

  def vgg16():
    layers, cin = [], 3
    for widths in transfer.VGG16_BLOCKS:
      for cout in widths:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        cin = cout
      layers.append(nn.MaxPool2d(2, 2))
    m = nn.Module()
    m.features = nn.Sequential(*layers)
    m.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    m.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(4096, 1000))
    return m

  class Bottleneck(nn.Module):

    def __init__(self, cin, width, stride):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
      self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(width)
      self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
      self.downsample = None
      if stride != 1 or cin != 4 * width:
        self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False),
                                        nn.BatchNorm2d(4 * width))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = torch.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))

  def resnet101():
    m = nn.Module()
    m.conv1, m.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    cin = 64
    for s, (width, blocks, stride) in enumerate(transfer.RESNET101_STAGES, 1):
      layer = []
      for i in range(blocks):
        layer.append(Bottleneck(cin, width, stride if i == 0 else 1))
        cin = 4 * width
      setattr(m, f'layer{s}', nn.Sequential(*layer))
    m.fc = nn.Linear(2048, 1000)
    return m

  def forward(m, x):
    if hasattr(m, 'features'):
      x = torch.flatten(m.avgpool(m.features(x)), 1)
      return m.classifier(x)
    x = nn.functional.max_pool2d(torch.relu(m.bn1(m.conv1(x))), 3, 2, 1)
    for s in range(1, 5):
      x = getattr(m, f'layer{s}')(x)
    return m.fc(x.mean((2, 3)))

  return {'alexnet': alexnet, 'vgg16': vgg16, 'resnet101': resnet101}, forward


# AlexNet at its paper size; VGG16 and ResNet-101 smaller (torchvision's adaptive pool and
# ResNet's global pool allow it), which also checks the pool against torch's.
@pytest.mark.parametrize('arch,size', [('alexnet', 227), ('vgg16', 64), ('resnet101', 64)])
def test_torchvision_logits_match(arch, size, tmp_path):
  torch = pytest.importorskip('torch', reason='the optional torch extra is not installed')
  torch.manual_seed(0)
  builders, forward = _torch_models(torch)
  model = builders[arch]().eval()
  with torch.no_grad():
    for m in model.modules():  # non-trivial BatchNorm statistics
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, size, size)
    ref = forward(model, x).numpy()
  torch.save(model.state_dict(), tmp_path / f'{arch}.pth')
  meta = convert.convert('torch', arch, tmp_path / f'{arch}.pth', tmp_path / 'ckpt')
  assert meta['normalisation'] == 'torch'
  ours = _flax_logits(arch, 'torch', tmp_path / 'ckpt', x.numpy().transpose(0, 2, 3, 1))
  _assert_logits_close(ours, ref)


def test_torch_file_of_another_architecture_is_named(tmp_path):
  torch = pytest.importorskip('torch', reason='the optional torch extra is not installed')
  builders, _ = _torch_models(torch)
  torch.save(builders['alexnet']().state_dict(), tmp_path / 'alexnet.pth')
  with pytest.raises(convert.ConversionError, match='holds alexnet .* not vgg16'):
    convert.convert('torch', 'vgg16', tmp_path / 'alexnet.pth', tmp_path / 'out')
  data = (tmp_path / 'alexnet.pth').read_bytes()
  (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
  with pytest.raises(convert.ConversionError, match='truncated or corrupt'):
    convert.convert('torch', 'alexnet', tmp_path / 'cut.pth', tmp_path / 'out')


# ----------------------------------------------------------------------------- fine-tuning


def _config(**transfer_fields):
  c = ml_collections.ConfigDict()
  c.transfer = config_lib.transfer()
  c.transfer.update(transfer_fields)
  return c


def test_preprocess_grey_to_normalised_rgb():
  images = jnp.asarray(np.linspace(-1, 1, 2 * 64 * 64).reshape(2, 64, 64, 1), jnp.float32)
  caffe = transfer_train.preprocess(images, size=227, normalisation='caffe')
  assert caffe.shape == (2, 227, 227, 3)
  # -1 is black (0), +1 white (255); each channel has its own ImageNet mean subtracted.
  np.testing.assert_allclose(caffe[0, 0, 0], -np.asarray(transfer_train.CAFFE_MEAN_BGR), atol=1e-3)
  np.testing.assert_allclose(caffe[1, -1, -1], 255 - np.asarray(transfer_train.CAFFE_MEAN_BGR),
                             atol=1e-3)
  torch_in = transfer_train.preprocess(images, size=224, normalisation='torch')
  mean, std = np.asarray(transfer_train.TORCH_MEAN_RGB), np.asarray(transfer_train.TORCH_STD_RGB)
  np.testing.assert_allclose(torch_in[1, -1, -1], (1 - mean) / std, rtol=1e-5)
  # Nearest resizing only repeats grey levels: black and white stay black and white.
  checker = jnp.asarray(np.indices((64, 64)).sum(0) % 2 * 2.0 - 1.0)[None, :, :, None]
  levels = np.unique(transfer_train.preprocess(checker, size=224, normalisation='caffe')[..., 0])
  np.testing.assert_allclose(levels, [-103.939, 255 - 103.939], atol=1e-3)


def test_no_weights_is_refused_not_silently_random():
  with pytest.raises(ValueError, match='convert_weights.py'):
    transfer_train.make_model_and_optimizer(_config(arch='alexnet'), 2, nnx.Rngs(0))
  facts = transfer_train.describe(_config(arch='alexnet', allow_random_init=True))
  assert facts['pretrained'] is False and facts['normalisation'] == 'torch'


def test_only_the_papers_layers_are_trained():
  config = _config(arch='alexnet', allow_random_init=True, image_size=64)
  model, tx, preprocess_fn = transfer_train.make_model_and_optimizer(config, 2, nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = tx.init(params)
  batch = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 1)), jnp.float32)
  labels = jnp.asarray([0, 1, 0, 1])

  @jax.jit
  def step(params, rest, opt_state):  # dropout on: the model is in training mode
    def loss_fn(m):
      logits = m(preprocess_fn(batch))
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    grads = nnx.grad(loss_fn)(nnx.merge(graphdef, params, rest))
    updates, opt_state = tx.update(grads, opt_state, params)
    norms = (transfer_train.trained_norm(config, grads),
             optax.tree.norm([grads[n][v] for n in ('fc6', 'fc7', 'head')
                              for v in ('kernel', 'bias')]))
    return optax.apply_updates(params, updates), opt_state, norms

  model.train()
  new, opt_state, norms = step(params, rest, opt_state)
  np.testing.assert_allclose(norms[0], norms[1], rtol=1e-6)
  before, after = nnx.to_pure_dict(params), nnx.to_pure_dict(new)
  for name in ('conv1', 'conv5'):
    np.testing.assert_array_equal(before[name]['kernel'], after[name]['kernel'])
  for name in ('fc6', 'fc7', 'head'):
    assert not np.array_equal(before[name]['kernel'], after[name]['kernel']), name
  assert after['head']['kernel'].shape == (4096, 2)
  # The frozen layers carry no Adam moments.
  moments = sum(x.size for x in jax.tree.leaves(opt_state))
  trained = sum(before[n][v].size for n in ('fc6', 'fc7', 'head') for v in ('kernel', 'bias'))
  assert moments == 2 * trained + 1


def test_resnet_split_and_frozen_batchnorm():
  model = nnx.eval_shape(lambda: transfer.create_model('resnet101', 10, rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  labels = transfer_train.param_labels('resnet101')(params)
  flat = dict(zip((tuple(map(str, p)) for p, _ in nnx.to_flat_state(params)),
                  jax.tree.leaves(labels)))
  assert flat[('layer4', '2', 'conv3', 'kernel')] == 'trainable'
  assert flat[('head', 'kernel')] == 'trainable'
  assert flat[('layer3', '22', 'conv3', 'kernel')] == 'frozen'
  assert flat[('conv1', 'kernel')] == 'frozen'
  config = _config(arch='resnet101')
  picked = nnx.state(model, transfer_train.trainable_filter(config))
  assert {str(p[0]) for p, _ in nnx.to_flat_state(picked)} == {'layer4', 'head'}
  # model.train() switches block 4's BatchNorm to batch statistics, never the frozen ones.
  model.train()
  assert model.layer4[0].bn1.use_running_average is False
  assert isinstance(model.layer3[0].bn1, transfer.FrozenBatchNorm)


def test_restore_keeps_backbone_and_makes_new_head(keras_resnet):
  folder, _, _ = keras_resnet
  ckpt = folder / 'imagenet' / 'resnet101'
  config = _config(arch='resnet101', weights=str(folder / 'imagenet'))
  model, _, preprocess_fn = transfer_train.make_model_and_optimizer(config, 10, nnx.Rngs(0))
  ref, _ = convert.from_keras(folder / 'resnet101.keras', 'resnet101')
  np.testing.assert_array_equal(model.layer3[5].conv2.kernel[...], ref['layer3.5.conv2.kernel'])
  np.testing.assert_array_equal(model.layer4[1].bn2.var[...], ref['layer4.1.bn2.var'])
  assert model.head.kernel.shape == (2048, 10)
  assert preprocess_fn(jnp.zeros((1, 64, 64, 1))).shape == (1, 224, 224, 3)
  facts = transfer_train.describe(config)
  assert facts['pretrained'] and facts['normalisation'] == 'caffe'
  with pytest.raises(convert.ConversionError, match='holds resnet101 weights'):
    convert.restore(transfer.create_model('alexnet', 2, rngs=nnx.Rngs(0)), ckpt, 'alexnet')


def test_missing_weights_folder_names_both_places_it_looked(tmp_path):
  config = _config(arch='vgg16', weights=str(tmp_path / 'imagenet'))
  with pytest.raises(convert.ConversionError, match=r'(?s)imagenet/meta.json \(one network\) '
                     r'and .*imagenet/vgg16/meta.json \(one subfolder per network\)'):
    transfer_train.weights_dir(config)
  (tmp_path / 'imagenet' / 'vgg16').mkdir(parents=True)
  (tmp_path / 'imagenet' / 'vgg16' / 'meta.json').write_text('{}')
  assert transfer_train.weights_dir(config) == str(tmp_path / 'imagenet' / 'vgg16')
