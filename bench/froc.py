r"""FROC of predict's map-mode detections on a fold's held-out slices (no boxes given).

  python bench/froc.py --workdir=workdir/quick --data_dir=data [--fold=0] \
      [--stage=ten_finetune] [--stride=8] [--out=DIR] [--max_slices=N] [--no-dicom]

Runs `cisl_jax.predict` with the fold's classifier (default: the 10-class fine-tuned
model of fold 0 of a reproduce run) over every slice of that fold's held-out patients,
in map mode, and scores its detections against the boxes: sign-level sensitivity (share
of boxed signs with a detection of the same sign overlapping the box) and false
positives per slice, at the default threshold and over a threshold sweep. Writes
<out>/froc.json, froc.csv and froc.png (default out: <workdir>/froc_fold<k>), plus the
predict output folder <out>/predict. The slices come from the dataset's source: a
manifest's own files, or (phantom) the phantom written again from the dataset card's
seed and settings into <out>/phantom (kept, and reused by a rerun). Boxes the
dataset drops (over half the slice) are not counted.
"""
import argparse
import csv
import io
import json
import os
import pathlib
import shutil
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import ml_collections  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _load_config(name):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(f'froc_{name}', REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def held_out_slices(data_dir: str, source: str, fold: int, tmp: str):
  """({slice path: [(sign, box)]} of the fold's patients, the patch rules), from the card."""
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from cisl_jax.data import card as card_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.data import patches as patches_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  from cisl_jax.data.sources import manifest as manifest_lib  # pylint: disable=g-import-not-at-top
  card_path = os.path.join(input_pipeline.dataset_dir(data_dir, source), card_lib.CARD_NAME)
  if not os.path.isfile(card_path):
    raise SystemExit(f'{card_path} not found: --data_dir must hold the dataset the model '
                     f'was trained on (launch/make_dataset.py --source={source}).')
  with open(card_path) as f:
    card = json.load(f)
  cfg = ml_collections.ConfigDict(card['config'])
  patients = set(card['folds'][f'fold{fold}']['patients'])
  if source == 'phantom':
    manifest = os.path.join(tmp, 'phantom', 'manifest.csv')
    if not os.path.isfile(manifest):  # kept in <out>/phantom for a rerun
      print(f'froc: writing the phantom again (seed {cfg.seed}) to read fold {fold}\'s slices')
      manifest = tfds_builder.write_phantom(os.path.join(tmp, 'phantom'), cfg)
  else:
    manifest = card['input']
  records, _ = manifest_lib.load(manifest, check_slices=False)
  rows = {}
  for r in records:
    if r.patient_id not in patients:
      continue
    boxes = rows.setdefault(r.path, [])
    if r.sign is None:
      continue
    boxes.append((r.sign, (r.x0, r.y0, r.x1, r.y1)))
  if not rows:
    raise SystemExit(f'{card_path}: fold {fold} lists no slices of patients {sorted(patients)[:5]}')
  return rows, cfg.patches


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True, help='a reproduce.py --workdir')
  p.add_argument('--data_dir', required=True, help='the data folder it was trained on')
  p.add_argument('--fold', type=int, default=0)
  p.add_argument('--stage', default='ten_finetune', help='classifier stage folder of the fold')
  p.add_argument('--stride', type=int, default=8)
  p.add_argument('--out', default=None)
  p.add_argument('--max_slices', type=int, default=0,
                 help='score this many held-out slices, evenly spaced in path order '
                      '(0: all); the JSON names how many of how many')
  p.add_argument('--dicom', action=argparse.BooleanOptionalAction, default=True,
                 help="predict's DICOM Segmentation output (its writing is most of the time)")
  a = p.parse_args()
  from cisl_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.data import dicom  # pylint: disable=g-import-not-at-top
  from cisl_jax.data import patches as patches_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import froc  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import maps as maps_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import run as run_lib  # pylint: disable=g-import-not-at-top

  stage = workdir_lib.stage_dir(a.workdir, a.fold, a.stage)
  train = workdir_lib.read_config(stage, 'froc needs the fold\'s classifier stage '
                                  '(--workdir of reproduce.py, --stage)')
  source = train['source']
  out = pathlib.Path(a.out or pathlib.Path(a.workdir) / f'froc_fold{a.fold}')
  config = _load_config('predict')
  config.mode, config.stride, config.save_maps, config.dicom = 'map', a.stride, True, a.dicom
  out.mkdir(parents=True, exist_ok=True)
  if (out / 'predict').exists():
    shutil.rmtree(out / 'predict')  # a previous run's; predict refuses to mix results
  with tempfile.TemporaryDirectory(prefix='froc-') as tmp:
    rows, rules = held_out_slices(a.data_dir, source, a.fold, str(out))
    total_slices = len(rows)
    if 0 < a.max_slices < total_slices:  # a deterministic, evenly spaced subset
      keep = sorted(rows)[::-(-total_slices // a.max_slices)]
      rows = {k: rows[k] for k in keep}
    # Boxes the dataset's size rule drops are not counted; the rest are the truth.
    truth, manifest_rows, dropped = {}, ['patient_id,path,sign,x0,y0,x1,y1'], 0
    for path, boxes in sorted(rows.items()):
      shape = dicom.read_hu(path).shape
      kept = [(s, b) for s, b in boxes if not patches_lib.too_large(b, shape, rules)]
      dropped += len(boxes) - len(kept)
      truth[path] = kept
      manifest_rows.append(f'p,{path},,,,,')
    manifest = os.path.join(tmp, 'manifest.csv')
    with open(manifest, 'w') as f:
      f.write('\n'.join(manifest_rows) + '\n')
    summary = run_lib.predict(config, str(stage), manifest, str(out / 'predict'))
  names = summary['mapped_signs']
  slice_maps = []
  for f in sorted((out / 'predict' / run_lib.MAPS_DIR).iterdir()):
    with np.load(f) as a_:
      slice_maps.append((truth[str(a_['slice_file'])], maps_lib.SliceMaps.from_arrays(a_)))
  thresholds = sorted(set(THRESHOLDS) | {float(config.threshold)})
  points = froc.sweep(slice_maps, names, thresholds)
  default = next(pt for pt in points if pt.threshold == float(config.threshold))
  phantom = ' (a PHANTOM: synthetic CT, not patients)' if source == 'phantom' else ''
  title = (f'FROC, fold {a.fold} held-out slices, {a.stage}, stride {a.stride}{phantom}')
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator='\n')
  w.writerow(['threshold', 'sensitivity', 'fp_per_slice', 'found', 'boxes',
              'false_positives'] + [f'sens_{n}' for n in names])
  for pt in points:
    w.writerow([pt.threshold, f'{pt.sensitivity:.4f}', f'{pt.fp_per_slice:.4f}', pt.found,
                pt.boxes, pt.false_positives] + [
                    f'{pt.per_sign[n][0] / pt.per_sign[n][1]:.4f}' if n in pt.per_sign else ''
                    for n in names])
  workdir_lib.write_text(out / 'froc.csv', buf.getvalue())
  workdir_lib.write_json(out / 'froc.json', {
      'source': source, 'phantom': source == 'phantom', 'fold': a.fold,
      'classifier': str(stage), 'stride': a.stride, 'slices': len(slice_maps),
      'held_out_slices': total_slices,
      'boxes': default.boxes, 'boxes_dropped_by_size_rule': dropped,
      'default_threshold': config.threshold,
      'points': [pt.__dict__ for pt in points]})
  froc.plot(points, float(config.threshold), title, str(out / 'froc.png'))
  print(f'froc{phantom}: fold {a.fold}, {len(slice_maps)} of {total_slices} held-out slices, '
        f'{default.boxes} '
        f'boxed signs; at threshold {config.threshold:g}: sensitivity {default.sensitivity:.3f} '
        f'({default.found}/{default.boxes}), {default.fp_per_slice:.2f} false positives per '
        f'slice; sweep in {out / "froc.csv"}, plot {out / "froc.png"}')


if __name__ == '__main__':
  main()
