"""How hard a dataset's binary tasks are: traditional augmentation's AC per sign.

  PYTHONPATH=$PWD python bench/phantom_difficulty.py --data_dir=/tmp/data \
      --workdir=/tmp/difficulty [--source=phantom] [--folds=0] [--variant=quick] \
      [--method=traditional|scratch]

Runs only the binary stages of one method of the reproduction that need no GAN
(traditional augmentation, or training from scratch), with the same stage configs as
`launch/reproduce.py` (configs/reproduce.py of the variant), into the same folder names
`<workdir>/fold<k>/binary_<sign>_<method>/`, and prints each sign's held-out accuracy
and their mean: a cheap estimate of where the demo's Table I lands (the paper reports
0.80-0.95 for traditional augmentation on real data) without the GAN. Finished stages
are not re-run. On the phantom the figures are figures on SYNTHETIC data.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cisl_jax import reproduce  # pylint: disable=g-import-not-at-top
from cisl_jax import workdir as wd  # pylint: disable=g-import-not-at-top


def _reproduce_config(variant: str):
  spec = importlib.util.spec_from_file_location('cisl_cfg_reproduce',
                                                REPO / 'configs' / 'reproduce.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--data_dir', required=True)
  ap.add_argument('--workdir', required=True)
  ap.add_argument('--source', default='phantom')
  ap.add_argument('--folds', default='0', help='comma-separated held-out folds')
  ap.add_argument('--variant', default='quick')
  ap.add_argument('--method', default='traditional', choices=('traditional', 'scratch'))
  args = ap.parse_args(argv)
  config = _reproduce_config(args.variant)
  with config.unlocked():
    config.data_dir, config.source = args.data_dir, args.source
  runners = reproduce.Runners()
  rows = {}
  for fold in (int(f) for f in args.folds.split(',')):
    for sign in config.signs:
      workdir = wd.stage_dir(args.workdir, fold, wd.binary_stage(sign, args.method))
      if not wd.is_done(workdir):
        mode = 'augment' if args.method == 'traditional' else 'scratch'
        cfg = reproduce._classifier(  # pylint: disable=protected-access
            config, fold, task='binary', sign=sign, mode=mode, method=args.method,
            per_class=config.generated_per_sign if mode == 'augment' else 0)
        runners.classifier(cfg, workdir)
      m = json.loads((workdir / wd.METRICS_FILE).read_text())
      rows.setdefault(sign, []).append(m['accuracy'])
  print(f'binary {args.method}, {args.source} (folds {args.folds}):')
  for sign, acs in rows.items():
    print(f'  {sign:14s} AC {sum(acs) / len(acs):.3f}')
  mean = sum(sum(a) / len(a) for a in rows.values()) / len(rows)
  paper = {'traditional': 0.883, 'scratch': 0.884}[args.method]
  print(f'mean AC {mean:.3f} (the paper, real data: {paper}; target band for traditional '
        'augmentation 0.80-0.95)')


if __name__ == '__main__':
  main()
