"""AlexNet, VGG16 and ResNet-101 in Flax NNX (NHWC), for ImageNet transfer learning.

The layouts follow the weight files that cisl_jax/models/convert.py reads: AlexNet is
torchvision's; VGG16 is the same network in Keras and torchvision (torchvision's adaptive
average pool is the identity at 224x224); ResNet-101 comes in two flavours that differ
in their weights' source:
  'keras': keras.applications ResNet101 (v1): stride in the first 1x1 conv of a block,
    conv biases, BatchNorm epsilon 1.001e-5.
  'torch': torchvision ResNet-101 (v1.5): stride in the 3x3 conv, no conv biases,
    BatchNorm epsilon 1e-5.
The last layer is always `head`: 1000 outputs for an ImageNet checkpoint, 2 or 10 when a
new head is fine-tuned. TRAINABLE names the layers the paper fine-tunes; everything
else is frozen (cisl_jax/train/transfer.py), and ResNet's frozen BatchNorms always use
their ImageNet statistics, whatever model.train() says.
"""
import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from cisl_jax.models import layers

ARCHS = ('alexnet', 'vgg16', 'resnet101')
SOURCES = ('keras', 'torch')
# The paper fine-tunes the last three FC layers of AlexNet, the last two of VGG16, and
# the 4th block and logits of ResNet-101 (Section III-C4).
TRAINABLE = {
    'alexnet': ('fc6', 'fc7', 'head'),
    'vgg16': ('fc2', 'head'),
    'resnet101': ('layer4', 'head'),
}
INPUT_SIZE = {'alexnet': 227, 'vgg16': 224, 'resnet101': 224}
BN_EPSILON = {'keras': 1.001e-5, 'torch': 1e-5}
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
RESNET101_STAGES = ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2))  # width, blocks, stride


def _init(zero_init):
  # Layers a checkpoint overwrites start at zero: random init of VGG16's 138M weights
  # takes longer on a CPU than loading them.
  return {'kernel_init': nnx.initializers.zeros_init()} if zero_init else {}


def _conv(cin, cout, kernel, stride, pad, *, rngs, use_bias=True, zero_init=False):
  # Explicit symmetric padding: 'SAME' pads stride-2 convs asymmetrically, unlike torch.
  return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                  use_bias=use_bias, rngs=rngs, **_init(zero_init))


def _linear(cin, cout, *, rngs, zero_init=False):
  return nnx.Linear(cin, cout, rngs=rngs, **_init(zero_init))


def _max_pool(x, window, stride, pad=0):
  return nnx.max_pool(x, (window, window), (stride, stride), ((pad, pad), (pad, pad)))


def _pool_matrix(n_in, n_out):
  """Rows average torch's adaptive-pooling bins [floor(i n/o), ceil((i+1) n/o))."""
  m = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    lo, hi = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


def adaptive_avg_pool(x, size):
  """torch.nn.AdaptiveAvgPool2d((size, size)) on NHWC; the identity when already size."""
  h, w = x.shape[1:3]
  if (h, w) == (size, size):
    return x
  return jnp.einsum('oh,bhwc,pw->bopc', _pool_matrix(h, size), x, _pool_matrix(w, size))


class AlexNet(nnx.Module):
  """torchvision AlexNet: 5 convs, adaptive pool to 6x6, 3 FCs (fc6, fc7, head)."""

  def __init__(self, num_classes=1000, *, dropout=0.5, zero_init=False, rngs: nnx.Rngs):
    conv = functools.partial(_conv, rngs=rngs, zero_init=zero_init)
    self.conv1 = conv(3, 64, 11, 4, 2)
    self.conv2 = conv(64, 192, 5, 1, 2)
    self.conv3 = conv(192, 384, 3, 1, 1)
    self.conv4 = conv(384, 256, 3, 1, 1)
    self.conv5 = conv(256, 256, 3, 1, 1)
    self.fc6 = _linear(6 * 6 * 256, 4096, rngs=rngs, zero_init=zero_init)
    self.fc7 = _linear(4096, 4096, rngs=rngs, zero_init=zero_init)
    self.head = nnx.Linear(4096, num_classes, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x):
    x = _max_pool(nnx.relu(self.conv1(x)), 3, 2)
    x = _max_pool(nnx.relu(self.conv2(x)), 3, 2)
    x = nnx.relu(self.conv3(x))
    x = nnx.relu(self.conv4(x))
    x = _max_pool(nnx.relu(self.conv5(x)), 3, 2)
    x = adaptive_avg_pool(x, 6).reshape(x.shape[0], -1)  # NHWC flatten order
    x = nnx.relu(self.fc6(self.dropout(x)))
    x = nnx.relu(self.fc7(self.dropout(x)))
    return self.head(x)


class VGG16(nnx.Module):
  """VGG16 with Keras layer names (block1_conv1 ... block5_conv3, fc1, fc2, head)."""

  def __init__(self, num_classes=1000, *, dropout=0.5, zero_init=False, rngs: nnx.Rngs):
    cin = 3
    for b, widths in enumerate(VGG16_BLOCKS, 1):
      for i, cout in enumerate(widths, 1):
        setattr(self, f'block{b}_conv{i}',
                _conv(cin, cout, 3, 1, 1, rngs=rngs, zero_init=zero_init))
        cin = cout
    self.fc1 = _linear(7 * 7 * 512, 4096, rngs=rngs, zero_init=zero_init)
    self.fc2 = _linear(4096, 4096, rngs=rngs, zero_init=zero_init)
    self.head = nnx.Linear(4096, num_classes, rngs=rngs)
    # torchvision drops out after fc1 and fc2; Keras has no dropout (same in eval mode).
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x):
    for b, widths in enumerate(VGG16_BLOCKS, 1):
      for i in range(1, len(widths) + 1):
        x = nnx.relu(getattr(self, f'block{b}_conv{i}')(x))
      x = _max_pool(x, 2, 2)
    x = adaptive_avg_pool(x, 7).reshape(x.shape[0], -1)
    x = self.dropout(nnx.relu(self.fc1(x)))
    x = self.dropout(nnx.relu(self.fc2(x)))
    return self.head(x)


class FrozenBatchNorm(nnx.Module):
  """BatchNorm that always uses its stored statistics (no `use_running_average` flag).

  Frozen layers keep their ImageNet statistics: with batches of 4 the batch statistics
  would be noise. Variables are named as nnx.BatchNorm's so checkpoints fit either.
  """

  def __init__(self, num_features, *, epsilon):
    self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
    self.epsilon = epsilon

  def __call__(self, x):
    inv = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
    return (x - self.mean[...]) * inv + self.bias[...]


class Bottleneck(nnx.Module):
  """ResNet bottleneck: 1x1, 3x3, 1x1 (x4 channels), projection shortcut when needed."""

  def __init__(self, cin, width, stride, *, flavour, frozen, zero_init, rngs: nnx.Rngs):
    keras = flavour == 'keras'
    stride1, stride3 = (stride, 1) if keras else (1, stride)
    conv = functools.partial(_conv, rngs=rngs, use_bias=keras, zero_init=zero_init)
    if frozen:
      bn = functools.partial(FrozenBatchNorm, epsilon=BN_EPSILON[flavour])
    else:
      # Flax momentum 0.9 is torch's 0.1: running = 0.9 running + 0.1 batch.
      bn = functools.partial(layers.BatchNorm, momentum=0.9, epsilon=BN_EPSILON[flavour],
                             rngs=rngs)
    cout = 4 * width
    self.conv1, self.bn1 = conv(cin, width, 1, stride1, 0), bn(width)
    self.conv2, self.bn2 = conv(width, width, 3, stride3, 1), bn(width)
    self.conv3, self.bn3 = conv(width, cout, 1, 1, 0), bn(cout)
    if stride != 1 or cin != cout:
      self.downsample_conv, self.downsample_bn = conv(cin, cout, 1, stride, 0), bn(cout)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x):
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = nnx.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    if self.downsample_conv is not None:
      x = self.downsample_bn(self.downsample_conv(x))
    return nnx.relu(x + y)


class ResNet101(nnx.Module):
  """ResNet-101 (torchvision names: conv1, bn1, layer1..layer4, head); see module doc."""

  def __init__(self, num_classes=1000, *, flavour='keras', zero_init=False, rngs: nnx.Rngs):
    if flavour not in SOURCES:
      raise ValueError(f'ResNet101 flavour {flavour!r}: use one of {SOURCES}.')
    self.conv1 = _conv(3, 64, 7, 2, 3, rngs=rngs, use_bias=flavour == 'keras',
                       zero_init=zero_init)
    self.bn1 = FrozenBatchNorm(64, epsilon=BN_EPSILON[flavour])
    cin = 64
    for s, (width, blocks, stride) in enumerate(RESNET101_STAGES, 1):
      layer = []
      for i in range(blocks):
        layer.append(Bottleneck(cin, width, stride if i == 0 else 1, flavour=flavour,
                                frozen=s < 4, zero_init=zero_init, rngs=rngs))
        cin = 4 * width
      setattr(self, f'layer{s}', nnx.List(layer))
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def __call__(self, x):
    # Max pooling after ReLU: torch's -inf padding and Keras' zero padding agree.
    x = _max_pool(nnx.relu(self.bn1(self.conv1(x))), 3, 2, pad=1)
    for s in range(1, 5):
      for block in getattr(self, f'layer{s}'):
        x = block(x)
    return self.head(jnp.mean(x, axis=(1, 2)))


def create_model(arch, num_classes=1000, *, source='keras', dropout=0.5, zero_init=False,
                 rngs: nnx.Rngs):
  """Builds `arch` with a `num_classes` head; `source` picks ResNet-101's flavour.

  zero_init: start every layer but the head at zero, for weights restored right after.
  """
  if arch == 'alexnet':
    return AlexNet(num_classes, dropout=dropout, zero_init=zero_init, rngs=rngs)
  if arch == 'vgg16':
    return VGG16(num_classes, dropout=dropout, zero_init=zero_init, rngs=rngs)
  if arch == 'resnet101':
    return ResNet101(num_classes, flavour=source, zero_init=zero_init, rngs=rngs)
  raise ValueError(f'unknown transfer architecture {arch!r}; use one of {", ".join(ARCHS)}.')


def is_trainable(arch, path):
  """Whether the variable at state path `path` (a tuple of keys) is fine-tuned."""
  return bool(path) and str(path[0]) in TRAINABLE[arch]
