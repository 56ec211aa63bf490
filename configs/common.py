"""Fields every stage shares, with the 'quick' (2 CPU cores) and 'paper' (GPU) values."""
import ml_collections
from ml_collections import config_dict

VARIANTS = ('quick', 'paper')


def variant(arg: str | None) -> str:
  """The variant named by the `--config=configs/x.py:<arg>` suffix (default 'quick')."""
  arg = (arg or 'quick').strip()
  if arg not in VARIANTS:
    raise ValueError(f'unknown config variant {arg!r}; use one of {VARIANTS}, e.g. '
                     '--config=configs/train_gan.py:quick')
  return arg


def base(arg: str | None) -> ml_collections.ConfigDict:
  """The shared fields; each stage adds its own and locks the result."""
  v = variant(arg)
  quick = v == 'quick'
  c = ml_collections.ConfigDict()
  c.variant = v  # which preset filled the defaults ('quick' or 'paper')
  c.data_dir = 'data'  # folder holding the built TFDS dataset cisl_patches (make_dataset)
  c.source = 'phantom'  # builder config of cisl_patches: phantom, manifest, lidc or liss
  c.num_folds = 3  # folds of the patient-grouped cross-validation (the paper: 3)
  c.fold = 0  # the held-out test fold; training uses all the other folds
  c.seed = 0  # one seed: split into init, data and per-step train keys
  c.task = 'ten'  # 'ten' (9 signs + normal, 10 classes) or 'binary' (one sign vs non-sign)
  c.sign = 'GGO'  # the sign of the binary task (a name from cisl_jax.signs.SIGNS)
  c.batch_size = 32 if quick else 64  # global batch, split over all devices
  c.width = 0.25 if quick else 1.0  # channel multiplier of every network (paper: 1.0)
  c.learning_rate = 1e-3  # Adam learning rate
  c.num_steps = 100 if quick else 10_000  # optimizer steps of the stage
  c.checkpoint_every = 50 if quick else 1000  # save a checkpoint every this many steps
  c.keep_checkpoints = 2  # preservation policy: keep the latest N checkpoints
  c.log_every = 10 if quick else 100  # log progress and TensorBoard scalars every N steps
  # Multi-host: coordinator 'host:port' (or env JAX_COORDINATOR_ADDRESS); unset = one host.
  c.coordinator_address = config_dict.placeholder(str)
  c.num_processes = config_dict.placeholder(int)  # processes in a multi-host run
  c.process_id = config_dict.placeholder(int)  # this process's index in a multi-host run
  return c

