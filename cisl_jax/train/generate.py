"""Generation: prior samples of a trained CVAE-GAN for every sign, and the Fig. 3 grid.

Writes `<workdir>/generated/` (input_pipeline.write_generated; read back with
load_generated), with config.match_intensities the decoder's own output in
`<workdir>/generated_raw/` and in generated/ the same patches intensity-matched per sign
to the GAN's training patches (cisl_jax/intensity_match.py),
`<workdir>/fig3_real_vs_generated.png` (real training patches beside the generated set,
one row per sign, as the paper's Fig. 3), when asked (config.export_npy,
config.export_png) per-sign copies in `<workdir>/export/` and `<workdir>/metrics.json`.
"""
import os
import shutil
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from cisl_jax import input_pipeline
from cisl_jax import intensity_match
from cisl_jax import sharding
from cisl_jax import signs
from cisl_jax import terminal
from cisl_jax import workdir as workdir_lib
from cisl_jax.train import common
from cisl_jax.train import gan



def generate_images(graphdef, state, key: jax.Array, labels: np.ndarray,
                    batch_size: int) -> np.ndarray:
  """Decoder samples for every label, in fixed-size batches (one compilation)."""
  out = []
  t0 = time.perf_counter()
  progress = common.Progress('generate (batches)', -(-len(labels) // batch_size), 0,
                             max(1, len(labels) // batch_size // 10))
  for i, start in enumerate(range(0, len(labels), batch_size)):
    chunk = labels[start:start + batch_size]
    padded = np.pad(chunk, (0, batch_size - len(chunk)))
    images = gan.sample(graphdef, state, jax.random.fold_in(key, i), jnp.asarray(padded))
    out.append(sharding.to_host(images)[:len(chunk)])
    progress.update(i + 1)
  rate = len(labels) / max(time.perf_counter() - t0, 1e-9)
  logging.info('generated %d patches, %.0f patches/s', len(labels), rate)
  return np.concatenate(out).astype(np.float32)


def fig3_row_labels(real_labels: np.ndarray) -> list[str]:
  """Fig. 3's row labels: each sign, marked where it has no real training patch (its
  generated row then comes from a label the GAN never saw)."""
  have = set(np.asarray(real_labels).tolist())
  return [name if s in have else f'{name}\n(no real\npatches)'
          for s, name in enumerate(signs.SIGNS)]


def fig3(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
         per_sign: int, path: str, seed: int = 0) -> str:
  """Saves a grid: per sign, `per_sign` real patches | `per_sign` generated ones; every
  row is labelled (`fig3_row_labels`), also where a half is empty."""
  rng = np.random.default_rng(seed)
  row_labels = fig3_row_labels(real_labels)
  fig, axes = plt.subplots(signs.NUM_SIGNS, 2 * per_sign,
                           figsize=(2 * per_sign * 0.9, signs.NUM_SIGNS * 0.95))
  for s in range(signs.NUM_SIGNS):
    for half, (pool, pool_labels) in enumerate(((real, real_labels), (fake, fake_labels))):
      idx = np.flatnonzero(pool_labels == s)
      idx = rng.choice(idx, min(per_sign, len(idx)), replace=False) if len(idx) else idx
      for j in range(per_sign):
        ax = axes[s, half * per_sign + j]
        ax.set_xticks([])
        ax.set_yticks([])
        if j < len(idx):
          ax.imshow(pool[idx[j], ..., 0], cmap='gray', vmin=-1, vmax=1)
        else:  # an empty cell, but the axis stays: it carries the row's label
          for spine in ax.spines.values():
            spine.set_visible(False)
    axes[s, 0].set_ylabel(row_labels[s], rotation=0, ha='right', va='center', fontsize=8)
  axes[0, per_sign // 2].set_title('real', fontsize=9)
  axes[0, per_sign + per_sign // 2].set_title('generated', fontsize=9)
  fig.tight_layout(pad=0.2)
  workdir_lib.save_figure(fig, path, dpi=100)
  return path


GRID_COLUMNS = 8


def export_per_sign(images: np.ndarray, labels: np.ndarray, out_dir: str, *, npy: bool,
                    png: bool, grid_size: int = 64) -> dict[str, dict[str, str]]:
  """Writes `<sign>.npy` (that sign's patches, (N, 64, 64) float32 in [-1, 1]) and/or
  `<sign>.png` (8-bit grey grid of its first `grid_size` patches, 8 a row, -1 black,
  1 white) for each sign into `out_dir`, atomically as one folder.

  Returns {sign: {'npy': path, 'png': path}} of what was written ({} when neither).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not (npy or png):
    return {}
  written = {}
  with workdir_lib.atomic_dir(out_dir) as tmp:
    for code, name in enumerate(signs.SIGNS):
      patches = np.asarray(images, np.float32)[np.asarray(labels) == code]
      if not len(patches):
        continue
      written[name] = {}
      if npy:
        np.save(os.path.join(tmp, f'{name}.npy'), patches[..., 0])
        written[name]['npy'] = os.path.join(out_dir, f'{name}.npy')
      if png:
        shown = patches[:grid_size]
        rows = -(-len(shown) // GRID_COLUMNS)
        grid = common.image_grid(np.concatenate(
            [shown, np.ones((rows * GRID_COLUMNS - len(shown),) + shown.shape[1:],
                            np.float32)]), rows)
        Image.fromarray(np.round(grid * 255).astype(np.uint8), 'L').save(
            os.path.join(tmp, f'{name}.png'))
        written[name]['png'] = os.path.join(out_dir, f'{name}.png')
  return written


def generate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Restores the GAN of config.gan_workdir and writes the generated set and Fig. 3."""
  if (done := workdir_lib.finished(workdir, config)) is not None:
    return done
  if not config.gan_workdir:
    raise ValueError('generate needs --config.gan_workdir (the --workdir of train_gan.py).')
  common.validate(config)
  sharding.initialize_distributed(config.coordinator_address, config.num_processes,
                                  config.process_id)
  mesh = sharding.make_mesh()
  graphdef, state, gan_config = gan.restore(config.gan_workdir)
  state = sharding.replicate(state, mesh)
  workdir_lib.record_config(workdir, config)
  _, _, key = common.split_keys(config.seed)
  labels = np.repeat(np.arange(signs.NUM_SIGNS, dtype=np.int32), config.num_per_sign)
  images = generate_images(graphdef, state, key, labels, config.batch_size)
  # The patches this GAN trained on (its share of the training folds): Fig. 3's real
  # row, and the reference of the intensity match.
  real = input_pipeline.load_training(gan_config.data_dir, gan_config.source,
                                      common.training_folds(gan_config),
                                      gan_config.get('train_share', 1.0), gan_config.seed)
  real_images, real_labels = gan.sign_patches(real)
  matched, raw_dir = {}, os.path.join(workdir, workdir_lib.GENERATED_RAW_DIR)
  if config.get('match_intensities', False):
    input_pipeline.write_generated(raw_dir, images, labels)
    images, matched = intensity_match.match(images, labels, real_images, real_labels)
  else:  # a raw set left by an earlier run would mark this set as matched
    shutil.rmtree(raw_dir, ignore_errors=True)
  out_dir = input_pipeline.write_generated(os.path.join(workdir, workdir_lib.GENERATED_DIR), images,
                                           labels)
  fig_path = fig3(real_images, real_labels, images, labels, config.fig3_per_sign,
                  os.path.join(workdir, workdir_lib.FIG3_FILE), config.seed)
  exported = export_per_sign(images, labels, os.path.join(workdir, workdir_lib.EXPORT_DIR),
                             npy=config.get('export_npy', False),
                             png=config.get('export_png', False),
                             grid_size=config.get('export_grid_size', 64))
  result = {'stage': 'generate', 'gan_workdir': os.path.abspath(config.gan_workdir),
            'num_per_sign': int(config.num_per_sign), 'num_generated': int(len(labels)),
            'generated_dir': out_dir, 'fig3': fig_path,
            'pixel_mean': float(images.mean()), 'pixel_std': float(images.std()),
            'exported': exported,
            # per matched sign: pixel medians before and after the match, and real
            'intensity_match': {signs.SIGNS[k]: v for k, v in matched.items()}}
  path = workdir_lib.write_json(os.path.join(workdir, workdir_lib.METRICS_FILE), result)
  export = (f', per-sign copies in {os.path.join(workdir, workdir_lib.EXPORT_DIR)}'
            if exported else '')
  terminal.say(f'generate: wrote {len(labels)} patches to {out_dir}{export}, {fig_path} and '
               f'{path}')
  return result
