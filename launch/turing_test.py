r"""Visual Turing test (build the page, score the readers) and generated-sample quality.

  python launch/turing_test.py build --workdir=workdir/quick --out=turing
  python launch/turing_test.py score --key=turing/key/answer_key.json \
      --answers=reader1.json reader2.json
  python launch/turing_test.py quality --workdir=workdir/quick --config.fold=0

`build` writes `<out>/page/turing_test.html` (send it to the readers) and
`<out>/key/answer_key.json` (keep it). `score` prints per reader and per sign the
share of generated patches taken as real and of real ones taken as fake, and with
--out writes scores.json and scores.md there. `quality` writes the quality section of
one fold into `<workdir>/fold<k>/quality/`. Settings: configs/turing_test.py.
"""
import json
import os

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)

from absl import app
from absl import flags
from ml_collections import config_flags

from cisl_jax.quality import stage as quality
from cisl_jax import turing
from cisl_jax import workdir as workdir_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'reproduce run folder (fold<k>/<stage>/).')
_OUT = flags.DEFINE_string('out', None, 'build: output folder (page/ and key/); '
                           'score: folder for scores.json and scores.md (optional).')
_KEY = flags.DEFINE_string('key', None, 'score: the answer key written by build.')
_ANSWERS = flags.DEFINE_string('answers', None, 'score: answers JSON downloaded from the '
                               'page; more files may follow as arguments.')
_ALLOW_MISSING = flags.DEFINE_bool('allow_missing', False,
                                   'score: score unmarked items as absent instead of failing.')
config_flags.DEFINE_config_file('config', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'turing_test.py'),
                                'configs/turing_test.py[:quick|paper]', lock_config=True)

COMMANDS = ('build', 'score', 'quality')


def _need(flag, command):
  if not flag.value:
    raise app.UsageError(f'{command} needs --{flag.name}.')
  return flag.value


def main(argv):
  terminal.quiet_libraries()
  try:
    _main(argv)
  except (FileNotFoundError, ValueError) as e:  # bad paths or answers: the message says which
    raise app.UsageError(str(e)) from e


def _main(argv):
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'give a command: one of {", ".join(COMMANDS)}.')
  command, rest = argv[1], argv[2:]
  config = flags.FLAGS.config
  if command != 'score' and rest:
    raise app.UsageError(f'unexpected arguments: {rest}')
  if command == 'build':
    page, key = turing.build_from_workdir(config, _need(_WORKDIR, command),
                                          _need(_OUT, command))
    print(f'page (send to the readers): {page}\nanswer key (keep apart): {key}')
  elif command == 'score':
    key = turing.load_key(_need(_KEY, command))
    paths = [p for a in [_need(_ANSWERS, command)] + rest for p in a.split(',') if p]
    scores = turing.score(key, {p: turing.load_answers(p) for p in paths},
                          allow_missing=_ALLOW_MISSING.value)
    md = turing.score_markdown(scores)
    if _OUT.value:
      os.makedirs(_OUT.value, exist_ok=True)
      workdir_lib.write_text(os.path.join(_OUT.value, 'scores.json'),
                             json.dumps(scores, indent=1))
      workdir_lib.write_text(os.path.join(_OUT.value, 'scores.md'), md)
    print(md)
  else:
    workdir = _need(_WORKDIR, command)
    stage = lambda name, default: str(workdir_lib.stage_dir(workdir, config.fold,
                                                            name or default))
    gen_stage = stage(config.generate_stage, workdir_lib.GENERATE)
    settings = dict(quality.data_settings(config, gen_stage), fold=config.fold,
                    seed=config.seed, generated_dir=config.generated_dir or gen_stage,
                    features_from=config.classifier_dir or stage(
                        config.classifier_stage, workdir_lib.ten_stage('scratch')),
                    max_generated=config.max_generated, k=config.k,
                    num_suspicious=config.num_suspicious)
    out = stage(config.quality_stage, workdir_lib.QUALITY)
    quality.run_stage(settings, out)
    print(f'quality section: {os.path.join(out, workdir_lib.QUALITY_MD)}')


if __name__ == '__main__':
  app.run(main)
