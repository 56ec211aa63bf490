"""Generate patches of every sign with a trained CVAE-GAN, plus the Fig. 3 grid.

Run (from the repo root):
  python launch/generate.py --config=configs/generate.py:quick \
      --workdir=workdir/quick/fold0/generate --config.gan_workdir=workdir/quick/fold0/gan
Writes <workdir>/generated/ (the set input_pipeline.load_generated reads) and
<workdir>/fig3_real_vs_generated.png; with --config.export_npy / --config.export_png
also <workdir>/export/<sign>.npy and <sign>.png per sign. Expected runtime: quick, under a minute on 2 CPU
cores; paper (18,000 per sign = 162,000 patches), about a minute on one H100-class GPU.
The GAN's width and latent size come from the GAN run's config.json.
"""
from ml_collections import config_dict

from cisl_jax import config_lib


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  c = config_lib.base(arg)
  quick = c.variant == 'quick'
  c.gan_workdir = config_dict.placeholder(str)  # --workdir of the train_gan.py run
  # Patches per sign; the paper pre-trains on 18,000 per sign (binary) and 16,000 per
  # class (10-class), so one set of 18,000 serves both. The standalone quick run makes
  # 300; the quick reproduction (the demo) makes 512, its generated_per_sign (set by
  # configs/reproduce.py, the largest of its pre-training and sweep sizes).
  c.num_per_sign = 300 if quick else 18_000
  c.batch_size = 256 if quick else 2048  # decoder batch (generation only)
  # Map each sign's generated pixel values onto the quantiles of that sign's real
  # training patches (cisl_jax/intensity_match.py): the generated set then has the real
  # densities, and the decoder's own output is kept beside it in generated_raw/. Quick:
  # on, by the rule in BUILD_NOTES.md (it raised pre-training-only SE in 3 of 4
  # seed-folds); paper: off, the paper's generator has no such step.
  c.match_intensities = quick
  c.fig3_per_sign = 8  # real and generated examples per sign in the Fig. 3 grid
  # Per-sign copies of the set in <workdir>/export/ (set them on the run that generates:
  # a finished stage does nothing): <sign>.npy, (N, 64, 64) float32 in [-1, 1] over the
  # dataset's HU window; <sign>.png, a grid of its first export_grid_size patches.
  c.export_npy = False  # write export/<sign>.npy
  c.export_png = False  # write export/<sign>.png
  c.export_grid_size = 64  # patches per sign in each PNG grid (8 per row)
  c.lock()
  return c
