"""Shared test settings: CPU only, quiet TensorFlow, paths to the test data."""
import os
import pathlib

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

# Compile at LLVM -O0: a tiny test's time is mostly XLA compiling its steps, and -O0
# compiles about twice as fast (the three slowest tests: 421 s -> 279 s under load 6).
# Only the generated machine code's speed changes, not what it computes; benchmarks,
# the demo and every launcher outside the suite keep XLA's defaults.
FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAG}".strip()

import shutil  # pylint: disable=g-import-not-at-top
import tempfile  # pylint: disable=g-import-not-at-top

# One persistent XLA compilation cache for the whole run: the controller sets it before
# the xdist workers start, and they and the launchers they spawn inherit it, so a train
# step that several processes compile with the same tiny config is compiled once. It
# speeds the suite only; results are the same. Removed at the end of the run.
_OWN_CACHE = None  # the cache this process made (and removes), if any
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _OWN_CACHE = os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
      prefix='cisl-tests-xla-cache-')

import pytest  # pylint: disable=g-import-not-at-top


def pytest_sessionfinish(session):
  del session
  if _OWN_CACHE:  # only the process that made it: the controller, or a run without xdist
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)

# Real data is read in place from ../shared/fixtures beside the project's root (CI has it
# there too); the project carries no copy of it.
FIXTURES = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'fixtures'


def real_fixture(name: str) -> pathlib.Path:
  """The shared fixture folder `name`, or a skip that names the folder it looked for."""
  path = FIXTURES / name
  if not path.is_dir():
    pytest.skip(f'real fixture {path} is absent (it sits beside the project root, '
                f'in ../shared/fixtures/{name})')
  return path


@pytest.fixture
def fixture_dir() -> pathlib.Path:
  """The real Lung-PET-CT-Dx slices (CC BY 4.0) with PASCAL-VOC boxes."""
  return real_fixture('lung_pet_ct_dx')


@pytest.fixture
def lidc_fixture() -> pathlib.Path:
  """Three real LIDC-IDRI patients (CC BY 3.0): contoured slices and the readers' XML."""
  return real_fixture('lidc_idri')


@pytest.fixture
def run_killed_after(monkeypatch):
  """`run_killed_after(n, run)` runs `run()` with the tf.data training stream dying
  while it fetches batch n (as a killed process would), then restores the stream."""
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  real_batches = input_pipeline.train_batches

  def run_killed(num_batches: int, run) -> None:
    def dying(*args, **kwargs):
      stream = real_batches(*args, **kwargs)
      for _ in range(num_batches):
        yield next(stream)
      raise KeyboardInterrupt

    monkeypatch.setattr(input_pipeline, 'train_batches', dying)
    with pytest.raises(KeyboardInterrupt):
      run()
    monkeypatch.setattr(input_pipeline, 'train_batches', real_batches)

  return run_killed
