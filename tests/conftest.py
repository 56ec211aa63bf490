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
