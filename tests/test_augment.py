"""The traditional augmentation: identity, each transform's range, flips, jit; and the
lossless random symmetries of the GAN's real patches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cisl_jax import augment
from cisl_jax import config_lib

SIZE = 64
NONE = dict(rotation=0.0, shift=0.0, shear=0.0, zoom=(1.0, 1.0), horizontal_flip=False,
            vertical_flip=False)


def only(**kw):
  return {**NONE, **kw}


def blob(row, col, batch=64):
  """A small Gaussian spot at (row, col), as a batch of identical images."""
  r, c = jnp.meshgrid(jnp.arange(SIZE), jnp.arange(SIZE), indexing='ij')
  img = jnp.exp(-((r - row) ** 2 + (c - col) ** 2) / 2.0)
  return jnp.broadcast_to(img[None, :, :, None], (batch, SIZE, SIZE, 1))


def centroids(images):
  r, c = jnp.meshgrid(jnp.arange(SIZE), jnp.arange(SIZE), indexing='ij')
  w = images[..., 0]
  total = w.sum((1, 2))
  return (w * r).sum((1, 2)) / total, (w * c).sum((1, 2)) / total


def test_identity_setting_changes_nothing():
  x = jax.random.uniform(jax.random.key(0), (4, SIZE, SIZE, 1), minval=-1, maxval=1)
  np.testing.assert_array_equal(augment.augment_batch(jax.random.key(1), x, NONE), x)


def test_rotation_angle_stays_in_range_and_matches_sampled():
  centre = (SIZE - 1) / 2
  x = blob(centre, centre + 20)  # a spot 20 px right of the centre
  key = jax.random.key(3)
  y = augment.augment_batch(key, x, only(rotation=30.0))
  r, c = centroids(y)
  measured = np.degrees(np.arctan2(np.asarray(r) - centre, np.asarray(c) - centre))
  assert np.abs(measured).max() <= 30.5
  assert np.abs(measured).max() > 20  # the range is used, not collapsed to 0
  sampled = augment.sample_params(key, x.shape[0], augment.ranges_from(only(rotation=30.0)))
  np.testing.assert_allclose(np.abs(measured), np.abs(sampled['rotation']), atol=1.0)


def test_shift_range():
  centre = (SIZE - 1) / 2
  y = augment.augment_batch(jax.random.key(4), blob(centre, centre), only(shift=0.1))
  r, c = centroids(y)
  for d in (np.asarray(r) - centre, np.asarray(c) - centre):
    assert np.abs(d).max() <= 0.1 * SIZE + 0.2
    assert np.abs(d).max() > 0.05 * SIZE


@pytest.mark.parametrize('field,value', [('rotation', 30.0), ('shift', 0.1), ('shear', 10.0)])
def test_sampled_parameters_in_range(field, value):
  p = augment.sample_params(jax.random.key(5), 4096, augment.ranges_from(only(**{field: value})))
  names = {'shift': ('shift_x', 'shift_y')}.get(field, (field,))
  for name in names:
    v = np.asarray(p[name])
    assert v.min() >= -value and v.max() <= value
    assert v.min() < -0.9 * value and v.max() > 0.9 * value


def test_zoom_scales_distances_within_range():
  centre = (SIZE - 1) / 2
  x = blob(centre, centre + 20)
  y = augment.augment_batch(jax.random.key(6), x, only(zoom=(0.9, 1.1)))
  _, c = centroids(y)
  # The output->input map scales coordinates by zoom, so the spot lands at 20 / zoom.
  ratio = 20.0 / (np.asarray(c) - centre)
  assert ratio.min() >= 0.9 - 0.01 and ratio.max() <= 1.1 + 0.01
  assert ratio.max() - ratio.min() > 0.1


def test_shear_matrix_angle_in_range():
  r = augment.ranges_from(only(shear=10.0))
  p = augment.sample_params(jax.random.key(7), 512, r)
  m = augment.affine_matrices(p, SIZE, SIZE)
  angle = np.degrees(np.arcsin(-np.asarray(m[:, 0, 1])))
  np.testing.assert_allclose(angle, p['shear'], atol=1e-3)
  assert np.abs(angle).max() <= 10.0


def test_flips_give_exact_mirror_images():
  x = jax.random.uniform(jax.random.key(8), (32, SIZE, SIZE, 1))
  y = augment.augment_batch(jax.random.key(9), x, only(horizontal_flip=True,
                                                        vertical_flip=True))
  kinds = set()
  for xi, yi in zip(np.asarray(x), np.asarray(y)):
    options = {'none': xi, 'h': xi[:, ::-1], 'v': xi[::-1], 'hv': xi[::-1, ::-1]}
    match = [k for k, v in options.items() if np.allclose(v, yi, atol=1e-5)]
    assert match, 'a flipped image matches none of the four mirror images'
    kinds.add(match[0])
  assert kinds == {'none', 'h', 'v', 'hv'}


def test_paper_defaults_keep_shape_and_range_and_compile_once():
  x = jax.random.uniform(jax.random.key(10), (8, SIZE, SIZE, 1), minval=-1, maxval=1)
  y = augment.augment_batch(jax.random.key(11), x)
  assert y.shape == x.shape
  assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0  # bilinear never overshoots
  before = augment._augment._cache_size()  # pylint: disable=protected-access
  augment.augment_batch(jax.random.key(12), x, config_lib.augment())
  assert augment._augment._cache_size() == before  # pylint: disable=protected-access


def test_bad_config_names_the_field():
  with pytest.raises(ValueError, match='zoom'):
    augment.augment_batch(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), only(zoom=(1.2, 0.8)))
  with pytest.raises(ValueError, match='vertical_flip'):
    augment.augment_batch(jax.random.key(0), jnp.zeros((1, 8, 8, 1)),
                          {k: v for k, v in NONE.items() if k != 'vertical_flip'})


@pytest.mark.parametrize('group,count', [('flip', 2), ('dihedral', 8)])
def test_random_symmetry_draws_every_element_per_image_and_moves_pixels_only(group, count):
  """Every element of the group occurs, each image draws its own, and an output is the
  input's pixels permuted (the same multiset of values); '' is the identity."""
  images = jax.random.normal(jax.random.key(0), (256, 6, 6, 1))
  out = augment.random_symmetry(jax.random.key(1), jnp.broadcast_to(images[:1], images.shape),
                                group)
  one = np.asarray(images[0])
  candidates = [np.rot90(m, k) for m in (one, one[:, ::-1]) for k in range(4)]
  if group == 'flip':
    candidates = [one, one[:, ::-1]]
  drawn = {next(i for i, cand in enumerate(candidates) if np.array_equal(o, cand))
           for o in np.asarray(out)}
  assert len(drawn) == count
  again = augment.random_symmetry(jax.random.key(1), images, group)
  other = augment.random_symmetry(jax.random.key(2), images, group)
  assert not np.array_equal(again, other)
  np.testing.assert_array_equal(np.sort(np.asarray(again).reshape(256, -1), 1),
                                np.sort(np.asarray(images).reshape(256, -1), 1))
  np.testing.assert_array_equal(augment.random_symmetry(jax.random.key(1), images, ''),
                                images)


def test_random_symmetry_names_the_groups():
  with pytest.raises(ValueError, match='dihedral'):
    augment.random_symmetry(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), 'rot45')
  with pytest.raises(ValueError, match='square'):
    augment.random_symmetry(jax.random.key(0), jnp.zeros((1, 4, 6, 1)), 'dihedral')
