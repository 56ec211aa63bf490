"""Shared test settings: CPU only, quiet TensorFlow, paths to the test data."""
import os
import pathlib

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import pytest  # pylint: disable=g-import-not-at-top

TEST_DATA = pathlib.Path(__file__).parent / 'data'
FIXTURE = TEST_DATA / 'lung_pet_ct_dx'


@pytest.fixture
def fixture_dir() -> pathlib.Path:
  """The real Lung-PET-CT-Dx slices (CC BY 4.0) with PASCAL-VOC boxes."""
  return FIXTURE



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
