"""The automated Turing test (C2ST): catches fakes that differ, not ones that do not;
quality.csv's columns; the critic's first layer."""
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cisl_jax import c2st

SIGNS = ('A', 'B')


def noise(n, seed, scale=0.5):
  return np.tanh(np.random.default_rng(seed).normal(0, scale, (n, 64, 64, 1))).astype(np.float32)


def test_c2st_catches_blurred_fakes_and_passes_real_ones():
  labels = np.arange(80) % 2
  real = noise(80, 0)
  # Fakes as a CVAE makes them: the mean, no texture.
  blurred = np.zeros_like(real) + real.mean()
  caught = c2st.c2st(real, labels, blurred, labels, SIGNS, steps=60)
  assert caught['overall']['c2st'] >= 0.9
  assert caught['overall']['fake_as_real'] <= 0.1
  assert set(caught['per_sign']) == set(SIGNS) and caught['overall']['n'] == 80
  assert caught['critic'] == {'steps': 60, 'lr': c2st.CONVERGED_LR}
  passed = c2st.c2st(real, labels, noise(80, 1), labels, SIGNS, steps=60)
  assert abs(passed['overall']['c2st'] - 0.5) <= 0.2


def test_a_critic_that_did_not_train_is_trained_again_not_read_as_chance(monkeypatch):
  """A critic that answers the same for every patch of a sign scores exactly 0.5, which
  would read as "indistinguishable"; that half is trained again at a tenth of the rate."""
  labels = np.arange(40) % 2
  real, fake = np.full((40, 64, 64, 1), 0.5, np.float32), np.full((40, 64, 64, 1), -0.5,
                                                                    np.float32)
  rates = []

  def fit(x_tr, y_tr, t_tr, x_te, y_te, *, lr, **unused):
    rates.append(lr)
    if lr == c2st.CONVERGED_LR:  # dead: "real" for everything
      return np.ones(len(y_te), bool)
    return x_te.mean(axis=(1, 2, 3)) > 0  # trained: tells them apart

  monkeypatch.setattr(c2st, '_train_and_predict', fit)
  result = c2st.c2st(real, labels, fake, labels, SIGNS, steps=5)
  assert result['overall']['c2st'] == 1.0
  assert result['critic']['retrained_halves'] == [0, 1]
  lr = c2st.CONVERGED_LR
  assert rates == [lr, lr * c2st.RETRAIN_LR_FACTOR] * 2
  assert 'did not train' in c2st.to_markdown(result)


def test_quality_rows_and_csv():
  m = {'fd': 3.0, 'fd_real_train_vs_held_out': 1.0, 'precision': 0.5, 'recall': float('nan'),
       'diversity': {'ratio': 0.9}, 'memorisation': {'share': 0.6, 'chance': 0.66}}
  results = {'per_sign': {'A': m}, 'overall': m}
  t = {'per_sign': {'A': {'c2st': 0.7}}, 'overall': {'c2st': 0.65}}
  rows = c2st.quality_rows(2, results, t)
  assert [r['sign'] for r in rows] == ['A', 'overall'] and rows[1]['c2st'] == 0.65
  text = c2st.to_csv(rows).splitlines()
  assert text[0] == ('fold,sign,fd,fd_floor,precision,recall,diversity,memorised,'
                     'memorised_chance,c2st,c2st_raw')
  assert text[1] == '2,A,3,1,0.5,,0.9,0.6,0.66,0.7,'  # no intensity match: c2st_raw empty
  raw = {'per_sign': {'A': {'c2st': 0.95}}, 'overall': {'c2st': 0.9}}
  matched = c2st.to_csv(c2st.quality_rows(2, results, t, raw)).splitlines()
  assert matched[1].endswith(',0.7,0.95') and matched[2].endswith(',0.65,0.9')
  md = c2st.to_markdown({'per_sign': {'A': {'c2st': 0.7, 'fake_as_real': 0.2,
                                            'real_as_fake': 0.4, 'n': 5}},
                         'overall': {'c2st': 0.7, 'fake_as_real': 0.2, 'real_as_fake': 0.4,
                                     'n': 5}})
  assert '| A | 5 | 0.700 | 0.200 | 0.400 |' in md and 'radiologist' in md
  assert 'before the match' not in md
  row = {'c2st': 0.7, 'fake_as_real': 0.2, 'real_as_fake': 0.4, 'n': 5}
  md = c2st.to_markdown({'per_sign': {'A': row}, 'overall': row},
                        {'per_sign': {'A': {'c2st': 0.95}}, 'overall': {'c2st': 0.9}})
  assert '| C2ST before the match |' in md and 'intensity-matched' in md
  assert '| A | 5 | 0.700 | 0.200 | 0.400 | 0.950 |' in md
  assert '| **overall** | 5 | 0.700 | 0.200 | 0.400 | 0.900 |' in md
  # A reader can tell how hard the critic tried: its budget is in the section.
  assert 'trained 1200 Adam steps per half at learning rate 0.01' in c2st.to_markdown(
      {'per_sign': {}, 'overall': {'c2st': 0.9, 'fake_as_real': 0.1, 'real_as_fake': 0.1,
                                   'n': 5}, 'critic': {'steps': 1200, 'lr': 1e-2}})


def test_critic_first_layer_is_the_convolution_of_image_and_sign_planes():
  """The first layer's split form (image convolution plus each sign's response map) is the
  stride-2 convolution of the image concatenated with its one-hot sign as constant
  channels, in value and in every parameter's gradient."""
  critic = c2st.Critic(9, 16, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(6, 64, 64, 1)), jnp.float32)
  y1h = jnp.eye(9)[jnp.array([0, 3, 8, 8, 5, 1])]
  conv = critic.convs[0]

  def concatenated(kernel, bias):
    planes = jnp.broadcast_to(y1h[:, None, None, :], (6, 64, 64, 9))
    return jax.lax.conv_general_dilated(jnp.concatenate([x, planes], -1), kernel, (2, 2),
                                        'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias

  def split(kernel, bias):  # the layer's two parameters, as the layer holds them
    layer = types.SimpleNamespace(kernel=kernel, bias=bias)
    return c2st.sign_conditioned_conv(layer, x, y1h)

  params = (conv.kernel[...], conv.bias[...])
  np.testing.assert_allclose(split(*params), concatenated(*params), rtol=1e-5, atol=1e-6)
  weights = jnp.asarray(rng.normal(size=(6, 32, 32, 16)), jnp.float32)
  grad = lambda f: jax.grad(lambda k, b: jnp.sum(f(k, b) * weights), (0, 1))(*params)
  for a, b in zip(grad(split), grad(concatenated)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
