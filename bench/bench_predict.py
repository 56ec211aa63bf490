r"""predict's speed: one 512x512 slice at stride 8, and a 100-slice series.

  python bench/bench_predict.py [--width=0.125] [--stride=8] [--series=100] [--cores=2] \
      [--slice=../shared/fixtures/lung_pet_ct_dx/A0001/021.dcm] [--classifier_workdir=W]

Without --classifier_workdir, a 10-class classifier of --width is initialised and saved
to a temporary workdir (speed does not depend on the weights). The slice is a real CT
slice (its lung field sets how many windows run); the series is that slice written
--series times with its own UIDs. Prints one JSON line: the windows per slice; the map
(windows + jitted evaluation) of one slice, median of --repeats after one compiling call;
one slice through the whole of predict (CSV, PNG, DICOM Segmentation); the series through
the whole of predict. Pins the process to --cores CPUs before JAX starts.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _classifier(width: float, tmp: str) -> str:
  """A saved, untrained 10-class classifier workdir of `width`."""
  from cisl_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from cisl_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import classifier  # pylint: disable=g-import-not-at-top
  from cisl_jax.train import common  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('cfg', REPO / 'configs' / 'train_classifier.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('quick')
  config.width = width
  workdir = os.path.join(tmp, f'ten_w{width:g}')
  init_key, _, _ = common.split_keys(config.seed)
  _, state, _, _ = classifier.init_state(config, init_key)
  ckpt = checkpointing.Checkpoints(workdir, save_every=1)
  ckpt.maybe_save(1, state, force=True)
  ckpt.close()
  workdir_lib.write_json(os.path.join(workdir, 'config.json'), common.to_dict(config))
  return workdir


def _series(slice_path: str, n: int, folder: str) -> str:
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  ds = pydicom.dcmread(slice_path)
  series = uid.generate_uid()
  os.makedirs(folder)
  for i in range(n):
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.SeriesInstanceUID = series
    ds.InstanceNumber = i + 1
    ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], -2.5 * i]
    ds.save_as(os.path.join(folder, f'{i:04d}.dcm'))
  return folder


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--width', type=float, default=0.125, help='0.125: the demo; 1.0: the paper')
  p.add_argument('--stride', type=int, default=8)
  p.add_argument('--series', type=int, default=100, help='slices in the series (0: skip)')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--cores', type=int, default=2)
  p.add_argument('--slice', default=str(REPO.parent / 'shared' / 'fixtures' /
                                        'lung_pet_ct_dx' / 'A0001' / '021.dcm'))
  p.add_argument('--classifier_workdir', default=None)
  a = p.parse_args()
  if a.cores and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:a.cores])
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  if not os.path.isfile(a.slice):
    raise SystemExit(f'{a.slice}: no such slice; pass --slice=a 512x512 chest CT DICOM.')
  import importlib.util  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import inputs  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import maps as maps_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import model as model_lib  # pylint: disable=g-import-not-at-top
  from cisl_jax.predict import run as run_lib  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('pcfg', REPO / 'configs' / 'predict.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.stride = a.stride
  with tempfile.TemporaryDirectory(prefix='bench-predict-') as tmp:
    workdir = a.classifier_workdir or _classifier(a.width, tmp)
    model = model_lib.restore(workdir, config.batch_size)
    s = inputs.read_slice(a.slice, [])
    sign_probs = lambda w: model.sign_probs(model.probs(w))
    t0 = time.perf_counter()
    m = maps_lib.slice_maps(s.hu, config, sign_probs, a.slice)  # compiles
    first = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
      t0 = time.perf_counter()
      maps_lib.slice_maps(s.hu, config, sign_probs, a.slice)
      times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    run_lib.predict(config, workdir, a.slice, os.path.join(tmp, 'one'))
    one = time.perf_counter() - t0
    result = {'bench': 'predict', 'width': model.config.width, 'stride': a.stride,
              'cores': a.cores, 'slice': s.hu.shape, 'windows': int(m.grid.run.sum()),
              'map_s_first_call': round(first, 3),
              'map_s_median': round(statistics.median(times), 3),
              'predict_one_slice_s': round(one, 3), 'load_avg_1min': os.getloadavg()[0]}
    if a.series:
      folder = _series(a.slice, a.series, os.path.join(tmp, 'series'))
      t0 = time.perf_counter()
      run_lib.predict(config, workdir, folder, os.path.join(tmp, 'series_out'))
      total = time.perf_counter() - t0
      result.update({'series_slices': a.series, 'predict_series_s': round(total, 1),
                     'predict_series_s_per_slice': round(total / a.series, 3)})
  print(json.dumps(result))


if __name__ == '__main__':
  main()
