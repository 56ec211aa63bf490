"""CVAE-GAN stage on synthetic patches: one compilation, resume, generation, Fig. 3."""
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from cisl_jax import augment
from cisl_jax import config_lib
from cisl_jax import gan_recipes
from cisl_jax import input_pipeline
from cisl_jax.train import common
from cisl_jax.train import gan
from cisl_jax.train import generate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name, arg='quick'):
  return config_lib.load(ROOT / 'configs' / f'{name}.py', arg)


def fake_load_split(data_dir, source, folds):
  del data_dir, source
  folds = [folds] if np.ndim(folds) == 0 else list(folds)
  parts = []
  for f in folds:
    rng = np.random.default_rng(f)
    labels = np.arange(20) % 10
    images = np.tanh(rng.normal(0, 0.3, (20, 64, 64, 1))
                     + (labels / 10 - 0.5)[:, None, None, None]).astype(np.float32)
    parts.append({'image': images, 'label': labels.astype(np.int64),
                  'fold': np.full(20, f, np.int32)})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def tiny_config():
  c = load_config('train_gan')
  c.width = 0.125
  c.batch_size = 8
  c.num_steps = 4
  c.checkpoint_every = 2
  c.log_every = 2
  c.gan.sample_every = 4
  # Every improved-recipe piece that carries state or changes the model is on, so that
  # the resume test covers the EMA decoder and LeCam anchors in the checkpoint.
  c.gan.recipe = 'improved'
  c.gan.improved.ema_decay = 0.99
  c.gan.improved.lecam_weight = 0.1
  c.gan.improved.class_weight = 1.0
  c.gan.improved.upsample = 'resize'
  c.gan.improved.mode_seeking_weight = 1.0
  c.gan.improved.noise_inputs = True  # the decoder's noise scales and keys
  c.gan.discriminator_width = 0.25  # D wider than the rest, and strided from its first
  c.gan.discriminator_first_stride = 2  # layer: restore must rebuild it so
  return c


def one_iteration(c, tx, recipe, key=1, step=0, images=None):
  """(params, metrics) after one iteration of a fresh tiny run under `recipe` (a recorded
  recipe tuple, so that a test can drop or change one field), numbered `step`, on 8 fake
  patches or on `images`."""
  images = fake_load_split(None, None, 0)['image'][:8] if images is None else images
  batch = {'image': images, 'label': np.arange(8, dtype=np.int32) % 9}
  weights = tuple(sorted((k, float(v)) for k, v in c.gan.loss_weights.items()))
  graphdef, state = gan.init_state(c, jax.random.PRNGKey(0), tx)
  state['step'] = jnp.asarray(step, jnp.int32)
  step = gan._make_train_step(tx, weights, float(c.gan.class_mean_momentum), recipe)  # pylint: disable=protected-access
  state, metrics = step(graphdef, state, batch, jax.random.PRNGKey(key))
  return state['params'], metrics


def read_checkpoint(workdir):
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as m:
    return m.restore(m.latest_step(), args=ocp.args.StandardRestore())


def test_gan_resume_is_bit_identical_compiles_once_and_generates(tmp_path, monkeypatch,
                                                                  run_killed_after):
  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split)
  traces = common.TRACES['gan_train']
  full = str(tmp_path / 'full')
  result = gan.train_and_evaluate(tiny_config(), full)
  assert result['steps'] == 4 and np.isfinite(result['train']['loss_g'])
  assert np.isfinite(result['train']['g_mode_seeking'])  # wired in (fed by pairs of signs)
  assert 0 <= result['held_out']['aux_classifier_accuracy'] <= 1
  assert result['held_out']['num_patches'] == 18  # sign patches only
  # TensorBoard names each sign's row of samples (one unlabelled grid before).
  from cisl_jax import signs  # pylint: disable=g-import-not-at-top
  from cisl_jax.report import figures  # pylint: disable=g-import-not-at-top
  images = figures.read_images(full)
  assert sorted(images) == sorted(f'samples/{s}' for s in signs.SIGNS)
  assert images['samples/GGO'].shape == (64, 4 * 64)

  broken = str(tmp_path / 'broken')
  run_killed_after(3, lambda: gan.train_and_evaluate(tiny_config(), broken))
  gan.train_and_evaluate(tiny_config(), broken)
  a, b = read_checkpoint(full), read_checkpoint(broken)
  assert 'ema' in a and 'lecam' in a  # the averaged decoder travels in the checkpoint
  scales = jax.tree.leaves(a['params']['decoder']['noise'])
  assert len(scales) == 4 and all(np.abs(s).max() > 0 for s in scales)  # learnt from 0
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  # Three runs, 12 iterations: the fused iteration was traced (compiled) once.
  assert common.TRACES['gan_train'] - traces == 1

  g = load_config('generate')
  g.gan_workdir = full
  g.num_per_sign = 5
  g.batch_size = 16
  g.fig3_per_sign = 3
  g.export_npy = g.export_png = True
  g.match_intensities = False  # the decoder's output as it is (the paper's generation)
  out = generate.generate(g, str(tmp_path / 'gen'))
  assert out['num_generated'] == 45
  assert np.load(out['exported']['OP']['npy']).shape == (5, 64, 64)
  assert os.path.isfile(out['exported']['OP']['png'])
  data = input_pipeline.load_generated(os.path.join(str(tmp_path / 'gen'), 'generated'))
  assert data['image'].shape == (45, 64, 64, 1)
  np.testing.assert_array_equal(np.bincount(data['label']), [5] * 9)
  assert np.abs(data['image']).max() <= 1
  assert os.path.getsize(out['fig3']) > 1000
  assert out['intensity_match'] == {} and not (tmp_path / 'gen' / 'generated_raw').exists()

  # Intensity-matched: the decoder's output is kept as it was, the set takes the real
  # training patches' densities sign by sign.
  g.match_intensities = True
  g.export_npy = g.export_png = False
  out = generate.generate(g, str(tmp_path / 'gen_matched'))
  raw = input_pipeline.load_generated(str(tmp_path / 'gen_matched' / 'generated_raw'))
  matched = input_pipeline.load_generated(str(tmp_path / 'gen_matched' / 'generated'))
  np.testing.assert_array_equal(raw['image'], data['image'])
  real = fake_load_split(None, None, (1, 2))  # the GAN's training folds (held out: 0)
  for s in range(9):
    np.testing.assert_allclose(np.median(matched['image'][matched['label'] == s]),
                               np.median(real['image'][real['label'] == s]), atol=0.02)
  assert sorted(out['intensity_match']) == sorted(signs.SIGNS)


def test_paper_recipe_is_the_improved_one_with_every_piece_off():
  """Two iterations of recipe 'paper' and of 'improved' with all pieces off agree bit for
  bit: the paper's objective runs unchanged inside the recipe machinery."""
  batch = {'image': fake_load_split(None, None, 0)['image'][:8],
           'label': np.arange(8, dtype=np.int32) % 9}
  finals = []
  for recipe in ('paper', 'improved'):
    c = tiny_config()
    c.gan.recipe = recipe
    gan_recipes.all_off(c.gan.improved)
    tx = gan.make_optimizer(c)
    graphdef, state = gan.init_state(c, jax.random.PRNGKey(0), tx)
    step = gan.make_train_step(c, tx)
    for _ in range(2):
      state, metrics = step(graphdef, state, batch, jax.random.PRNGKey(1))
    finals.append((state['params'], float(metrics['loss_g']), float(metrics['loss_d'])))
  (pa, ga, da), (pb, gb, db) = finals
  assert (ga, da) == (gb, db)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(x, y)


def test_generated_patches_export_per_sign_as_npy_and_png_grids(tmp_path):
  # generate.py wrote only the TFDS-like set; per-sign PNG grids and NPY are asked for.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 3], [10, 3])  # GGO and CV only
  images = rng.uniform(-1, 1, (len(labels), 64, 64, 1)).astype(np.float32)
  out = generate.export_per_sign(images, labels, str(tmp_path / 'export'), npy=True,
                                 png=True, grid_size=9)
  assert sorted(out) == ['CV', 'GGO']
  np.testing.assert_array_equal(np.load(out['GGO']['npy']), images[:10, ..., 0])
  grid = np.asarray(Image.open(out['GGO']['png']))
  assert grid.shape == (2 * 64, 8 * 64) and grid.dtype == np.uint8  # 9 of 10, 8 a row
  np.testing.assert_allclose(grid[:64, 64:128] / 255, (images[1, ..., 0] + 1) / 2, atol=0.5 / 255 + 1e-6)
  assert (grid[64:, 64:] == 255).all()  # no patch there
  assert Image.open(out['CV']['png']).size == (8 * 64, 64)
  assert sorted(os.listdir(tmp_path / 'export')) == ['CV.npy', 'CV.png', 'GGO.npy', 'GGO.png']
  assert generate.export_per_sign(images, labels, str(tmp_path / 'none'), npy=False,
                                  png=False) == {} and not (tmp_path / 'none').exists()


def test_fig3_labels_every_row_and_marks_signs_without_real_patches(tmp_path):
  # A row without real patches lost its sign's name (its label sat on a hidden axis).
  rng = np.random.default_rng(0)
  real_labels = np.repeat([0, 4], 3)
  labels = generate.fig3_row_labels(real_labels)
  assert labels[0] == 'GGO' and labels[4] == 'spiculation'
  assert labels[1] == 'lobulation\n(no real\npatches)' and len(labels) == 9
  fake_labels = np.repeat(np.arange(9), 2)
  path = generate.fig3(rng.uniform(-1, 1, (6, 64, 64, 1)), real_labels,
                       rng.uniform(-1, 1, (18, 64, 64, 1)), fake_labels, 2,
                       str(tmp_path / 'fig3.png'))
  assert os.path.getsize(path) > 1000


def test_classifier_augment_changes_only_cs_input_and_is_keyed():
  """classifier_augment on changes C's update, the same way for the same key and another
  way for another key. (Off, it is the iteration of a recipe recorded before the field
  existed: test_r1_changes_only_the_discriminators_update.)"""
  c = tiny_config()
  tx = gan.make_optimizer(c)
  one_step = lambda recipe, key=1: one_iteration(c, tx, recipe, key)[0]

  recipe = dict(gan.recipe_settings(c))
  assert recipe['classifier_augment'] == ''
  off = one_step(tuple(sorted(recipe.items())))
  on_recipe = tuple(sorted({**recipe, 'classifier_augment': 'color,translation'}.items()))
  on, again, other = one_step(on_recipe), one_step(on_recipe), one_step(on_recipe, key=2)
  for x, y in zip(jax.tree.leaves(on), jax.tree.leaves(again)):
    np.testing.assert_array_equal(x, y)
  differs = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(a['classifier']), jax.tree.leaves(b['classifier'])))
  assert differs(on, off)
  # Another key draws other noise everywhere; with augmentation off C's update sees no
  # noise at all, so C differs between keys only through the augmentation.
  assert not differs(off, one_step(tuple(sorted(recipe.items())), key=2))
  assert differs(on, other)


def test_intensity_matching_moves_only_the_generator():
  """intensity_weight > 0 adds the prior samples' intensity-histogram term to E+G's loss
  alone: C's update (before the forward) is bit-identical, D's matches up to the float
  rounding of a differently fused forward, the decoder moves."""
  c = tiny_config()
  tx = optax.sgd(1e-2)  # SGD: see test_r1_changes_only_the_discriminators_update
  recipe = dict(gan.recipe_settings(c))
  assert recipe['intensity_weight'] == 0
  off, m_off = one_iteration(c, tx, tuple(sorted(recipe.items())))
  on, m_on = one_iteration(c, tx, tuple(sorted({**recipe, 'intensity_weight': 1.0}.items())))
  assert 'g_intensity_prior' not in m_off and float(m_on['g_intensity_prior']) > 0
  for x, y in zip(jax.tree.leaves(on['classifier']), jax.tree.leaves(off['classifier'])):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(jax.tree.leaves(on['discriminator']), jax.tree.leaves(off['discriminator'])):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  moved = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(
      jax.tree.leaves(on['decoder']), jax.tree.leaves(off['decoder'])))
  assert moved > 1e-5


def test_real_symmetry_is_the_iteration_on_the_mirrored_batch():
  """real_symmetry transforms the real patches once, before every network: the iteration
  equals the one without it fed the same patches under the symmetries that its key
  draws (fold_in(fold_in(key, step), 5)); another key draws others."""
  c = tiny_config()
  tx = optax.sgd(1e-2)  # SGD: see test_r1_changes_only_the_discriminators_update
  recipe = dict(gan.recipe_settings(c))
  assert recipe['real_symmetry'] == ''
  images = fake_load_split(None, None, 0)['image'][:8]
  on_recipe = tuple(sorted({**recipe, 'real_symmetry': 'dihedral'}.items()))
  on, _ = one_iteration(c, tx, on_recipe, key=1, step=3)
  key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(1), 3), 5)
  mirrored = np.asarray(augment.random_symmetry(key, jnp.asarray(images), 'dihedral'))
  assert not np.array_equal(mirrored, images)
  by_hand, _ = one_iteration(c, tx, tuple(sorted(recipe.items())), key=1, step=3,
                             images=mirrored)
  for x, y in zip(jax.tree.leaves(on), jax.tree.leaves(by_hand)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  plain, _ = one_iteration(c, tx, tuple(sorted(recipe.items())), key=1, step=3)
  assert any(not np.allclose(x, y) for x, y in zip(
      jax.tree.leaves(on['classifier']), jax.tree.leaves(plain['classifier'])))


def test_r1_changes_only_the_discriminators_update():
  """r1_gamma > 0 adds D's gradient penalty to D's loss alone, lazily: on an iteration
  that r1_every divides, at r1_every times gamma, one iteration moves D elsewhere, while
  C's update (before it) is bit-identical and E+G's matches up to the float rounding of
  a differently fused forward; on the others the iteration is the one without R1. Off,
  R1, classifier_augment, noise_inputs, intensity_weight, real_symmetry and color_strength
  (at 1) give,
  bit for bit, the iteration of a recipe without their fields (a workdir recorded before
  they existed)."""
  c = tiny_config()
  c.gan.improved.noise_inputs = False  # off, as in a recipe recorded before the field
  # SGD, not Adam: Adam's first update is lr * sign(g), so float rounding on a gradient
  # that is zero in exact arithmetic would flip a whole step (test_bench_equivalence).
  tx = optax.sgd(1e-2)
  one_step = lambda recipe, step=0: one_iteration(c, tx, recipe, step=step)

  recipe = dict(gan.recipe_settings(c))
  assert recipe['r1_gamma'] == 0
  off_recipe = tuple(sorted(recipe.items()))
  (off, m_off), (old, _) = one_step(off_recipe), one_step(
      tuple(sorted((k, v) for k, v in recipe.items()
                   if not k.startswith('r1_')
                   and k not in ('classifier_augment', 'noise_inputs',
                                 'intensity_weight', 'color_strength', 'real_symmetry'))))
  for x, y in zip(jax.tree.leaves(off), jax.tree.leaves(old)):
    np.testing.assert_array_equal(x, y)
  on_recipe = tuple(sorted({**recipe, 'r1_gamma': 10.0, 'r1_every': 2}.items()))
  on, m_on = one_step(on_recipe)
  assert 'g_r1' not in m_off and float(m_on['g_r1']) > 0
  np.testing.assert_allclose(float(m_on['loss_d']) - float(m_off['loss_d']),
                             2 * 10.0 * float(m_on['g_r1']), rtol=1e-4)
  # Iteration 1 is between two lazy R1 iterations: no penalty, the same update.
  (between, m_between), (off_1, m_off_1) = one_step(on_recipe, 1), one_step(off_recipe, 1)
  assert float(m_between['g_r1']) == 0
  np.testing.assert_allclose(float(m_between['loss_d']), float(m_off_1['loss_d']), rtol=1e-6)
  for x, y in zip(jax.tree.leaves(between), jax.tree.leaves(off_1)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  for x, y in zip(jax.tree.leaves(on['classifier']), jax.tree.leaves(off['classifier'])):
    np.testing.assert_array_equal(x, y)
  for net in ('encoder', 'decoder'):
    for x, y in zip(jax.tree.leaves(on[net]), jax.tree.leaves(off[net])):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  moved = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(
      jax.tree.leaves(on['discriminator']), jax.tree.leaves(off['discriminator'])))
  assert moved > 1e-5


def test_discriminator_projection_learns_per_sign_directions_and_is_off_by_default():
  """With config.gan.discriminator_projection, one iteration moves D's projection from 0
  (D's loss reads the sign); without it, D has no projection parameter."""
  c = tiny_config()
  c.gan.discriminator_projection = True
  tx = optax.sgd(1e-2)
  params, metrics = one_iteration(c, tx, gan.recipe_settings(c))
  assert np.isfinite(float(metrics['loss_d']))
  moved = np.asarray(params['discriminator']['projection'][...])
  assert moved.shape == (9, 128) and np.abs(moved).max() > 0  # FC 512 x 0.25
  _, state = gan.init_state(tiny_config(), jax.random.PRNGKey(0), tx)
  assert 'projection' not in state['params']['discriminator']
