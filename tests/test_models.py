"""Output shapes and parameter counts of the paper's networks, from its layer lists."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
import pytest

from cisl_jax import models
from cisl_jax.models import cvae_gan


def num_params(module) -> int:
  """Trainable parameters: kernels, biases and BatchNorm scale/bias (no running stats)."""
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def conv(k, cin, cout):
  return k * k * cin * cout + cout  # kernel + bias


def fc(cin, cout):
  return cin * cout + cout


BN = lambda c: 2 * c  # scale + bias


def test_classifier_ten_classes_has_the_papers_parameter_count():
  model = models.Classifier(10, rngs=nnx.Rngs(0))
  assert num_params(model) == 17_867_914


@pytest.mark.parametrize('num_classes', [2, 10])
def test_classifier_layer_list(num_classes):
  expected = (conv(5, 1, 32)  # (1) conv 32 s1, ReLU (no BN)
              + conv(5, 32, 64) + BN(64)  # (2) conv 64 s2, BN
              + conv(5, 64, 128) + BN(128)  # (3) conv 128 s2, BN
              + conv(5, 128, 256) + BN(256)  # (4) conv 256 s2, BN -> 8x8x256
              + fc(8 * 8 * 256, 1024) + BN(1024)  # (5) FC 1024, BN, dropout
              + fc(1024, num_classes))  # (6) FC 2/10
  model = models.Classifier(num_classes, rngs=nnx.Rngs(0))
  assert num_params(model) == expected
  model.eval()
  assert model(jnp.zeros((3, 64, 64, 1))).shape == (3, num_classes)


def test_encoder_layer_list_and_shapes():
  expected = (conv(5, 1 + 9, 32)  # (1) conv 32 s2 on image + 9 one-hot channels, LReLU
              + conv(5, 32, 64) + BN(64)  # (2) conv 64 s2, BN
              + conv(5, 64, 128) + BN(128)  # (3) conv 128 s2, BN
              + conv(5, 128, 256) + BN(256)  # (4) conv 256 s2, BN -> 4x4x256
              + fc(4 * 4 * 256, 1024) + BN(1024)  # (5) FC 1024, BN
              + fc(1024, 128) + BN(128))  # (6) FC 128 = 2 x latent 64, BN
  enc = models.Encoder(9, 64, rngs=nnx.Rngs(0))
  assert num_params(enc) == expected
  mu, logvar = enc(jnp.zeros((2, 64, 64, 1)), jax.nn.one_hot(jnp.array([0, 8]), 9))
  assert mu.shape == logvar.shape == (2, 64)


@pytest.mark.parametrize('output_batchnorm', [False, True])
def test_decoder_layer_list_and_shapes(output_batchnorm):
  expected = (fc(64 + 9, 1024) + BN(1024)  # (1) FC 1024 on z + one-hot, BN
              + fc(1024, 4096) + BN(4096)  # (2) FC 4096 = 4x4x256, BN
              + conv(5, 256, 128) + BN(128)  # (3) deconv 128 s2, BN -> 8x8
              + conv(5, 128, 64) + BN(64)  # (4) deconv 64 s2, BN -> 16x16
              + conv(5, 64, 32) + BN(32)  # (5) deconv 32 s2, BN -> 32x32
              + conv(5, 32, 1)  # (6) deconv 1 s2 -> 64x64, tanh
              + (BN(1) if output_batchnorm else 0))  # the paper's BN before tanh
  dec = models.Decoder(9, 64, output_batchnorm=output_batchnorm, rngs=nnx.Rngs(0))
  assert num_params(dec) == expected
  x = dec(3.0 * jax.random.normal(jax.random.key(1), (4, 64)),
          jax.nn.one_hot(jnp.arange(4), 9))
  assert x.shape == (4, 64, 64, 1)
  assert float(jnp.abs(x).max()) <= 1.0


@pytest.mark.parametrize('num_outputs', [1, 9])
def test_critic_layer_list_and_features(num_outputs):
  expected = (conv(5, 1, 32) + BN(32)  # (1) conv 32 s1, BN
              + conv(5, 32, 64) + BN(64)  # (2) conv 64 s2, BN
              + conv(5, 64, 128) + BN(128)  # (3) conv 128 s2, BN -> 16x16x128
              + fc(16 * 16 * 128, 512) + BN(512)  # (4) FC 512, BN -> features
              + fc(512, num_outputs))  # (5) FC 1 (sigmoid) / 9 (softmax)
  critic = models.Critic(num_outputs, rngs=nnx.Rngs(0))
  assert num_params(critic) == expected
  logits, features = critic(jnp.zeros((2, 64, 64, 1)))
  assert logits.shape == (2, num_outputs) and features.shape == (2, 512)
  # features are the input of the last FC layer
  np.testing.assert_allclose(features @ critic.fc5.kernel[...] + critic.fc5.bias[...],
                             logits, rtol=1e-5, atol=1e-5)


def test_width_scales_channels_and_hidden_units_but_not_latent():
  gan = models.CVAEGAN(9, 64, width=0.25, rngs=nnx.Rngs(0))
  assert gan.encoder.conv1.kernel[...].shape == (5, 5, 10, 8)
  assert gan.encoder.fc6.kernel[...].shape == (256, 128)
  assert gan.decoder.fc2.kernel[...].shape == (256, 4 * 4 * 64)
  assert gan.discriminator.fc4.kernel[...].shape == (16 * 16 * 32, 128)
  clf = models.Classifier(2, width=0.125, rngs=nnx.Rngs(0))
  assert clf.fc5.kernel[...].shape == (8 * 8 * 32, 128)
  y = jax.nn.one_hot(jnp.array([1, 2]), 9)
  mu, logvar = gan.encoder(jnp.zeros((2, 64, 64, 1)), y)
  assert mu.shape == (2, 64)
  assert gan.decoder(mu, y).shape == (2, 64, 64, 1)
  assert gan.generate(jax.random.key(0), y).shape == (2, 64, 64, 1)


def test_train_and_eval_modes():
  model = models.Classifier(10, width=0.125, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (8, 64, 64, 1))
  model.train()
  a, b = model(x), model(x)
  assert not np.allclose(a, b)  # dropout draws fresh masks
  stats_before = np.asarray(model.bn5.mean[...])
  model.eval()
  np.testing.assert_array_equal(model(x), model(x))
  assert np.array_equal(stats_before, np.asarray(model.bn5.mean[...]))


def test_reparameterize():
  mu, logvar = jnp.full((4096, 2), 3.0), jnp.full((4096, 2), jnp.log(4.0))
  z = cvae_gan.reparameterize(jax.random.key(0), mu, logvar)
  assert abs(float(z.mean()) - 3.0) < 0.1
  assert abs(float(z.std()) - 2.0) < 0.1


def test_batchnorm_updates_inside_jit_match_flax_and_skip_the_sharding_check():
  """layers.BatchNorm: flax's values, without jax building an error text per update."""
  from unittest import mock  # pylint: disable=g-import-not-at-top
  from jax._src.interpreters import partial_eval  # pylint: disable=g-import-not-at-top
  from cisl_jax.models import layers  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import common  # pylint: disable=g-import-not-at-top

  x = jax.random.normal(jax.random.key(0), (8, 5, 5, 3)) * 2 + 1
  ours = layers.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
  flax_bn = nnx.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))

  def forward_twice(graphdef, state, x):
    model = nnx.merge(graphdef, state)
    y = model(model(x, use_running_average=False) * 3 - 1, use_running_average=False)
    return y, nnx.state(model)

  outs = {}
  with mock.patch.object(partial_eval.DynamicJaxprTracer, '_origin_msg',
                         autospec=True, side_effect=lambda self: '') as origin_msg:
    for name, bn in (('ours', ours), ('flax', flax_bn)):
      origin_msg.reset_mock()
      outs[name] = jax.jit(forward_twice, static_argnums=0)(*nnx.split(bn), x)
      outs[name + '_texts'] = origin_msg.call_count
  assert outs['flax_texts'] > 0  # the check this layer exists to skip is still there
  assert outs['ours_texts'] == 0
  np.testing.assert_array_equal(outs['ours'][0], outs['flax'][0])
  for stat in ('mean', 'var'):
    np.testing.assert_array_equal(outs['ours'][1][stat][...], outs['flax'][1][stat][...])
  assert isinstance(ours.mean, nnx.BatchStat)  # BatchStat filters still find it


def _bilinear_x2(x: np.ndarray) -> np.ndarray:
  """Bilinear x2 of NHWC x with half-pixel centres and clamped edges, written out."""
  for axis in (1, 2):
    n = x.shape[axis]
    s = (np.arange(2 * n) + 0.5) / 2 - 0.5
    i0 = np.floor(s).astype(int)
    f = (s - i0).reshape([-1 if a == axis else 1 for a in range(4)])
    lo = np.take(x, np.clip(i0, 0, n - 1), axis=axis)
    hi = np.take(x, np.clip(i0 + 1, 0, n - 1), axis=axis)
    x = lo * (1 - f) + hi * f
  return x


def test_bilinear_resize_conv_values_gradients_and_constant_maps():
  layer = cvae_gan.BilinearResizeConv(3, 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 5, 6, 3))
  y = layer(x)
  assert y.shape == (2, 10, 12, 4)
  kernel, bias = layer.conv.kernel[...], layer.conv.bias[...]
  ref = jax.lax.conv_general_dilated(jnp.asarray(_bilinear_x2(np.asarray(x))), kernel, (1, 1),
                                     'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias
  np.testing.assert_allclose(y, ref, atol=1e-5)
  # The map is affine in x and in the kernel: each gradient must be the transpose of the
  # forward's linear part (<A x, g> == <x, A^T g>), which pins it down exactly.
  g = jax.random.normal(jax.random.key(2), y.shape)
  graphdef, params = nnx.split(layer)
  dx, dp = jax.vjp(lambda x_, p_: nnx.merge(graphdef, p_)(x_), x, params)[1](g)
  np.testing.assert_allclose(float(jnp.sum(x * dx)), float(jnp.sum((y - bias) * g)), rtol=1e-4)
  # ... and linear in (kernel, bias) together.
  np.testing.assert_allclose(float(jnp.sum(kernel * dp['conv']['kernel'][...])
                                   + jnp.sum(bias * dp['conv']['bias'][...])),
                             float(jnp.sum(y * g)), rtol=1e-4)
  assert float(jnp.abs(dx).min()) > 0  # every input pixel reaches the output
  # A constant image stays constant (sum of the kernel plus the bias) away from the
  # 2-pixel border of the 5x5 SAME convolution: no lattice from the upsampling itself.
  y = layer(jnp.full((1, 8, 8, 3), 0.7))
  want = 0.7 * jnp.sum(kernel, axis=(0, 1, 2)) + bias
  np.testing.assert_allclose(y[0, 2:-2, 2:-2], jnp.broadcast_to(want, (12, 12, 4)), atol=1e-5)
  assert float(jnp.abs(y[0, 0, 0] - want).max()) > 1e-3  # the zero-padded border differs


def test_decoder_upsampling_kinds_share_parameters_and_shapes():
  counts = {}
  for kind in ('transposed', 'resize', 'bilinear'):
    dec = models.Decoder(9, 64, width=0.125, upsample=kind, rngs=nnx.Rngs(0))
    counts[kind] = num_params(dec)
    x = dec(jax.random.normal(jax.random.key(1), (2, 64)), jax.nn.one_hot(jnp.arange(2), 9))
    assert x.shape == (2, 64, 64, 1)
  assert counts['transposed'] == counts['resize'] == counts['bilinear']
  with pytest.raises(ValueError, match='bilinear'):
    models.Decoder(9, 64, width=0.125, upsample='nearest', rngs=nnx.Rngs(0))


def test_noise_inputs_start_silent_then_draw_keyed_per_pixel_noise():
  """A decoder with noise inputs starts as the one without (scales 0, the same other
  parameters), learns the scales (non-zero gradient at 0), then draws one noise map per
  key; it refuses a call without a key rather than draw none."""
  kw = dict(width=0.125, upsample='resize', rngs=nnx.Rngs(0))
  plain, noisy = models.Decoder(9, 64, **kw), models.Decoder(9, 64, noise_inputs=True,
                                                            **{**kw, 'rngs': nnx.Rngs(0)})
  assert num_params(noisy) - num_params(plain) == 16 + 8 + 4 + 1  # one scale per channel
  z, y = jax.random.normal(jax.random.key(1), (2, 64)), jax.nn.one_hot(jnp.arange(2), 9)
  key = jax.random.key(2)
  np.testing.assert_array_equal(plain(z, y), noisy(z, y, key))
  with pytest.raises(ValueError, match='noise_key'):
    noisy(z, y)

  noisy.eval()  # running BatchNorm statistics: no state to update under jax.grad
  graphdef, params, rest = nnx.split(noisy, nnx.Param, ...)
  out = lambda p, k: nnx.merge(graphdef, p, rest)(z, y, k)
  grad = jax.grad(lambda p: jnp.sum(out(p, key) ** 2))(params)
  assert all(float(jnp.abs(g.scale[...]).max()) > 0 for g in grad['noise'].values())

  loud = jax.tree.map(lambda a: a, params)  # a copy
  for g in loud['noise'].values():
    g.scale.set_value(jnp.full_like(g.scale[...], 0.5))
  assert float(jnp.abs(params['noise'][0].scale[...]).max()) == 0
  a, again, other = out(loud, key), out(loud, key), out(loud, jax.random.key(3))
  np.testing.assert_array_equal(a, again)
  assert float(jnp.abs(a - other).mean()) > 1e-3
  # Generation draws the code and the noise from one key; without noise inputs the key
  # draws the code alone, as before the option existed.
  noisy_gan = cvae_gan.CVAEGAN(9, 64, width=0.125, noise_inputs=True, rngs=nnx.Rngs(0))
  assert noisy_gan.generate(key, y).shape == (2, 64, 64, 1)
  gan = cvae_gan.CVAEGAN(9, 64, width=0.125, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(gan.generate(key, y),
                                gan.decoder(jax.random.normal(key, (2, 64)), y))


def test_plain_forms_trace_the_plain_maps_with_the_same_values_and_second_derivative():
  """Inside layers.plain_forms() a fast-layer network traces no custom VJP, computes the
  same outputs, and R1's second derivative (the reason for the switch) agrees."""
  from cisl_jax import gan_recipes  # pylint: disable=g-import-not-at-top
  from cisl_jax.models import layers  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
  critic = cvae_gan.Critic(1, width=0.125, image_size=16, rngs=nnx.Rngs(0))  # fast forms
  decoder = models.Decoder(9, 8, width=0.125, upsample='resize', rngs=nnx.Rngs(1))
  graphdef, params, rest = nnx.split(critic, nnx.Param, ...)
  x = jax.random.normal(jax.random.key(2), (4, 16, 16, 1))

  z, y = jnp.ones((2, 8)), jax.nn.one_hot(jnp.arange(2), 9)

  def outputs():
    # New closures on every call: jax reuses a function's earlier trace, and the switch
    # acts at trace time.
    apply = lambda p, img: nnx.merge(graphdef, *common.fresh((p, rest)))(img)[0]
    r1 = lambda p: gan_recipes.r1_penalty(lambda img: (apply(p, img), None), x)[0]
    jaxpr = str(jax.make_jaxpr(apply)(params, x))
    return 'custom_vjp' in jaxpr, (jax.jit(apply)(params, x), decoder(z, y),
                                   jax.jit(jax.grad(r1))(params))

  custom, fast = outputs()
  assert custom
  with layers.plain_forms():
    custom, plain = outputs()
  assert not custom
  assert layers.fast_forms_enabled()  # restored on leaving
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):  # float rounding apart
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(plain[2])) > 0


def test_critic_widths_scale_their_own_network_alone():
  """`discriminator_width` widens D only (`classifier_width` C only, `decoder_width` the
  decoder only); unset, every network
  is initialised as before the options existed (same values), so older checkpoints
  restore."""
  same = lambda a, b: jax.tree.all(jax.tree.map(lambda u, v: bool((u == v).all()), a, b))
  base = cvae_gan.CVAEGAN(9, 64, width=0.125, rngs=nnx.Rngs(0))
  unset = cvae_gan.CVAEGAN(9, 64, width=0.125, discriminator_width=None, rngs=nnx.Rngs(0))
  wide = cvae_gan.CVAEGAN(9, 64, width=0.125, discriminator_width=0.5, rngs=nnx.Rngs(0))
  assert same(nnx.state(base), nnx.state(unset))
  for name in ('encoder', 'decoder', 'classifier'):
    assert same(nnx.state(getattr(base, name)), nnx.state(getattr(wide, name))), name
  assert wide.discriminator.conv1.out_features == 16  # 32 x 0.5
  assert base.discriminator.conv1.out_features == 4  # 32 x 0.125
  logits, features = wide.discriminator(jnp.zeros((2, 64, 64, 1)))
  assert logits.shape == (2, 1) and features.shape == (2, 256)  # FC 512 x 0.5
  # A stride-2 first layer: the FC layer reads an 8x8 map instead of 16x16.
  strided = cvae_gan.CVAEGAN(9, 64, width=0.125, discriminator_width=0.5,
                             discriminator_first_stride=2, rngs=nnx.Rngs(0))
  assert strided.discriminator.fc4.in_features == 8 * 8 * 64
  assert wide.discriminator.fc4.in_features == 16 * 16 * 64
  assert strided.discriminator(jnp.zeros((2, 64, 64, 1)))[0].shape == (2, 1)
  # decoder_width: the decoder alone, 8 channels at 32x32 instead of 4.
  wide_g = cvae_gan.CVAEGAN(9, 64, width=0.125, decoder_width=0.25, rngs=nnx.Rngs(0))
  for name in ('encoder', 'discriminator', 'classifier'):
    assert same(nnx.state(getattr(base, name)), nnx.state(getattr(wide_g, name))), name
  assert wide_g.decoder.bn5.num_features == 8 and base.decoder.bn5.num_features == 4
  assert wide_g.generate(jax.random.key(0), jnp.eye(9)[:2]).shape == (2, 64, 64, 1)
  # The auxiliary classifier's pair acts on C alone.
  c_wide = cvae_gan.CVAEGAN(9, 64, width=0.125, classifier_width=0.5,
                            classifier_first_stride=2, rngs=nnx.Rngs(0))
  assert c_wide.classifier.fc4.in_features == 8 * 8 * 64
  assert same(nnx.state(base.discriminator), nnx.state(c_wide.discriminator))
  assert c_wide.classifier(jnp.zeros((2, 64, 64, 1)))[0].shape == (2, 9)
  with pytest.raises(ValueError, match='first_stride'):
    cvae_gan.Critic(1, width=0.125, first_stride=4, rngs=nnx.Rngs(0))


def test_projection_discriminator_starts_unconditional_and_then_reads_the_sign():
  """`discriminator_projection`: D's logit gains <V y, features> (Miyato & Koyama 2018).
  V starts at 0, so the new D computes the unconditional one, and no other weight moves
  (older checkpoints and seeds keep their networks); once V is set, the same image gets
  another logit under another sign, and a projection D refuses a call without y."""
  same = lambda a, b: jax.tree.all(jax.tree.map(lambda u, v: bool((u == v).all()), a, b))
  base = cvae_gan.CVAEGAN(9, 64, width=0.125, rngs=nnx.Rngs(0))
  proj = cvae_gan.CVAEGAN(9, 64, width=0.125, discriminator_projection=True,
                          rngs=nnx.Rngs(0))
  for name in ('encoder', 'decoder', 'classifier'):
    assert same(nnx.state(getattr(base, name)), nnx.state(getattr(proj, name))), name
  assert base.discriminator.projection is None
  assert proj.discriminator.projection[...].shape == (9, 64)  # 9 signs x FC 512 x 0.125
  x = jax.random.normal(jax.random.key(1), (4, 64, 64, 1))
  y = jnp.eye(9)[jnp.array([0, 3, 5, 8])]
  np.testing.assert_array_equal(proj.discriminator(x, y)[0], base.discriminator(x)[0])
  proj.discriminator.projection[...] = jax.random.normal(jax.random.key(2), (9, 64))
  logits, features = proj.discriminator(x, y)
  other, _ = proj.discriminator(x, jnp.roll(y, 1, axis=0))
  assert not np.allclose(logits, other)
  expected = base.discriminator(x)[0][:, 0] + jnp.sum(
      (y @ proj.discriminator.projection[...]) * features, -1)
  np.testing.assert_allclose(logits[:, 0], expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='y_onehot'):
    proj.discriminator(x)
