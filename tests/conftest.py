"""Shared test settings: CPU only, quiet TensorFlow, paths to the test data."""
import os
import pathlib

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import pytest  # pylint: disable=g-import-not-at-top

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
