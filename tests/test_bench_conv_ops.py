"""The shifted-matmul convolution variants of bench/bench_conv_ops.py (issue 16) against lax."""
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'bench'))
bench_conv_ops = pytest.importorskip('bench_conv_ops')  # imports tensorflow


@pytest.mark.parametrize('shape', [(2, 8, 3, 5), (1, 6, 2, 4), (3, 12, 4, 7)])
def test_shift9_variants_match_lax(shape):
  b, h, i, o = shape
  rng = np.random.default_rng(1)
  x = rng.standard_normal((b, h, h, i), np.float32)
  k = rng.standard_normal((5, 5, i, o), np.float32)
  g = rng.standard_normal((b, h // 2, h // 2, o), np.float32)
  variants = bench_conv_ops.shift9_ops(x, k, g)
  assert {'shift9_fwd', 'shift9_kgrad', 'shift9_igrad'} <= set(variants)
  for name, (fn, args, ref) in variants.items():
    bench_conv_ops.check(name, fn, args, ref)


def test_check_rejects_a_wrong_result():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((1, 6, 6, 2), np.float32)
  k = rng.standard_normal((5, 5, 2, 3), np.float32)
  g = rng.standard_normal((1, 3, 3, 3), np.float32)
  fn, args, ref = bench_conv_ops.shift9_ops(x, k, g)['shift9_fwd']
  with pytest.raises(AssertionError):
    bench_conv_ops.check('perturbed', lambda *a: fn(*a) * 1.01, args, ref)
