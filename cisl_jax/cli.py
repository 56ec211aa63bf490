"""The command line every one-stage launcher shares: --config and --workdir, a quiet
terminal, and the stage function (whose closing line names what it wrote).

  launch/train_gan.py:  cli.stage_main(gan.train_and_evaluate, 'train_gan', ...)
The stage function is the one reproduce calls in-process; a workdir that holds
metrics.json is finished and is not re-run. Multi-host: add
--config.coordinator_address=HOST:PORT --config.num_processes=N --config.process_id=I
(or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) and run the same
command on every host. --verbosity=0 shows the libraries' INFO logs.
"""
import os
from typing import Any, Callable

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (before TF loads)

from absl import app
from absl import flags
from ml_collections import config_flags


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'configs')


def stage_main(stage_fn: Callable[[Any, str], dict], config_name: str, config_help: str,
               workdir_help: str) -> None:
  """Defines --config (configs/<config_name>.py) and --workdir, then runs `stage_fn`."""
  config = config_flags.DEFINE_config_file(
      'config', os.path.join(CONFIGS, f'{config_name}.py'), config_help, lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, workdir_help, required=True)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    terminal.quiet_libraries()
    stage_fn(config.value, workdir.value)  # its closing line names what it wrote

  app.run(main)
