"""Visual Turing test page and generated-sample quality of one fold of a reproduce run.

Run (from the repo root, after `launch/reproduce.py` has finished the fold):
  python launch/turing_test.py build --workdir=workdir/quick --out=turing
  python launch/turing_test.py score --key=turing/key/answer_key.json \
      --answers=reader1.json reader2.json
  python launch/turing_test.py quality --workdir=workdir/quick --config.fold=1
Send `turing/page/` to the readers; keep `turing/key/` away from them.
Expected runtime: build and score take seconds (180 patches); quality takes well under
a minute on 2 CPU cores in the quick variant (a few minutes at the paper's sizes).
"""
from ml_collections import config_dict

from cisl_jax import config_lib


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  # data_dir, source, num_folds, fold and seed come from the shared fields; data_dir,
  # source and num_folds are read from the generate stage's config.json when it has one.
  c = config_lib.base(arg)
  c.num_real = 10  # real patches per sign on the page (the paper: 10)
  c.num_generated = 10  # generated patches per sign on the page (the paper: 10)
  c.signs = ''  # comma-separated signs on the page; empty = all nine
  # Stage folders under <workdir>/fold<k>/; empty = the reproduce run's own names.
  c.generate_stage = ''  # the stage holding the generated set (default: generate)
  c.generated_dir = config_dict.placeholder(str)  # generated-set folder (overrides the stage)
  c.data_hu_level = -600.0  # HU level the dataset mapped to 0 (cisl_jax/data/patches.py)
  c.data_hu_width = 1500.0  # HU width the dataset mapped to [-1, 1] (cisl_jax/data/patches.py)
  c.display_level = -600.0  # HU level the page renders with (a lung window)
  c.display_width = 1500.0  # HU width the page renders with (a lung window)
  c.size_px = 384  # on-screen patch size, nearest-neighbour enlarged (6x for 64 px)
  # Quality (cisl_jax/quality/), on features of a classifier trained on real patches.
  c.classifier_stage = ''  # classifier stage (real patches only) giving features (ten_scratch)
  c.classifier_dir = config_dict.placeholder(str)  # classifier workdir (overrides the stage)
  c.quality_stage = ''  # stage the quality section is written to (default: quality)
  c.k = 3  # neighbours of the k-NN precision/recall (Kynkäänniemi et al. use 3)
  c.max_generated = 1000 if c.variant == 'quick' else 5000  # generated patches per sign measured
  c.num_suspicious = 8  # rows of the memorisation figure
  c.lock()
  return c
