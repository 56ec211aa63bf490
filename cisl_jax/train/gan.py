"""CVAE-GAN training: one fused, jitted iteration updating C, D and encoder+decoder.

One iteration does the same work as the Keras peer's `cvaegan` step:
  1. the auxiliary classifier C: cross-entropy on the real batch (DiffAugmented when
     the improved recipe's classifier_augment is on);
  2. the discriminator D: real as real, reconstruction and prior sample as fake;
  3. encoder E + decoder G together: weighted KL, L2 reconstruction, pairwise feature
     matching on D and C features, mean feature matching of prior samples on D
     features and per class on C features (running class means in the state).
All three updates are one `jax.jit` function over (graphdef, state): a single forward
of E, G, D and C feeds both D's and E+G's gradients (two VJPs of one forward).

State: {'step', 'params', 'batch_stats', 'rngs', 'opt_state' (one Adam per group:
classifier, discriminator, encoder_decoder), 'class_means'}; the improved recipe
(cisl_jax/gan_recipes.py) adds 'lecam' (D's logit anchors) and, with an EMA decoder,
'ema' ({'params', 'batch_stats'} of the averaged decoder, whose BatchNorm statistics
are those of the averaged weights' own forward on each iteration's prior batch).
"""
import functools
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from cisl_jax import augment
from cisl_jax import checkpointing
from cisl_jax import diffaugment
from cisl_jax import gan_recipes
from cisl_jax import input_pipeline
from cisl_jax import losses
from cisl_jax import sharding
from cisl_jax import signs
from cisl_jax import terminal
from cisl_jax import workdir as workdir_lib
from cisl_jax.models import cvae_gan
from cisl_jax.models import layers
from cisl_jax.train import common
from cisl_jax.train import loop

NETS = ('encoder', 'decoder', 'discriminator', 'classifier')
GROUPS = ('classifier', 'discriminator', 'encoder_decoder')


def recipe_settings(config: ml_collections.ConfigDict) -> tuple | None:
  """The improved recipe's pieces as a hashable tuple of (name, value); None: paper."""
  improved = config.gan.improved
  gan_recipes.check(config.gan.recipe, improved)
  if config.gan.recipe == 'paper':
    return None
  return tuple(sorted(improved.to_dict().items()))


def create_model(config: ml_collections.ConfigDict, key: jax.Array) -> cvae_gan.CVAEGAN:
  recipe = dict(recipe_settings(config) or ())
  g = config.gan  # .get: configs recorded before the critics' own fields existed
  return cvae_gan.CVAEGAN(signs.NUM_SIGNS, g.latent_dim, width=config.width,
                          output_batchnorm=g.output_batchnorm,
                          upsample=recipe.get('upsample', 'transposed'),
                          noise_inputs=bool(recipe.get('noise_inputs', False)),
                          discriminator_width=g.get('discriminator_width') or None,
                          discriminator_first_stride=g.get('discriminator_first_stride', 1),
                          classifier_width=g.get('classifier_width') or None,
                          classifier_first_stride=g.get('classifier_first_stride', 1),
                          decoder_width=g.get('decoder_width') or None,
                          discriminator_projection=bool(g.get('discriminator_projection', False)),
                          fast_conv=config.get('fast_conv', True), rngs=nnx.Rngs(params=key))


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return common.adam(float(config.learning_rate), float(config.gan.adam_b1))


def _group_params(params: Any) -> dict[str, Any]:
  return {'classifier': params['classifier'], 'discriminator': params['discriminator'],
          'encoder_decoder': {'encoder': params['encoder'], 'decoder': params['decoder']}}


def init_state(config: ml_collections.ConfigDict, key: jax.Array,
               tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, dict[str, Any]]:
  """(graphdef, state) of a fresh CVAE-GAN run."""
  model = create_model(config, key)
  graphdef, state = common.split_model(model)
  groups = _group_params(state['params'])
  state['opt_state'] = {g: tx.init(groups[g]) for g in GROUPS}
  feature_dim = model.classifier.fc5.in_features
  state['class_means'] = losses.init_class_means(signs.NUM_SIGNS, feature_dim)
  state['step'] = jnp.zeros((), jnp.int32)
  recipe = recipe_settings(config)
  if recipe is not None:
    state['lecam'] = gan_recipes.init_lecam()
    if dict(recipe)['ema_decay'] > 0:
      state['ema'] = jax.tree.map(jnp.copy, {'params': state['params']['decoder'],
                                             'batch_stats': state['batch_stats']['decoder']})
  return graphdef, state


def make_train_step(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """The jitted iteration `train_step(graphdef, state, batch, key) -> (state, metrics)`.

  `key` is the run's train key; the iteration folds in its own step count, so step s
  always draws the same noise whether or not the run was resumed.
  """
  weights = tuple(sorted((k, float(v)) for k, v in config.gan.loss_weights.items()))
  return _make_train_step(tx, weights, float(config.gan.class_mean_momentum),
                          recipe_settings(config))


@functools.lru_cache(maxsize=8)
def _make_train_step(tx, weights, momentum, recipe):
  weights = dict(weights)
  improved = dict(recipe) if recipe is not None else None
  policy = diffaugment.parse_policy(improved['diffaugment']) if improved else ()
  # .get: a workdir written before the piece existed has no such field.
  c_policy = diffaugment.parse_policy(improved.get('classifier_augment', '')) \
      if improved else ()
  r1_gamma = float(improved.get('r1_gamma', 0.0)) if improved else 0.0
  r1_every = int(improved.get('r1_every', 1)) if improved else 1
  noise = bool(improved.get('noise_inputs', False)) if improved else False
  color_strength = float(improved.get('color_strength', 1.0)) if improved else 1.0
  symmetry = str(improved.get('real_symmetry', '')) if improved else ''

  def r1_and_grad(d_on_real, x_real, params_d, step):
    """(R1, its gradient in D's parameters) on every r1_every-th iteration (StyleGAN2's
    lazy regularisation), (0, zeros) on the others; apart from the main forward.

    Its own forward of D on the same batch, in the plain layer forms: differentiating
    the fast forms' custom VJPs twice costs 2.9x the iteration, the plain ones 1.2-1.5x
    (bench/ab_r1.py). Kept out of the main forward's VJP, where a lax.cond would make
    every iteration carry the R1 branch's residuals. Its BatchNorm statistics equal the
    main forward's and are dropped.
    """
    def now():
      with layers.plain_forms():
        return jax.value_and_grad(lambda p: gan_recipes.r1_penalty(
            lambda img: d_on_real(p, img), x_real)[0])(params_d)

    if r1_every == 1:
      return now()
    zeros = lambda: (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params_d))
    return jax.lax.cond(step % r1_every == 0, now, zeros)

  @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
  def train_step(graphdef, state, batch, key):
    common.TRACES['gan_train'] += 1
    key = jax.random.fold_in(key, state['step'])
    k_z, k_p = jax.random.split(key)
    # DiffAugment keys: a real patch and its reconstruction share one (pairwise matching
    # compares them); prior samples draw their own.
    k_pair, k_prior = jax.random.split(jax.random.fold_in(key, 2))
    aug = lambda k, img: (diffaugment.diff_augment(k, img, policy, color_strength) if policy
                          else img)
    # The decoder's noise inputs, when it has them: one key per decoder forward.
    k_noise = jax.random.split(jax.random.fold_in(key, 4), 3) if noise else None
    noise_key = lambda i: k_noise[i] if noise else None
    model = common.merge_model(graphdef, state)
    split = {n: nnx.split(getattr(model, n), nnx.Param, nnx.BatchStat, ...) for n in NETS}
    params = {n: split[n][1] for n in NETS}
    stats = {n: split[n][2] for n in NETS}

    def run(name, p, bs, *args):
      p, bs, rest = common.fresh((p, bs, split[name][3]))
      m = nnx.merge(split[name][0], p, bs, rest)
      return m(*args), nnx.state(m, nnx.BatchStat)

    x, y = batch['image'], batch['label']
    if symmetry:  # every network of the iteration sees the same mirrored / rotated patch
      x = augment.random_symmetry(jax.random.fold_in(key, 5), x, symmetry)
    y1h = jax.nn.one_hot(y, signs.NUM_SIGNS, dtype=x.dtype)
    opt = state['opt_state']

    # 1. Auxiliary classifier on real patches (DiffAugmented with classifier_augment on,
    # keyed apart from D's draws; the later forward's C features see the plain patches).
    x_c = diffaugment.diff_augment(jax.random.fold_in(key, 3), x, c_policy) if c_policy \
        else x

    def c_loss(pc):
      (logits, _), bs = run('classifier', pc, stats['classifier'], x_c)
      return losses.classifier_loss(logits, y), (bs, logits)

    (loss_c, (stats['classifier'], logits_c)), grad_c = jax.value_and_grad(
        c_loss, has_aux=True)(params['classifier'])
    upd, opt_c = tx.update(grad_c, opt['classifier'], params['classifier'])
    params['classifier'] = optax.apply_updates(params['classifier'], upd)

    # 2 + 3. One forward of E, G, D, C; D's loss and E+G's loss from it.
    # D's statistics before this iteration, for the main forward and R1's alike
    # (`stats` is rebound to the forward's new statistics below).
    stats_d = stats['discriminator']

    def d_on_real(pd, img):
      (logits, features), bs = run('discriminator', pd, stats_d, img, y1h)
      return logits, (features, bs)

    x_real = aug(k_pair, x)

    def forward(pd, peg):
      (mu, logvar), bs_e = run('encoder', peg['encoder'], stats['encoder'], x, y1h)
      z = cvae_gan.reparameterize(k_z, mu, logvar)
      x_rec, bs_g = run('decoder', peg['decoder'], stats['decoder'], z, y1h, noise_key(0))
      z_p = jax.random.normal(k_p, mu.shape, mu.dtype)
      x_p, bs_g = run('decoder', peg['decoder'], bs_g, z_p, y1h, noise_key(1))
      d_real, (fd_real, bs_d) = d_on_real(pd, x_real)
      (d_rec, fd_rec), bs_d = run('discriminator', pd, bs_d, aug(k_pair, x_rec), y1h)
      (d_p, fd_p), bs_d = run('discriminator', pd, bs_d, aug(k_prior, x_p), y1h)
      pc, bs_c = params['classifier'], stats['classifier']
      (_, fc_real), bs_c = run('classifier', pc, bs_c, x)
      (_, fc_rec), bs_c = run('classifier', pc, bs_c, x_rec)
      (c_p, fc_p), bs_c = run('classifier', pc, bs_c, x_p)
      mean_c, class_means = losses.classwise_mean_feature_matching(
          fc_p, y, fc_real, y, state['class_means'], momentum)
      terms = {
          'kl': losses.kl_divergence(mu, logvar),
          'reconstruction': losses.l2_reconstruction(x_rec, x),
          'pairwise_d': losses.pairwise_feature_matching(fd_rec, fd_real),
          'pairwise_c': losses.pairwise_feature_matching(fc_rec, fc_real),
          'mean_d': losses.mean_feature_matching(fd_p, fd_real),
          'mean_c': mean_c,
      }
      new_stats = {'encoder': bs_e, 'decoder': bs_g, 'discriminator': bs_d,
                   'classifier': bs_c}
      if improved is None:
        loss_d = losses.discriminator_loss(d_real, d_rec, d_p)
        loss_g = losses.generator_loss(terms, weights)
        return (loss_d, loss_g), (terms, new_stats, class_means, None)
      kind = improved['adversarial']
      loss_d = gan_recipes.discriminator_adversarial(d_real, d_rec, d_p, kind=kind)
      reg, lecam = gan_recipes.lecam(d_real, jnp.concatenate([d_rec, d_p]), state['lecam'],
                                     improved['lecam_decay'])
      if improved['lecam_weight']:
        loss_d = loss_d + improved['lecam_weight'] * reg
      terms.update(adv_prior=gan_recipes.generator_adversarial(d_p, kind),
                   adv_rec=gan_recipes.generator_adversarial(d_rec, kind),
                   class_prior=losses.softmax_cross_entropy(c_p, y), lecam=reg)
      if improved.get('mode_seeking_weight', 0.0):
        terms['mode_seeking'] = gan_recipes.mode_seeking(x_p, z_p, y)
      if improved.get('intensity_weight', 0.0):
        terms['intensity_prior'] = gan_recipes.intensity_matching(
            x_p, x, y, signs.NUM_SIGNS)
      loss_g = gan_recipes.improved_generator_loss(terms, weights, improved)
      return (loss_d, loss_g), (terms, new_stats, class_means, lecam)

    peg = {'encoder': params['encoder'], 'decoder': params['decoder']}
    (loss_d, loss_g), vjp, (terms, stats, class_means, lecam) = jax.vjp(
        forward, params['discriminator'], peg, has_aux=True)
    one, zero = jnp.ones_like(loss_d), jnp.zeros_like(loss_d)
    grad_d = vjp((one, zero))[0]
    grad_eg = vjp((zero, one))[1]
    if r1_gamma:  # D's loss + r1_every * gamma * R1 on the lazy iterations
      r1, grad_r1 = r1_and_grad(d_on_real, x_real, params['discriminator'], state['step'])
      scale = r1_gamma * r1_every
      loss_d = loss_d + scale * r1
      grad_d = jax.tree.map(lambda g, r: g + scale * r, grad_d, grad_r1)
      terms['r1'] = r1  # 0 on the iterations between lazy R1 ones
    upd, opt_d = tx.update(grad_d, opt['discriminator'], params['discriminator'])
    params['discriminator'] = optax.apply_updates(params['discriminator'], upd)
    upd, opt_eg = tx.update(grad_eg, opt['encoder_decoder'], peg)
    peg = optax.apply_updates(peg, upd)
    params.update(peg)

    for n in NETS:
      nnx.update(getattr(model, n), params[n], stats[n])
    _, new_params, new_stats, rngs = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    new_state = {
        'step': state['step'] + 1, 'params': new_params, 'batch_stats': new_stats,
        'rngs': rngs, 'class_means': class_means,
        'opt_state': {'classifier': opt_c, 'discriminator': opt_d, 'encoder_decoder': opt_eg},
    }
    if improved is not None:
      new_state['lecam'] = lecam
    if 'ema' in state:
      decay = gan_recipes.ema_decay_at(state['step'], improved['ema_decay'])
      ema_params = gan_recipes.ema_update(state['ema']['params'], params['decoder'], decay)
      # The averaged decoder's own BatchNorm statistics, from its forward on this
      # iteration's prior batch: the live decoder's would not fit the averaged weights.
      _, ema_stats = run('decoder', ema_params, state['ema']['batch_stats'],
                         jax.random.normal(k_p, (x.shape[0], model.latent_dim), x.dtype), y1h,
                         noise_key(2))
      new_state['ema'] = {'params': ema_params, 'batch_stats': ema_stats}
    metrics = {
        'loss_c': loss_c, 'loss_d': loss_d, 'loss_g': loss_g,
        'accuracy_c': jnp.mean(jnp.argmax(logits_c, -1) == y),
        'grad_norm_c': common.global_norm(grad_c), 'grad_norm_d': common.global_norm(grad_d),
        'grad_norm_g': common.global_norm(grad_eg),
        **{f'g_{k}': v for k, v in terms.items()},
    }
    return new_state, metrics

  return train_step


@functools.partial(jax.jit, static_argnums=0)
def sample(graphdef: nnx.GraphDef, state: dict[str, Any], key: jax.Array,
           labels: jax.Array) -> jax.Array:
  """Prior samples of the decoder (inference BatchNorm) for integer sign `labels`."""
  common.TRACES['gan_sample'] += 1
  model = common.merge_model(graphdef, state)
  if 'ema' in state:  # the improved recipe's averaged decoder
    params, stats = jax.tree.map(lambda a: a, (state['ema']['params'],
                                               state['ema']['batch_stats']))
    nnx.update(model.decoder, params, stats)
  model.eval()
  return model.generate(key, jax.nn.one_hot(labels, signs.NUM_SIGNS))


@functools.partial(jax.jit, static_argnums=0)
def eval_step(graphdef: nnx.GraphDef, state: dict[str, Any], batch: dict[str, jax.Array],
              key: jax.Array) -> dict[str, jax.Array]:
  """Held-out sums: auxiliary-classifier hits and reconstruction squared error."""
  model = common.merge_model(graphdef, state)
  model.eval()
  x, y, mask = batch['image'], batch['label'], batch['mask']
  y1h = jax.nn.one_hot(y, signs.NUM_SIGNS, dtype=x.dtype)
  logits, _ = model.classifier(x)
  mu, logvar = model.encoder(x, y1h)
  k_noise = jax.random.fold_in(key, 1) if model.decoder.has_noise else None
  x_rec = model.decoder(cvae_gan.reparameterize(key, mu, logvar), y1h, k_noise)
  err = jnp.mean(jnp.square(x_rec - x), axis=(1, 2, 3))
  return {'hits': jnp.sum((jnp.argmax(logits, -1) == y) * mask),
          'sq_err': jnp.sum(err * mask), 'count': jnp.sum(mask)}


def sign_patches(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """The sign patches (labels 0-8) of a split; background patches are left out."""
  keep = np.asarray(arrays['label']) < signs.NUM_SIGNS
  return (np.asarray(arrays['image'], np.float32)[keep],
          np.asarray(arrays['label'], np.int32)[keep])


def sample_rows(graphdef, state, key, per_sign: int = 4) -> dict[str, np.ndarray]:
  """{sign: a (1, 64, per_sign*64, 1) row in [0, 1] of its prior samples}, logged as
  `samples/<sign>` so that TensorBoard names each sign's row."""
  labels = jnp.repeat(jnp.arange(signs.NUM_SIGNS), per_sign)
  images = sharding.to_host(sample(graphdef, state, key, labels))
  return common.labelled_rows(images, np.asarray(labels), signs.SIGNS, per_sign)


def restore(gan_workdir: str) -> tuple[nnx.GraphDef, dict[str, Any], ml_collections.ConfigDict]:
  """(graphdef, state, config) of a finished or interrupted GAN run, from its workdir."""
  config = ml_collections.ConfigDict(workdir_lib.read_config(
      gan_workdir, 'config.gan_workdir must be the --workdir of a train_gan.py run'))
  tx = make_optimizer(config)
  init_key, _, _ = common.split_keys(config.seed)
  graphdef, state = init_state(config, init_key, tx)
  ckpt = checkpointing.Checkpoints(gan_workdir, save_every=config.checkpoint_every)
  state, step = ckpt.restore_latest(state)
  ckpt.close()
  if step is None:
    raise FileNotFoundError(f'{checkpointing.checkpoint_dir(gan_workdir)} holds no '
                            'checkpoint; train the GAN first.')
  return graphdef, state, config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the CVAE-GAN on the training folds; writes checkpoints, TensorBoard, metrics.

  Resumes from the latest checkpoint in `workdir`; returns the metrics (also written to
  `<workdir>/metrics.json`, whose presence marks the stage as done).
  """
  if (done := workdir_lib.finished(workdir, config)) is not None:
    return done
  mesh = common.start_stage(config, workdir)
  sharding.check_batch_size(config.batch_size, mesh)

  share = config.get('train_share', 1.0)
  train = input_pipeline.load_training(config.data_dir, config.source,
                                       common.training_folds(config), share, config.seed)
  images, labels = sign_patches(train)
  logging.info('CVAE-GAN: %d sign patches (share %g) from folds %s', len(labels), share,
               common.training_folds(config))

  init_key, data_seed, train_key = common.split_keys(config.seed)
  tx = make_optimizer(config)
  graphdef, state = init_state(config, init_key, tx)
  sample_key = jax.random.fold_in(init_key, 1)  # fixed noise for the TensorBoard grids

  def grids(done, state, summaries):
    if done % config.gan.sample_every == 0 or done == config.num_steps:
      summaries.labelled_images(done, 'samples', sample_rows(graphdef, state, sample_key))

  run = loop.fit(config, workdir, name='gan', graphdef=graphdef, state=state,
                 train_step=make_train_step(config, tx), images=images, labels=labels,
                 batch_size=config.batch_size, num_steps=config.num_steps,
                 data_seed=data_seed, train_key=train_key, mesh=mesh,
                 shown=('loss_c', 'loss_d', 'loss_g'), after_step=grids)

  held_out = input_pipeline.load_split(config.data_dir, config.source, config.fold)
  result = {'stage': 'gan', 'steps': config.num_steps, 'train': run.logged,
            'train_share': share, 'num_train_patches': int(len(labels)),
            'held_out': evaluate_held_out(graphdef, run.state, *sign_patches(held_out),
                                          config.batch_size, mesh, train_key)}
  run.summaries.scalars(config.num_steps,
                        {f'held_out/{k}': v for k, v in result['held_out'].items()})
  run.summaries.close()
  path = workdir_lib.write_json(os.path.join(workdir, workdir_lib.METRICS_FILE), result)
  terminal.say(f'train_gan: wrote {checkpointing.checkpoint_dir(workdir)}, TensorBoard events and '
        f'{path}')
  return result


def evaluate_held_out(graphdef, state, images, labels, batch_size, mesh,
                      key) -> dict[str, float]:
  """Auxiliary-classifier accuracy and reconstruction MSE on held-out sign patches."""
  if not len(labels):
    return {}
  totals = {'hits': 0.0, 'sq_err': 0.0, 'count': 0.0}
  for batch in input_pipeline.eval_batches(images, labels, batch_size):
    out = jax.device_get(eval_step(graphdef, state, sharding.shard_batch(batch, mesh), key))
    for k in totals:
      totals[k] += float(out[k])
  n = max(totals['count'], 1.0)
  return {'aux_classifier_accuracy': totals['hits'] / n,
          'reconstruction_mse': totals['sq_err'] / n, 'num_patches': int(totals['count'])}
