"""Tests of the patch rules, the HU window and the lung mask."""
import numpy as np
import pytest

from cisl_jax import signs
from cisl_jax.data import lung_mask
from cisl_jax.data import patches
from cisl_jax.data.records import BoxedSlice


def ct_slice(size=256):
  """Outside air, a soft-tissue body and two air-filled lungs, in HU."""
  yy, xx = np.mgrid[:size, :size] / size
  hu = np.full((size, size), -1000.0, np.float32)
  hu[((xx - .5) / .45) ** 2 + ((yy - .5) / .35) ** 2 < 1] = 40.0
  for cx in (.3, .7):
    hu[((xx - cx) / .16) ** 2 + ((yy - .5) / .27) ** 2 < 1] = -850.0
  hu[::9, ::9] += 30.0  # texture, so crops differ
  return hu


def _box(sign, x0, y0, x1, y1, path='s.npy'):
  return BoxedSlice('P1', path, sign, x0, y0, x1, y1)


def _cfg(**kw):
  c = patches.default_config()
  c.update(kw)
  return c


def test_window_maps_level_and_clips():
  w = patches.window(np.array([-2000., -1350., -600., 150., 3000.]), -600., 1500.)
  np.testing.assert_allclose(w, [-1, -1, 0, 1, 1])


def test_lung_mask_excludes_outside_air_and_body():
  hu = ct_slice()
  m = lung_mask.lung_mask(hu)
  assert m[128, int(.3 * 256)] and m[128, int(.7 * 256)]  # both lungs
  assert not m[5, 5] and not m[128, 128]  # outside air, mediastinum
  assert m.sum() < (hu < -400).sum() / 2


def test_small_box_is_centred():
  hu = ct_slice()
  res = patches.slice_patches(hu, [_box('GGO', 70, 100, 90, 130)], _cfg(backgrounds_per_slice=0),
                              np.random.default_rng(0))
  (p,) = res.patches
  assert p.kind == 'centred' and p.label == signs.code('GGO') and p.image.shape == (64, 64)
  img = patches.window(hu, -600., 1500.)
  np.testing.assert_array_equal(p.image, img[83:147, 48:112])  # centre (80, 115) -> crop


def test_box_near_edge_shifted_inside():
  hu = ct_slice()
  res = patches.slice_patches(hu, [_box('CV', 0, 240, 10, 256)], _cfg(backgrounds_per_slice=0),
                              np.random.default_rng(0))
  img = patches.window(hu, -600., 1500.)
  np.testing.assert_array_equal(res.patches[0].image, img[192:256, 0:64])


def test_large_box_windows_and_scaled():
  hu = ct_slice()
  box = _box('OP', 40, 60, 140, 100)  # 100 x 40: slid along x, centred along y
  res = patches.slice_patches(hu, [box], _cfg(backgrounds_per_slice=0, stride=32),
                              np.random.default_rng(0))
  kinds = [p.kind for p in res.patches]
  assert kinds == ['window'] * 3 + ['scaled']  # x starts 40, 72, 76 (last ends at 140)
  img = patches.window(hu, -600., 1500.)
  np.testing.assert_array_equal(res.patches[0].image, img[48:112, 40:104])
  np.testing.assert_array_equal(res.patches[2].image, img[48:112, 76:140])
  scaled = res.patches[3].image
  assert scaled.shape == (64, 64) and -1 <= scaled.min() and scaled.max() <= 1
  assert all(p.box == (40, 60, 140, 100) for p in res.patches)


def test_box_over_share_is_dropped_and_counted():
  hu = ct_slice()
  big = _box('OP', 10, 10, 150, 60)  # 140 > 0.5 * 256
  res = patches.slice_patches(hu, [big, _box('GGO', 70, 100, 90, 130)],
                              _cfg(backgrounds_per_slice=0), np.random.default_rng(0))
  assert res.dropped == [big] and [p.label for p in res.patches] == [0]
  res = patches.slice_patches(hu, [big], _cfg(backgrounds_per_slice=0, max_box_share=0.6),
                              np.random.default_rng(0))
  assert not res.dropped and res.patches


def test_background_in_lung_off_boxes_with_slice_signs():
  hu = ct_slice()
  box = _box('calcification', 60, 90, 100, 160)
  cfg = _cfg(backgrounds_per_slice=5)
  res = patches.slice_patches(hu, [box], cfg, np.random.default_rng(1))
  bg = [p for p in res.patches if p.kind == 'background']
  assert len(bg) == 5
  lung = lung_mask.lung_mask(hu, cfg.lung_mask)
  for p in bg:
    x0, y0, x1, y1 = p.box
    assert p.label == signs.NORMAL and x1 - x0 == 64 and y1 - y0 == 64
    assert lung[y0:y1, x0:x1].mean() >= cfg.background_min_lung
    assert x1 <= box.x0 or x0 >= box.x1 or y1 <= box.y0 or y0 >= box.y1
    assert p.slice_signs.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_background_keeps_off_sign_free_marks():
  # A sign-free box (e.g. a LIDC reader's small nodule, grown by a margin) gives no patch,
  # but no background patch may touch it, on a slice with or without a sign box.
  hu = ct_slice()
  marks = [_box(None, 40, 70, 50, 80), _box(None, 200, 180, 210, 190)]
  cfg = _cfg(backgrounds_per_slice=30)
  for recs in ([_box(None, 0, 0, 0, 0), *marks], [_box('GGO', 170, 140, 180, 150), *marks]):
    res = patches.slice_patches(hu, recs, cfg, np.random.default_rng(2))
    bg = [p for p in res.patches if p.kind == 'background']
    assert bg and len(res.patches) == len(bg) + (recs[0].sign is not None)
    for p in bg:
      x0, y0, x1, y1 = p.box
      for m in marks:
        assert x1 <= m.x0 or x0 >= m.x1 or y1 <= m.y0 or y0 >= m.y1, (p.box, m)
  # Without the marks, the same draws land on them: the test can fail.
  free = patches.slice_patches(hu, [_box(None, 0, 0, 0, 0)], cfg, np.random.default_rng(2))
  assert any(not (p.box[2] <= m.x0 or p.box[0] >= m.x1 or p.box[3] <= m.y0
                  or p.box[1] >= m.y1) for p in free.patches for m in marks)


def test_box_free_slice_and_determinism():
  hu = ct_slice()
  recs = [_box(None, 0, 0, 0, 0)]
  a = patches.extract(recs, _cfg(), 3, lambda p: hu)[0]
  b = patches.extract(recs, _cfg(), 3, lambda p: hu)[0]
  c = patches.extract(recs, _cfg(), 4, lambda p: hu)[0]
  assert [p.box for p in a] == [p.box for p in b] != [p.box for p in c]
  assert all(p.slice_signs.sum() == 0 for p in a)


def test_extract_skip_bad_and_box_outside():
  hu = ct_slice()

  def read(path):
    if path == 'bad.npy':
      raise ValueError('bad.npy: unreadable')
    return hu

  recs = [_box('GGO', 70, 100, 90, 130), _box('GGO', 1, 1, 9, 9, path='bad.npy')]
  with pytest.raises(ValueError, match='bad.npy'):
    patches.extract(recs, _cfg(), 0, read)
  got, _, skipped = patches.extract(recs, _cfg(), 0, read, skip_bad=True)
  assert skipped == [('bad.npy', 'bad.npy: unreadable')] and got
  with pytest.raises(ValueError, match='inside the 256x256 slice'):
    patches.extract([_box('GGO', 250, 1, 270, 9)], _cfg(), 0, read)
