"""Tests of the phantom source: DICOM, manifest, counts, seeds and each sign's HU."""
import csv
import pathlib

import numpy as np
import pydicom
import pytest

from cisl_jax import signs
from cisl_jax.data.dicom import read_hu
from cisl_jax.data.sources import manifest
from cisl_jax.data.sources import phantom
from cisl_jax.data.sources import phantom_signs

SMALL = dict(seed=3, num_patients=6, counts={s: 3 for s in signs.SIGNS}, num_oversized=1)


@pytest.fixture(scope='module')
def small(tmp_path_factory):
  """A small phantom (27 kept boxes + 1 oversized over 6 patients) and its plan."""
  out = tmp_path_factory.mktemp('phantom') / 'ph'
  return phantom.write_phantom(out, **SMALL), phantom.plan_phantom(**SMALL)


def _rows(manifest_path):
  with open(manifest_path, newline='') as f:
    return list(csv.DictReader(f))


def test_dicom_headers_and_hu_ranges(small):
  manifest_path, plan = small
  root = manifest_path.parent
  patient = plan[0]
  free = next(s for s in patient.slices if not s.signs)
  ds = pydicom.dcmread(root / free.path)
  assert ds.Modality == 'CT' and ds.PatientID == patient.patient_id
  assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
  assert (ds.Rows, ds.Columns) == (512, 512) and ds.pixel_array.dtype == np.uint16
  assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024
  assert 0.6 <= float(ds.PixelSpacing[0]) <= 0.9
  uids = {pydicom.dcmread(root / s.path).SOPInstanceUID for s in patient.slices}
  assert len(uids) == len(patient.slices)
  hu = read_hu(root / free.path)
  anat = phantom.patient_anatomy(SMALL['seed'], 0)
  lung = anat.dist > 3
  assert -900 < np.median(hu[lung]) < -780
  assert abs(hu[:40, :40].mean() + 1000) < 15  # outside air
  assert hu.max() > 300  # bone
  assert -1024 <= hu.min()


def test_manifest_rows_counts_and_reader(small):
  manifest_path, plan = small
  rows = _rows(manifest_path)
  assert tuple(rows[0]) == phantom.COLUMNS
  for r in rows:
    assert (manifest_path.parent / r['path']).is_file()
    if r['sign']:
      x0, y0, x1, y1 = (int(r[k]) for k in ('x0', 'y0', 'x1', 'y1'))
      assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    else:
      assert r['x0'] == r['y0'] == r['x1'] == r['y1'] == ''
  found = {s: sum(r['sign'] == s for r in rows) for s in signs.SIGNS}
  want = dict(SMALL['counts'], OP=SMALL['counts']['OP'] + SMALL['num_oversized'])
  assert found == want
  # Every patient has box-free slices too; the team's manifest reader accepts it all.
  for p in plan:
    assert any(not s.signs for s in p.slices)
  records, skipped = manifest.load(str(manifest_path))
  assert not skipped and len(records) == len(rows)
  # The plan is what was written.
  planned = sorted((s.path, x.sign, x.box) for p in plan for s in p.slices for x in s.signs)
  written = sorted((r['path'], r['sign'], tuple(int(r[k]) for k in ('x0', 'y0', 'x1', 'y1')))
                   for r in rows if r['sign'])
  assert planned == written


def test_default_plan_counts_sizes_and_oversized():
  plan = phantom.plan_phantom()
  assert len(plan) == 120
  boxes = [x for p in plan for s in p.slices for x in s.signs]
  over = [x for x in boxes if x.oversized]
  assert len(over) == 4
  for x in over:  # the patch rule drops these: wider and taller than half the slice
    assert x.box[2] - x.box[0] > 256 and x.box[3] - x.box[1] > 256
  kept = [x for x in boxes if not x.oversized]
  assert all(max(x.box[2] - x.box[0], x.box[3] - x.box[1]) <= 256 for x in kept)
  assert {s: sum(x.sign == s for x in kept) for s in signs.SIGNS} == signs.PAPER_COUNTS
  big = {x.sign for x in kept if max(x.box[2] - x.box[0], x.box[3] - x.box[1]) > 64}
  assert {'AB', 'OP', 'CV', 'BMP'} <= big
  assert sum(any(s.signs for s in p.slices) for p in plan) >= 100
  for p in plan:
    for s in p.slices:
      for a in s.signs:
        assert 0 <= a.box[0] < a.box[2] <= 512 and 0 <= a.box[1] < a.box[3] <= 512
        for b in s.signs:  # boxes on one slice do not overlap
          if a is not b and not (a.oversized or b.oversized):
            assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or \
                a.box[3] <= b.box[1] or b.box[3] <= a.box[1]


def _disc(hu, x, y, r0, r1):
  yy, xx = np.mgrid[:hu.shape[0], :hu.shape[1]]
  d = np.hypot(xx - x, yy - y)
  return hu[(d >= r0) & (d <= r1)]


def test_each_sign_differs_from_lung_as_expected(small):
  manifest_path, plan = small
  root = manifest_path.parent
  seen = set()
  for p in plan:
    anat = phantom.patient_anatomy(SMALL['seed'], p.index)
    for s in p.slices:
      hu = read_hu(root / s.path) if s.signs else None
      for x in s.signs:
        seen.add(x.sign)
        q = x.params
        x0, y0, x1, y1 = x.box
        box = hu[y0:y1, x0:x1]
        where = f'{x.sign} in {s.path} at {x.box}'
        if x.sign == 'GGO':  # hazy: between lung and soft tissue (ring avoids a solid core)
          ring = _disc(hu, q['x'], q['y'], 0.45 * q['r'], 0.7 * q['r'])
          assert np.median(hu[anat.dist > 3]) + 40 < np.median(ring) < -250, where
        elif x.sign in ('lobulation', 'spiculation', 'PI'):  # solid
          # Soft tissue; a small nodule cut off-centre by a thick slab, blurred by a soft
          # kernel, keeps only part of its density (partial volume), as on real scans.
          assert -500 < np.median(_disc(hu, q['x'], q['y'], 0, 0.5 * q['r'])) < 120, where
        elif x.sign == 'calcification':
          assert box.max() > 200, where
        elif x.sign == 'CV':  # air inside a soft-tissue nodule
          inner = _disc(hu, q['x'], q['y'], 0, 0.95 * q['r'])
          assert inner.min() < -500 and np.percentile(inner, 90) > -100, where
        elif x.sign == 'BMP':
          segs = np.array(q['segs'])
          mids = [(int(round((a + c) / 2)), int(round((b + d) / 2))) for a, b, c, d in segs[:, :4]]
          assert np.median([hu[j, i] for i, j in mids]) > -150, where
        elif x.sign == 'AB':  # consolidation with air bronchi inside
          assert np.median(_disc(hu, q['x'], q['y'], 0, 0.5 * q['r'])) > -200, where
          # Thin bronchi in a thick slab are blurred and partly filled (partial volume):
          # darker than the consolidation around them by far, not always at -900.
          inner = _disc(hu, q['x'], q['y'], 0, 0.85 * q['r'])
          assert inner.min() < np.median(inner) - 400, where
        elif x.sign == 'OP' and not x.oversized:
          # Lobules consolidated 80-95 % on average (down to half in places), with air
          # bronchi: far above the lung (about -850), though its median can near -150.
          assert np.median(hu[phantom_signs.op_mask(anat, q)]) > -250, where
        # Every sign raises its box's density above the lung (subtle ones a little); a
        # faint GGO fills only part of its box, so its own ring check above stands for it.
        if not x.oversized and x.sign != 'GGO':
          lung = anat.dist[y0:y1, x0:x1] > 0
          assert box[lung].mean() > np.median(hu[anat.dist > 3]) + 30, where
  assert seen == set(signs.SIGNS)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
  kw = dict(num_patients=1, counts={'GGO': 1, 'CV': 1, 'OP': 1}, num_oversized=0)
  a = phantom.write_phantom(tmp_path / 'a', seed=11, **kw).parent
  b = phantom.write_phantom(tmp_path / 'b', seed=11, **kw).parent
  c = phantom.write_phantom(tmp_path / 'c', seed=12, **kw).parent
  files = sorted(f.relative_to(a) for f in a.rglob('*') if f.is_file())
  assert files == sorted(f.relative_to(b) for f in b.rglob('*') if f.is_file())
  for f in files:
    assert (a / f).read_bytes() == (b / f).read_bytes(), f
  dcm = next(f for f in files if f.suffix == '.dcm')
  assert pydicom.dcmread(a / dcm).PixelData != pydicom.dcmread(c / dcm).PixelData


def test_bad_arguments_and_atomic_write(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match='calcification'):
    phantom.plan_phantom(num_patients=1, counts={'calcificaton': 1})
  with pytest.raises(ValueError, match='num_patients'):
    phantom.plan_phantom(num_patients=0)
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'x.txt').write_text('keep')
  with pytest.raises(FileExistsError, match='overwrite=True'):
    phantom.write_phantom(tmp_path / 'full', num_patients=1, counts={'GGO': 1})
  # A failure half-way leaves neither the folder nor a temporary one behind.
  calls = []

  def failing(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise OSError('disk full')
    return real(*args, **kwargs)

  real = phantom.write_dicom
  monkeypatch.setattr(phantom, 'write_dicom', failing)
  with pytest.raises(OSError, match='disk full'):
    phantom.write_phantom(tmp_path / 'new', num_patients=1, counts={'GGO': 2},
                          free_slices=(1, 1))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['full']
  assert len(calls) == 2


def test_make_phantom_writes_series_a_dicom_reader_opens(tmp_path):
  import os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  root = pathlib.Path(__file__).resolve().parents[1]
  out = tmp_path / 'series'
  proc = subprocess.run(
      [sys.executable, 'launch/make_phantom.py', f'--out={out}',
       '--config.phantom.num_patients=2', '--config.phantom.num_oversized=0',
       '--config.phantom.free_slices=(2, 2)', '--config.seed=4'],
      cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().endswith('manifest.csv')
  for patient in sorted(p for p in out.iterdir() if p.is_dir()):
    series = [pydicom.dcmread(f) for f in sorted(patient.glob('*.dcm'))]
    assert len(series) >= 2 and len({d.SeriesInstanceUID for d in series}) == 1
    # The slices stack along the normal of their orientation, one thickness apart or more.
    z = sorted(float(d.ImagePositionPatient[2]) for d in series)
    assert np.all(np.diff(z) >= float(series[0].SliceThickness) - 1e-6)
    assert {tuple(d.PixelSpacing) for d in series} == {tuple(series[0].PixelSpacing)}
    volume = np.stack([d.pixel_array for d in series])
    assert volume.shape[1:] == (512, 512)
  # A second run into the same folder refuses, naming the fix.
  again = subprocess.run([sys.executable, 'launch/make_phantom.py', f'--out={out}'], cwd=root,
                         env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True,
                         text=True, timeout=300)
  assert again.returncode != 0 and 'overwrite' in again.stderr


def test_default_plan_spans_subtle_to_obvious_signs():
  """Conspicuity varies: faint and dense GGO, small and large nodules, AB in a nodule."""
  plan = phantom.plan_phantom()
  kept = [(p, x) for p in plan for s in p.slices for x in s.signs if not x.oversized]
  ggo = np.array([x.params['hu'] for _, x in kept if x.sign == 'GGO'])
  assert (ggo < -650).mean() > 0.2 and (ggo > -450).mean() > 0.1  # faint haze to dense
  for sign in ('lobulation', 'spiculation', 'PI', 'calcification'):
    # Radius in mm (params are in pixels): small to large.
    r_mm = np.array([x.params['r'] * p.spacing for p, x in kept if x.sign == sign])
    assert r_mm.min() < 4.5 and r_mm.max() > 6.5, sign
    # Some are cut near their pole by the slab: fainter and smaller than their size.
    z = np.array([x.params['z'] / x.params['r'] for p, x in kept if x.sign == sign])
    assert (z > 0.3).any(), sign
  # Air bronchograms in nodules (radius under 10 mm) and in large consolidations.
  ab_mm = np.array([x.params['r'] * p.spacing for p, x in kept if x.sign == 'AB'])
  assert (ab_mm < 10).mean() > 0.15 and ab_mm.max() > 20


def test_vessels_are_curved_tapering_connected_branches():
  from cisl_jax.data.sources import phantom_anatomy  # pylint: disable=g-import-not-at-top
  anat = phantom.patient_anatomy(0, 0)
  (hx, hy), (mx, my) = anat.hila[0], anat.centroids[0]
  segs = np.array(phantom_anatomy.vessel_tree(np.random.default_rng(0), anat, hx, hy,
                                              np.arctan2(my - hy, mx - hx), 2.5 * anat.scale))
  assert len(segs) >= 9 and len(segs) % 3 == 0  # branches of three pieces
  pieces = segs.reshape(-1, 3, 6)
  # Each branch is continuous, tapers and turns (not a straight stick).
  assert np.allclose(pieces[:, :-1, 2:4], pieces[:, 1:, 0:2])
  assert np.all(pieces[:, :, 5] <= pieces[:, :, 4] + 1e-6)
  d = pieces[:, :, 2:4] - pieces[:, :, 0:2]
  turn = np.abs(np.angle((d[:, 2, 0] + 1j * d[:, 2, 1]) / (d[:, 0, 0] + 1j * d[:, 0, 1])))
  assert np.median(turn) > 0.05


def test_a_nodule_with_a_subsolid_margin_is_densest_at_its_core():
  anat, scan = phantom.patient_anatomy(0, 0), phantom.patient_scan(0, 0)
  ys, xs = np.nonzero(anat.dist > 40)
  x, y, r = float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), 12 * anat.scale
  p = dict(x=x, y=y, r=r, harm=[], hu=40.0, z=0.0, edge=1.0)
  img = {}
  for margin in ((0.4, 0.4), None):
    img[margin] = np.full((anat.size, anat.size), -860.0, np.float32)
    phantom_signs._nodule(img[margin], p, anat, np.random.default_rng(0), scan, margin=margin)
  core = _disc(img[(0.4, 0.4)], x, y, 0, 0.3 * r).mean()
  rim = _disc(img[(0.4, 0.4)], x, y, 0.75 * r, 0.9 * r).mean()
  assert core > 0 and rim < core - 200  # solid core, partly sub-solid rim
  assert _disc(img[None], x, y, 0.75 * r, 0.9 * r).mean() > rim + 200  # even without


def test_files_do_not_depend_on_the_number_of_worker_processes(tmp_path):
  kw = dict(seed=5, num_patients=3, counts={'GGO': 1, 'CV': 1, 'AB': 1, 'OP': 1},
            num_oversized=1, size=256)
  one = phantom.write_phantom(tmp_path / 'one', workers=1, **kw).parent
  two = phantom.write_phantom(tmp_path / 'two', workers=2, **kw).parent
  files = sorted(f.relative_to(one) for f in one.rglob('*') if f.is_file())
  assert len([f for f in files if f.suffix == '.dcm']) >= 3
  assert files == sorted(f.relative_to(two) for f in two.rglob('*') if f.is_file())
  for f in files:
    assert (one / f).read_bytes() == (two / f).read_bytes(), f


@pytest.mark.parametrize('seed', [0, 1])
def test_small_slices_render_for_any_seed(seed):
  # At 128-256 px the pleural band holds no pixel; a scar must then start inside the lung.
  got = list(phantom.iter_slices(seed=seed, num_patients=2, counts={'GGO': 1, 'PI': 1},
                                 num_oversized=0, size=128))
  assert got and all(hu.shape == (128, 128) for _, _, hu in got)
