"""Config of `launch/predict.py`: a trained classifier's signs on new scans.

Run (from the repo root), after a classifier stage (e.g. the demo's):
  python launch/predict.py --classifier_workdir=workdir/quick/fold0/ten_finetune \
      --input=path/to/series_folder --out=predictions/series1
  one box on one slice:  --input=slice.dcm --config.box=200,180,240,230
  a manifest with boxes: --input=manifest.csv (boxes mode for slices with a box)
Expected runtime: about a second per 512x512 slice at stride 8 on 2 CPU cores for the
quick width (see BUILD_NOTES for the measured figures); the first slice also compiles.
The model (task, sign, width) comes from the classifier run's own config.json.
"""
import ml_collections
from ml_collections import config_dict

from cisl_jax.data import patches


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg  # one variant: the model, not the config, differs between quick and paper runs
  c = ml_collections.ConfigDict()
  # 'auto': boxes mode for slices with boxes, map mode for the others; 'boxes' or 'map'
  # forces one (map mode on a boxed manifest draws the boxes dashed, e.g. for bench/froc.py).
  c.mode = 'auto'
  c.box = config_dict.placeholder(str)  # 'x0,y0,x1,y1': this box on every input slice
  # How a box cut into several patches (window + scaled) gets one probability vector:
  # 'mean' of the patches, 'max' per class, or 'scaled' (the scaled copy of the whole box).
  c.combine = 'mean'
  c.stride = 8  # map mode: pixels between neighbouring 64x64 windows
  c.threshold = 0.5  # map mode: a detection is a connected region at or above this
  c.margin_px = 16.0  # map mode: the lung mask widened by this (pleura, edge consolidation)
  c.batch_size = 256  # windows per call of the jitted evaluation step
  # Patch rules (HU window, size, box rules, lung mask): taken from the dataset card of the
  # model's training data when it is found, else these (which must match training).
  c.patches_from_card = True
  c.patches = patches.default_config()
  c.overlay_min = 0.3  # PNG: maps are drawn where the probability is at least this
  c.max_labels = 12  # PNG: every detection's box is drawn, the strongest this many labelled
  c.dicom = True  # write a DICOM Segmentation per series of mapped slices
  # Also write maps/<nnnn>.npz per mapped slice (maps_lib.SliceMaps.from_arrays reads it).
  c.save_maps = False
  c.skip_bad = False  # skip (and list) non-CT, multi-frame or lung-less slices
  c.lock()
  return c
