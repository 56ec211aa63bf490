"""Stage configs: both variants load, are locked, document every field, and every leaf
can be overridden on the command line as --config.x.y=v."""
import pathlib
import re
import subprocess
import sys

from absl import flags
from ml_collections import config_dict
from ml_collections import config_flags
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGES = ('train_gan', 'generate', 'train_classifier', 'evaluate')


def leaves(cfg, prefix=''):
  for key, value in cfg.items():
    name = f'{prefix}{key}'
    if isinstance(value, config_dict.ConfigDict):
      yield from leaves(value, name + '.')
    else:
      yield name, cfg.get_type(key) if hasattr(cfg, 'get_type') else type(value), value


def override(kind, value):
  """A command-line value different from `value`, and what it parses to."""
  if kind is bool:
    return str(not value).lower(), not value
  if kind is int:
    return str((value or 0) + 3), (value or 0) + 3
  if kind is float:
    return repr((value or 0.0) + 0.5), (value or 0.0) + 0.5
  if kind is str:
    return 'changed', 'changed'
  if kind is tuple:
    return '(0.8,1.2)', (0.8, 1.2)
  raise AssertionError(f'no override for {kind}')


def parse(path, argv):
  """Parses argv as a launcher would (config_flags reads sys.argv when defined)."""
  saved = sys.argv
  sys.argv = ['prog'] + argv
  try:
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file('config', str(path), flag_values=fv, lock_config=True)
    fv(sys.argv)
    return fv.config
  finally:
    sys.argv = saved


@pytest.mark.parametrize('stage', STAGES)
def test_every_field_overridable(stage):
  path = ROOT / 'configs' / f'{stage}.py'
  for variant in ('quick', 'paper'):
    base = parse(path, [f'--config={path}:{variant}'])
    assert base.variant == variant
    argv, expected = [f'--config={path}:{variant}'], {}
    for name, kind, value in leaves(base):
      if name == 'variant':
        continue
      text, parsed = override(kind, value)
      argv.append(f'--config.{name}={text}')
      expected[name] = parsed
    cfg = parse(path, argv)
    for name, parsed in expected.items():
      got = cfg
      for part in name.split('.'):
        got = got[part]
      assert got == pytest.approx(parsed) if isinstance(parsed, float) else got == parsed, name
    with pytest.raises(AttributeError):
      cfg.no_such_field = 1  # locked: a typo in an override is an error


def test_paper_sizes():
  path = ROOT / 'configs'
  gan = parse(path / 'train_gan.py', [f'--config={path / "train_gan.py"}:paper'])
  gen = parse(path / 'generate.py', [f'--config={path / "generate.py"}:paper'])
  cls = parse(path / 'train_classifier.py', [f'--config={path / "train_classifier.py"}:paper'])
  assert gan.width == cls.width == 1.0 and gan.batch_size == 64
  assert gen.num_per_sign == 18_000 and cls.pretrain_per_class == 16_000
  assert cls.finetune_learning_rate == 1e-3
  quick = parse(path / 'train_gan.py', [f'--config={path / "train_gan.py"}:quick'])
  assert quick.width < 1


def test_unknown_variant_is_a_clear_error():
  path = ROOT / 'configs' / 'train_gan.py'
  with pytest.raises(Exception, match="unknown config variant 'papr'"):
    parse(path, [f'--config={path}:papr'])


@pytest.mark.parametrize('name', STAGES + ('reproduce', 'turing_test', 'config_lib'))
def test_every_field_has_a_comment(name):
  path = ROOT / ('cisl_jax' if name == 'config_lib' else 'configs') / f'{name}.py'
  text = path.read_text()
  assert '"""' in text
  for line in text.splitlines():
    if re.match(r'\s*c(\.\w+)+ = ', line) and not line.rstrip().endswith(('(', '[')):
      previous = text.splitlines()[text.splitlines().index(line) - 1]
      assert '#' in line or previous.strip().startswith('#'), line


def test_configs_import_no_trainer():
  """Loading every stage config imports no trainer, TensorFlow or Orbax (the GAN recipes
  block, cisl_jax/gan_recipes.py, brings JAX and optax)."""
  names = STAGES + ('reproduce', 'turing_test')
  code = ('import sys\n'
          'from cisl_jax import config_lib\n'
          f'for name in {names!r}:\n'
          f'  config_lib.load({str(ROOT / "configs")!r} + f"/{{name}}.py", "paper")\n'
          'bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "orbax")'
          ' or m.startswith("cisl_jax.train"))\n'
          'assert not bad, bad\n')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT, timeout=120)
