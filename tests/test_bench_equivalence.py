"""The fast convolution forms give the straightforward results (issues 5 and 16).

Layer level: values and gradients against lax; step level: the project's real
classifier step and CVAE-GAN iteration, a few steps each, fast vs plain nnx layers.
"""
import pathlib

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from flax import nnx
import pytest

from cisl_jax import config_lib
from cisl_jax.models import classifier as classifier_lib
from cisl_jax.models import conv_matmul
from cisl_jax.models import layers

DN = ('NHWC', 'HWIO', 'NHWC')
CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'


def load_config(name):
  config = config_lib.load(CONFIGS / f'{name}.py', 'quick')
  config.unlock()
  config.width, config.batch_size = 0.125, 8
  return config


@pytest.mark.parametrize('shape,kernel', [((2, 8, 8, 3), (5, 5, 3, 4)),
                                          ((2, 12, 8, 2), (5, 5, 2, 3)),
                                          ((1, 6, 6, 2), (3, 3, 2, 2)),
                                          ((1, 4, 4, 2), (4, 4, 2, 3))])
def test_conv_forms_match_lax_values_and_gradients(shape, kernel):
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel)
  pairs = [
      (layers.conv_stride2,
       lambda a, b: lax.conv_general_dilated(a, b, (2, 2), 'SAME', dimension_numbers=DN)),
      (layers.conv_transpose_stride2,
       lambda a, b: lax.conv_transpose(a, b, (2, 2), 'SAME', dimension_numbers=DN)),
  ]
  for fast, plain in pairs:
    np.testing.assert_allclose(fast(x, w), plain(x, w), atol=1e-4)
    loss = lambda f: (lambda a, b: jnp.sum(jnp.sin(f(a, b))))
    g_fast = jax.grad(loss(fast), (0, 1))(x, w)
    g_plain = jax.grad(loss(plain), (0, 1))(x, w)
    for a, b in zip(g_fast, g_plain):
      np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('shape,k', [((2, 8, 8, 3), 5), ((2, 7, 9, 2), 5), ((1, 6, 6, 2), 4)])
def test_tap_matmul_kernel_gradient_matches_lax(shape, k, stride):
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], 3))
  conv = lambda b: lax.conv_general_dilated(x, b, (stride, stride), 'SAME',
                                            dimension_numbers=DN)
  y, vjp = jax.vjp(conv, w)
  g = jax.random.normal(jax.random.key(2), y.shape)
  np.testing.assert_allclose(conv_matmul.kernel_grad(x, g, k, stride), vjp(g)[0], atol=1e-4)


@pytest.mark.parametrize('shape,out', [((2, 4, 4, 3), 1), ((1, 5, 7, 2), 3),
                                       ((2, 8, 6, 4), 1), ((1, 3, 3, 1), 4)])
def test_resize_conv_matches_upsample_then_conv_values_and_gradients(shape, out):
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), (5, 5, shape[-1], out))
  plain = lambda a, b: lax.conv_general_dilated(
      jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2), b, (1, 1), 'SAME',
      dimension_numbers=DN)
  fast = layers.resize_conv_stride1
  assert fast(x, w).shape == (shape[0], 2 * shape[1], 2 * shape[2], out)
  np.testing.assert_allclose(fast(x, w), plain(x, w), atol=1e-4)
  loss = lambda f: (lambda a, b: jnp.sum(jnp.sin(f(a, b))))
  for a, b in zip(jax.grad(loss(fast), (0, 1))(x, w), jax.grad(loss(plain), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_resize_conv_layer_fast_and_plain_share_parameters_and_results():
  from cisl_jax.models import cvae_gan  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  fast, plain = (cvae_gan.ResizeConv(3, 2, nnx.Rngs(0), fast_conv=f) for f in (True, False))
  assert (jax.tree.structure(nnx.state(fast, nnx.Param))
          == jax.tree.structure(nnx.state(plain, nnx.Param)))
  np.testing.assert_allclose(fast(x), plain(x), atol=1e-5)


def test_odd_sizes_fall_back_to_plain_layers():
  layer = layers.Conv2x(2, 3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 7, 7, 2))
  plain = nnx.Conv(2, 3, (5, 5), 2, padding='SAME', rngs=nnx.Rngs(0))
  np.testing.assert_allclose(layer(x), plain(x), atol=1e-5)


def test_classifier_steps_match_plain_layers():
  from cisl_jax.train import classifier as train_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  tx = optax.adam(1e-3)
  x = jax.random.normal(jax.random.key(2), (8, 64, 64, 1))
  batch = {'image': x, 'label': jnp.arange(8) % 10}
  results = []
  for fast in (True, False):
    key = jax.random.key(0)
    model = classifier_lib.Classifier(10, width=0.125, fast_conv=fast,
                                      rngs=nnx.Rngs(params=key, dropout=key))
    graphdef, state = common.split_model(model)
    state['opt_state'] = tx.init(state['params'])
    state['step'] = jnp.zeros((), jnp.int32)
    step = train_lib.make_train_step(tx)
    losses = []
    for _ in range(3):
      state, metrics = step(graphdef, state, batch, jax.random.key(3))
      losses.append(float(metrics['loss']))
    results.append(losses)
  np.testing.assert_allclose(results[0], results[1], rtol=1e-4)


def test_cvaegan_iterations_match_plain_layers():
  """(R1's second derivative runs the plain forms in both: test_models.py.)"""
  from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import gan  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  config = load_config('train_gan')
  # The demo's decoder: nearest-resize upsampling (resize_conv_stride1 when fast).
  assert config.gan.recipe == 'improved' and config.gan.improved.upsample == 'resize'
  batch = {'image': jax.random.uniform(jax.random.key(4), (8, 64, 64, 1), minval=-1,
                                       maxval=1),
           'label': jnp.arange(8) % 9}
  # Plain SGD, not the config's Adam: Adam's first update is lr * sign(g), so float
  # rounding on a gradient that is zero in exact arithmetic (a bias before BatchNorm)
  # flips a whole lr-sized step, and the forms' different summation orders make the
  # next losses differ by ~3e-4 with no error anywhere. SGD's update is proportional to
  # the gradient, so the second iteration's losses check the first one's gradients.
  tx = optax.sgd(1e-3)
  results = []
  for fast in (True, False):
    config.fast_conv = fast
    init_key, _, train_key = common.split_keys(0)
    graphdef, state = gan.init_state(config, init_key, tx)
    step = gan.make_train_step(config, tx)
    out = []
    for _ in range(2):
      state, metrics = step(graphdef, state, batch, train_key)
      out.append([float(metrics[k]) for k in ('loss_c', 'loss_d', 'loss_g')])
    results.append(out)
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)  # the first forward
  # With the quick config's wide, strided critic (since the fifteenth session) rounding
  # alone moves the second iteration's losses by up to ~3e-4 relative: the plain forms on
  # the batch scaled by 1 + 1e-7 gave loss_d 2.584998 against 2.584265 and loss_g 209.916
  # against 209.895 (some of D's first gradients are small sums of near-cancelling terms).
  # A wrong gradient in a fast form moves them by a share of the update, far more.
  rtol = 5e-4
  # The update moved every loss well beyond the tolerance, so the check can fail.
  assert np.all(np.abs(np.diff(results[1], axis=0)) > 1e-2 * np.abs(results[1][0]))
  np.testing.assert_allclose(results[0], results[1], rtol=rtol, atol=1e-5)


@pytest.mark.parametrize('shape,kernel', [((2, 8, 8, 1), (5, 5, 1, 4)),
                                          ((1, 6, 7, 1), (3, 3, 1, 2)),
                                          ((1, 6, 6, 1), (4, 4, 1, 3))])
def test_tap_sum_conv_matches_lax_values_and_gradients(shape, kernel):
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel)
  plain = lambda a, b: lax.conv_general_dilated(a, b, (1, 1), 'SAME', dimension_numbers=DN)
  np.testing.assert_allclose(layers.conv_tap_sum(x, w), plain(x, w), atol=1e-4)
  loss = lambda f: (lambda a, b: jnp.sum(jnp.sin(f(a, b))))
  for a, b in zip(jax.grad(loss(layers.conv_tap_sum), (0, 1))(x, w),
                  jax.grad(loss(plain), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, atol=1e-4)
