"""`predict`: a trained classifier over new scans, into one output folder.

For every slice of the input: boxes mode where boxes are given (each box's combined
class probabilities), map mode otherwise (a probability map per sign over the lung
field and its detections); `config.mode` forces one of them. The output folder holds
predictions.csv, png/ (one PNG per slice), dicom/ (a Segmentation per series of mapped
slices) and summary.json. It is written in a temporary folder beside it and renamed into
place only when everything is done, so a failure leaves nothing at --out.
"""
import json
import os
import time
from typing import Any

from absl import logging
import ml_collections
import numpy as np

from cisl_jax import terminal
from cisl_jax import workdir as workdir_lib
from cisl_jax.data import dicom
from cisl_jax.data import patches as patches_lib
from cisl_jax.predict import boxes as boxes_lib
from cisl_jax.predict import inputs
from cisl_jax.predict import maps as maps_lib
from cisl_jax.predict import model as model_lib
from cisl_jax.predict import outputs

MODES = ('auto', 'boxes', 'map')
CSV_FILE = 'predictions.csv'
SUMMARY_FILE = 'summary.json'
MAPS_DIR = 'maps'  # config.save_maps: <nnnn>.npz per mapped slice


class OutputError(ValueError):
  """An --out folder that cannot be written; the message names it and the fix."""


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses bad settings before anything is read or written."""
  if config.mode not in MODES:
    raise ValueError(f'config.mode={config.mode!r}: use one of {", ".join(MODES)}.')
  if config.combine not in boxes_lib.COMBINE:
    raise ValueError(f'config.combine={config.combine!r}: use one of '
                     f'{", ".join(boxes_lib.COMBINE)}.')
  if config.stride < 1:
    raise ValueError(f'config.stride={config.stride}: use a stride of at least 1 pixel.')
  if not 0.0 < config.threshold <= 1.0:
    raise ValueError(f'config.threshold={config.threshold}: use a probability in (0, 1].')
  if config.box:
    inputs.parse_box(config.box)


def patch_rules(config: ml_collections.ConfigDict,
                model: model_lib.Classifier) -> ml_collections.ConfigDict:
  """The patch rules: those the model's dataset was cut with (its card), if found."""
  rules = config.patches
  if config.patches_from_card:
    from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    from cisl_jax.data import card as card_lib  # pylint: disable=g-import-not-at-top
    path = _card_path(model, input_pipeline.dataset_dir, card_lib.CARD_NAME)
    if os.path.isfile(path):
      with open(path) as f:
        saved = json.load(f)['config']['patches']
      rules = ml_collections.ConfigDict(saved)
      logging.info('patch rules from %s', path)
    else:
      logging.warning('%s not found: using config.patches as the patch rules (HU window, '
                      'patch size); they must be those the model was trained with.', path)
  return rules


def _card_path(model: model_lib.Classifier, dataset_dir, card_name: str) -> str:
  """The dataset card of the model's training data.

  A relative `data_dir` (the demo records `data`) is looked for under the working
  directory first, then under each folder above the classifier's workdir: training ran
  from one of them, and predict is often run from elsewhere. Falls back to the first.
  """
  data_dir, source = model.config.data_dir, model.config.source
  roots = [''] if os.path.isabs(data_dir) else ['', *_ancestors(model.workdir)]
  paths = [os.path.join(dataset_dir(os.path.join(root, data_dir), source), card_name)
           for root in roots]
  return next((path for path in paths if os.path.isfile(path)), paths[0])


def _ancestors(folder: str) -> list[str]:
  """Every folder above `folder`, nearest first."""
  out = []
  while os.path.dirname(folder) != folder:
    folder = os.path.dirname(folder)
    out.append(folder)
  return out


def _check_out(out: str) -> None:
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise OutputError(f'{out} already exists and is not an empty folder; give a new --out '
                      '(or delete it) so that earlier results are not mixed with these.')


def _safe(name: str) -> str:
  return ''.join(c if c.isalnum() or c in '._-' else '_' for c in name)


class _Progress:
  def __init__(self, total: int):
    self.total, self.start = total, time.perf_counter()

  def __call__(self, done: int) -> None:
    dt = time.perf_counter() - self.start
    rate = done / max(dt, 1e-9)
    terminal.status(f'predict: {done}/{self.total} slices, {rate:.2f} slices/s, '
                    f'ETA {(self.total - done) / max(rate, 1e-9):.0f} s')


def predict(config: ml_collections.ConfigDict, classifier_workdir: str, input_path: str,
            out: str) -> dict[str, Any]:
  """Runs predict; returns the summary (also written to <out>/summary.json)."""
  check_config(config)
  out = os.path.abspath(out)
  _check_out(out)
  listed = inputs.entries(input_path)
  model = model_lib.restore(classifier_workdir, config.batch_size)
  config = ml_collections.ConfigDict(config.to_dict())
  config.patches = patch_rules(config, model)
  if config.box:
    listed = [(p, [inputs.parse_box(config.box)]) for p, _ in listed]
  with workdir_lib.atomic_dir(out) as tmp:
    summary = _run(config, model, listed, tmp)
    summary['out'] = out
    workdir_lib.write_json(os.path.join(tmp, SUMMARY_FILE), summary)
    _check_out(out)  # nothing appeared there meanwhile
  print(f'predict: {summary["num_slices"]} slices ({summary["num_mapped"]} mapped, '
        f'{summary["num_boxes"]} boxes classified, {summary["num_detections"]} detections); '
        f'wrote {os.path.join(out, CSV_FILE)}')
  return summary


def _run(config, model: model_lib.Classifier, listed, tmp: str) -> dict[str, Any]:
  """Every slice into `tmp`: PNGs as it goes, then the CSV and the DICOM segmentations."""
  os.makedirs(os.path.join(tmp, 'png'))
  names = model.mapped_signs
  class_probs = model.probs
  sign_probs = lambda w: model.sign_probs(model.probs(w))
  rows, skipped, mapped = [], [], []
  n_boxes = n_det = 0
  progress = _Progress(len(listed))
  for i, (path, given) in enumerate(listed):
    try:
      s = inputs.read_slice(path, given)
      img = patches_lib.window(s.hu, config.patches.hu_level, config.patches.hu_width)
      use_boxes = config.mode == 'boxes' or (config.mode == 'auto' and s.boxes)
      if use_boxes:
        results, skip = boxes_lib.classify_boxes(img, s.boxes, config, class_probs, path)
        maps, labelled = None, []
      else:
        compact = maps_lib.slice_maps(s.hu, config, sign_probs, path)
        maps = compact.full()
        found = maps_lib.detections(maps, names, config.threshold)
        results, skip = [], []
    except (dicom.DicomError, maps_lib.EmptyLungError) as e:
      if not config.skip_bad:
        raise
      skipped.append(str(e))
      logging.warning('skipped: %s', e)
      progress(i + 1)
      continue
    skipped.extend(skip)
    for msg in skip:
      logging.warning('%s', msg)
    base = dict(file=path, sop_instance_uid=s.sop_uid)
    if use_boxes:
      for r in results:
        best = int(np.argmax(r.probs))
        rows.append(dict(base, kind='box', sign=model.class_names[best],
                         probability=float(r.probs[best]), x0=r.box[0], y0=r.box[1],
                         x1=r.box[2], y1=r.box[3], mean_probability='',
                         given_sign=r.given_sign or '',
                         **{f'p_{n}': float(p) for n, p in zip(model.class_names, r.probs)}))
        labelled.append((model.class_names[best],
                         f'{model.class_names[best]} {r.probs[best]:.2f}', r.box))
      n_boxes += len(results)
    else:
      for d in found:
        rows.append(dict(base, kind='detection', sign=d.sign, probability=d.peak,
                         x0=d.box[0], y0=d.box[1], x1=d.box[2], y1=d.box[3],
                         mean_probability=d.mean, given_sign=''))
      # Every detection's box is drawn; the strongest `max_labels` get their text.
      strongest = sorted(found, key=lambda d: -d.peak)[:config.max_labels]
      labelled = [(d.sign, f'{d.sign} {d.peak:.2f}' if d in strongest else '', d.box)
                  for d in found]
      n_det += len(found)
      mapped.append((s, compact))
      if config.save_maps:  # e.g. for a threshold sweep (cisl_jax/predict/froc.py)
        workdir_lib.save_npz(os.path.join(tmp, MAPS_DIR, f'{i:04d}.npz'), **compact.arrays(),
                             signs=np.array(names), slice_file=np.array(path),
                             sop_instance_uid=np.array(s.sop_uid))
    title = (f'{os.path.basename(path)}  ·  {model.task} model {os.path.basename(model.workdir)}'
             f' step {model.step}  ·  ' + ('boxes' if use_boxes else
                                           f'stride {config.stride}, threshold {config.threshold}'))
    png = outputs.slice_png(img, maps, names, labelled, [b.xyxy for b in s.boxes]
                            if not use_boxes else [], title, config.overlay_min)
    with open(os.path.join(tmp, 'png', f'{i:04d}_{_safe(os.path.basename(path))}.png'),
              'wb') as f:
      f.write(png)
    progress(i + 1)
  with open(os.path.join(tmp, CSV_FILE), 'w') as f:
    f.write(outputs.csv_text(rows, model.class_names))
  seg_files = _write_segmentations(config, model, mapped, tmp) if config.dicom else []
  return {
      'classifier_workdir': model.workdir, 'checkpoint_step': model.step, 'task': model.task,
      'mapped_signs': names, 'config': config.to_dict(), 'num_slices': len(listed),
      'num_mapped': len(mapped), 'num_boxes': n_boxes, 'num_detections': n_det,
      'segmentations': seg_files, 'skipped': skipped,
  }


def _write_segmentations(config, model, mapped, tmp: str) -> list[str]:
  """One DICOM Segmentation per series of mapped slices (cisl_jax.predict.dicom_out)."""
  if not mapped:
    return []
  from cisl_jax.predict import dicom_out  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(tmp, 'dicom'))
  by_uid = {s.sop_uid: m for s, m in mapped}
  written = []
  for k, series in enumerate(inputs.group_series([s for s, _ in mapped])):
    stack = np.stack([by_uid[s.sop_uid].full() for s in series])
    seg = dicom_out.segmentation([s.dataset for s in series], stack, model.mapped_signs,
                                 series_number=900 + k,
                                 description=f'CISL maps, {model.task}, stride {config.stride}')
    name = dicom_out.SEG_FILE.format(index=k, series=_safe(series[0].series_uid)[-24:])
    seg.save_as(os.path.join(tmp, 'dicom', name))
    written.append(os.path.join('dicom', name))
  return written
