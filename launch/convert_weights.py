r"""Converts ImageNet weights (Keras .h5/.keras or torchvision .pth) for the transfer baselines.

  python launch/convert_weights.py --source=keras --arch=vgg16 \
      --input=vgg16_weights_tf_dim_ordering_tf_kernels.h5 --output=weights/imagenet/vgg16
  python launch/convert_weights.py --source=torch --arch=alexnet \
      --input=alexnet-owt-7be5be79.pth --output=weights/imagenet/alexnet

Then: --config.mode=transfer --config.transfer.arch=vgg16
--config.transfer.weights=weights/imagenet (a folder of per-arch folders, or one of them).
Takes seconds to a minute (VGG16 is 528 MB). Needs torch only for --source=torch.
"""
import sys

from cisl_jax import terminal  # pylint: disable=g-bad-import-order (first: quiets TF's start-up)

from absl import app
from absl import flags

from cisl_jax.models import convert
from cisl_jax.models import transfer

_SOURCE = flags.DEFINE_enum('source', None, list(transfer.SOURCES),
                            'keras (keras.applications file) or torch (torchvision .pth).')
_ARCH = flags.DEFINE_enum('arch', None, list(transfer.ARCHS), 'Network in the file.')
_INPUT = flags.DEFINE_string('input', None, 'Weight file to convert.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder to write (meta.json + Orbax state/).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing --output folder.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  terminal.quiet_libraries()
  try:
    meta = convert.convert(_SOURCE.value, _ARCH.value, _INPUT.value, _OUTPUT.value,
                           overwrite=_OVERWRITE.value)
  except convert.ConversionError as e:
    sys.exit(f'convert_weights: {e}')
  print(f'{_OUTPUT.value}: {meta["arch"]} from {meta["source"]} weights; inputs are '
        f'normalised "{meta["normalisation"]}".', flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['source', 'arch', 'input', 'output'])
  app.run(main)
