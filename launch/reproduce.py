r"""Runs the paper's whole protocol and writes the report; prints its path last.

  python launch/reproduce.py --config=configs/reproduce.py:quick --workdir=workdir/quick

Finished stages (metrics.json present) are skipped, so running the same command again
after a kill continues where it stopped. Exits 1 when a stage failed (the report lists
it and every other stage's results are kept).
"""
import sys

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cisl_jax import reproduce

_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder of the run (fold<k>/<stage>/, report/).',
                               required=True)
config_flags.DEFINE_config_file('config', None, 'configs/reproduce.py:<quick|paper>',
                                lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  terminal.quiet_libraries()
  readme, not_ok = reproduce.run(flags.FLAGS.config, _WORKDIR.value)
  if not_ok:
    logging.error('%d stage(s) did not finish: %s. Rerun the same command to retry them.',
                  len(not_ok), ', '.join(not_ok))
  print(readme, flush=True)
  if not_ok:
    sys.exit(1)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
