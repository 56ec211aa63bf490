"""The paper's whole protocol (every fold, task and method), then the report.

Run (from the repo root, after `python launch/make_dataset.py --source=phantom`):
  python launch/reproduce.py --config=configs/reproduce.py:quick --workdir=workdir/quick
  python launch/reproduce.py --config=configs/reproduce.py:paper --workdir=runs/paper \
      --config.transfer.weights=weights/imagenet
Expected runtime: quick, about 20 minutes on 2 CPU cores for all 3 folds (about 130
stages, see MEASUREMENTS.md); paper, the paper's sizes (18,000 generated patches per sign
for the binary tasks, 16,000 per class for the 10-class task), hours on one GPU.
The small-data curve is off in quick: add --config.small_data_shares=0.25,0.5
--config.small_data_folds=0 (about 3.5 minutes per share on 2 quiet cores, most of it the GAN).
Stage settings come from configs/train_gan.py, generate.py and train_classifier.py of
the same variant; override them as --config.gan.num_steps=..., --config.classifier.width=...
"""
import pathlib

from ml_collections import config_dict

from cisl_jax import config_lib


def _stage(name: str, v: str) -> config_dict.ConfigDict:
  """The variant `v` of a sibling stage config (configs/<name>.py)."""
  return config_lib.load(pathlib.Path(__file__).with_name(f'{name}.py'), v)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  v = config_lib.variant(arg)
  quick = v == 'quick'
  c = config_dict.ConfigDict()
  c.variant = v  # preset that filled the defaults ('quick' or 'paper')
  config_lib.data_fields(c)  # data_dir, source, num_folds: as every stage has them
  c.folds = (0, 1, 2)  # held-out folds to run (all of them for the paper's protocol)
  c.seed = 0  # base seed; fold k's stages use seed + k
  c.signs = config_lib.SIGNS  # signs of the binary tasks (Table I rows)
  c.run_ten = True  # run the 10-class task (Table II)
  # Table I's from-scratch baseline per sign (the paper: about 0.5): 9 stages per fold,
  # in quick about 4 CPU s each when warm (27 stages, ~2 minutes on 2 cores in all).
  c.run_binary_scratch = True
  # Generated patches per sign used to pre-train a binary classifier (the paper: 18,000)
  # and per class for the 10-class one (the paper: 16,000); traditional augmentation
  # yields the same number (the paper: "to be fair").
  c.generated_per_sign = 512 if quick else 18_000
  c.generated_per_class = 512 if quick else 16_000  # per class, 10-class task
  # Fig. 4: GGO pre-training set sizes (binary, then fine-tuned); generated_per_sign is
  # taken from the main binary run, the others are extra stages.
  c.sweep_sizes = (128, 256, 512) if quick else (2000, 4000, 8000, 12000, 16000, 18000)
  # Folds on which the Fig. 4 sweep runs (quick: fold 0 only, for make demo's 20 minutes).
  c.sweep_folds = (0,) if quick else (0, 1, 2)
  # The small-data curve (beyond the paper): 10-class AC and mean SE of scratch,
  # traditional augmentation and GAN pre-training + fine-tuning against the share of real
  # training patches. Each share (a fraction < 1; 1 is the main run) trains its own GAN,
  # generation and the three methods on one seeded, per-class stratified subset
  # (6 stages per share and fold). Quick: off, a quick GAN alone costs about 2 of make
  # demo's 20 minutes; turn it on with
  #   --config.small_data_shares=0.25,0.5 --config.small_data_folds=0
  c.small_data_shares = () if quick else (0.25, 0.5)
  c.small_data_folds = (0,) if quick else (0, 1, 2)  # folds on which the curve runs

  c.gan = _stage('train_gan', v)  # CVAE-GAN stage (configs/train_gan.py)
  c.generate = _stage('generate', v)  # generation stage (configs/generate.py)
  c.classifier = _stage('train_classifier', v)  # every classifier stage
  for stage in (c.gan, c.generate, c.classifier):
    stage.unlock()
  if quick:
    # Small widths and one batch size everywhere: one compile per shape serves all of the
    # ~110 stages (MEASUREMENTS.md has the measured stage times). Batch 16 halves the CPU
    # of batch 32 at the same step counts: what make demo's 20 minutes leave.
    c.classifier.width = 0.125  # every classifier stage
    c.classifier.batch_size = 16  # every classifier stage
  # Steps and learning rate per method (num_steps 0: the classifier config's epochs).
  # Fine-tuning uses the paper's rate 1e-3; the others the classifier config's default.
  lr = c.classifier.learning_rate
  c.methods = config_dict.ConfigDict()  # steps and learning rate per method
  c.methods.scratch = config_lib.method(80 if quick else 0, lr)  # real training folds only
  c.methods.pretrain = config_lib.method(80 if quick else 0, lr)  # generated + real background
  c.methods.finetune = config_lib.method(60 if quick else 0, 1e-3)  # real folds, from pretrain
  c.methods.traditional = config_lib.method(80 if quick else 0, lr)  # augmented real folds
  c.methods.transfer = config_lib.method(0, 1e-3)  # ImageNet models: config.classifier.transfer
  # The 10-class stages (4 per fold against 27 binary ones) train this many times longer:
  # ten classes from one network cost little in total and need the steps.
  c.ten_steps_factor = 2.0

  c.transfer = config_dict.ConfigDict()  # ImageNet transfer baselines (Fig. 5)
  c.transfer.archs = ('alexnet', 'vgg16', 'resnet101')  # models compared in Fig. 5
  # Folder of converted ImageNet weights (launch/convert_weights.py); unset: not run.
  c.transfer.weights = config_dict.placeholder(str)

  c.quality = config_dict.ConfigDict()  # generated-sample quality (cisl_jax/quality/)
  c.quality.enabled = True  # measure each fold's generated set against its real folds
  c.quality.max_generated = 200 if quick else 1000  # generated patches per sign measured
  # Training steps of the automated Turing test's CNN, per half: 1,200, where its held-out
  # accuracy levels off (BUILD_NOTES, "Automated Turing test"). Quick ran 600 until the
  # generated set was intensity-matched: on matched sets 600 steps read 0.08 lower.
  c.quality.c2st_steps = 1200
  c.lock()
  return c
