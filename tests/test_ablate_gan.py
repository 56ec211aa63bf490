"""bench/ablate_gan.py --variants: the quick config plus parsed overrides."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'bench'))
import ablate_gan  # pylint: disable=g-import-not-at-top,wrong-import-position
import common  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_variants_are_the_quick_config_plus_literal_overrides():
  variants = ablate_gan.parse_variants(
      " base; improved.classifier_augment='color,translation' ;"
      "improved.class_weight=0.3&loss_weights.kl=1;")
  assert variants == [('base', {}),
                      ("improved.classifier_augment='color,translation'",
                       {'improved.classifier_augment': 'color,translation'}),
                      ('improved.class_weight=0.3&loss_weights.kl=1',
                       {'improved.class_weight': 0.3, 'loss_weights.kl': 1})]
  args = ablate_gan.argparse.Namespace(data_dir='d', fold=1, seed=0, batch_size=None,
                                       plain=False)
  quick = common.load_config('train_gan', 'quick')
  base = ablate_gan.variant_config(args, {}, 600, 0.125)
  assert base.gan.to_dict() == quick.gan.to_dict() and base.fold == 1
  arm = ablate_gan.variant_config(args, variants[2][1], 600, 0.125)
  assert arm.gan.improved.class_weight == 0.3 and arm.gan.loss_weights.kl == 1.0
  assert arm.gan.improved.mode_seeking_weight == quick.gan.improved.mode_seeking_weight
  for bad in ('improved.clas_weight=0.3', 'kl=1', 'improved.diffaugment=color',
              'improved.class_weight'):
    with pytest.raises(ValueError, match='variant'):
      ablate_gan.parse_variants(bad)
  with pytest.raises(TypeError):  # ConfigDict keeps a field's type
    ablate_gan.variant_config(args, {'improved.class_weight': 'high'}, 600, 0.125)
