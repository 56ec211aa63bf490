"""Tests of the report writer on a synthetic reproduce workdir (no training)."""
import csv
import json
import pathlib

import numpy as np
import pytest

from cisl_jax import paper_results
from cisl_jax.report import readme as report
from cisl_jax import signs
from cisl_jax.report import results

SIGNS = ('GGO', 'CV')


def _write_preds(stage_dir: pathlib.Path, labels, preds, metrics=None):
  stage_dir.mkdir(parents=True, exist_ok=True)
  np.savez(stage_dir / 'predictions.npz', labels=np.asarray(labels), preds=np.asarray(preds))
  (stage_dir / 'metrics.json').write_text(json.dumps(metrics or {}))


def _noisy(rng, labels, num_classes, p_correct):
  wrong = rng.integers(0, num_classes, labels.shape)
  return np.where(rng.random(labels.shape) < p_correct, labels, wrong)


def make_workdir(root: pathlib.Path, num_folds=2, source='phantom', transfer=False,
                 transfer_pretrained=True):
  """A workdir with every stage's predictions, better methods more often right."""
  rng = np.random.default_rng(0)
  quality = {'scratch': 0.3, 'pretrain': 0.6, 'finetune': 0.9, 'traditional': 0.7}
  for k in range(num_folds):
    fold = root / f'fold{k}'
    for s in SIGNS:
      for m in paper_results.TABLE1_METHODS:
        y = np.repeat([0, 1], 20)
        _write_preds(fold / f'binary_{s}_{m}', y, _noisy(rng, y, 2, quality[m]))
      for n in (8, 32):
        y = np.repeat([0, 1], 20)
        _write_preds(fold / f'sweep_GGO_{n}_finetune', y, _noisy(rng, y, 2, 0.4 + n / 80))
      if transfer:
        y = np.repeat([0, 1], 20)
        _write_preds(fold / f'binary_{s}_transfer_vgg16', y, _noisy(rng, y, 2, 0.6),
                     {'transfer': {'arch': 'vgg16', 'pretrained': transfer_pretrained}})
    for m in paper_results.TABLE2_METHODS:
      y = np.arange(60) % signs.NUM_CLASSES
      _write_preds(fold / f'ten_{m}', y, _noisy(rng, y, signs.NUM_CLASSES, quality[m]))
    gen = fold / 'generate'
    gen.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    plt.imsave(gen / 'grid.png', rng.random((64, 128)), cmap='gray')
    gan = fold / 'gan'
    gan.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    writer = tf.summary.create_file_writer(str(gan))  # as train/common.Summaries does
    with writer.as_default():
      for i in range(5):
        tf.summary.scalar('loss_d', 1.0 / (i + 1), step=i)
        tf.summary.scalar('loss_kl', 0.5, step=i)
    writer.close()
  cfg = {'source': source, 'num_folds': num_folds, 'signs': list(SIGNS), 'variant': 'test',
         'sweep_sizes': [8, 32], 'generated_per_sign': 64}
  (root / 'reproduce.json').write_text(json.dumps(cfg))
  (root / 'status.json').write_text(json.dumps({
      'fold1/binary_CV_pretrain': {'state': 'failed', 'error': 'ValueError: boom'},
      'fold0/gan': {'state': 'done', 'seconds': 3.5}}))
  return root


def test_report_has_warning_tables_figures(tmp_path):
  readme = report.write_report(make_workdir(tmp_path))
  text = readme.read_text()
  assert text.splitlines()[0].startswith('# Results on SYNTHETIC PHANTOM data')
  assert 'nothing about patients' in text.splitlines()[0]
  assert '## Table I' in text and '## Table II' in text
  assert '(0.926)' in text  # the paper's GGO fine-tuning AC beside ours
  assert 'fold1/binary_CV_pretrain' in text and 'boom' in text
  assert 'were not run' in text  # transfer baselines absent
  out = readme.parent
  for name in ('confusion_ten_class.png', 'confusion_binary.png', 'training_curves.png',
               'fig4_pretraining_size.png', 'fig3_real_vs_generated_fold0.png'):
    assert (out / name).stat().st_size > 1000, name
    assert f']({name})' in text
  rows = list(csv.DictReader((out / 'table2_ten_class.csv').open()))
  assert len(rows) == 4 * 11 * 3
  fine = [r for r in rows if r['row'] == 'mean' and r['method'] == 'finetune']
  scratch = [r for r in rows if r['row'] == 'mean' and r['method'] == 'scratch']
  assert float(fine[0]['mean']) > float(scratch[0]['mean'])
  assert float(fine[0]['ci_low']) <= float(fine[0]['mean']) <= float(fine[0]['ci_high'])
  assert fine[0]['paper'] == ''  # the paper's text has no AC there: not invented
  assert float(fine[1]['paper']) == pytest.approx(0.927)


def test_non_phantom_first_line_and_transfer(tmp_path):
  text = report.write_report(make_workdir(tmp_path, source='manifest',
                                          transfer=True)).read_text()
  assert text.splitlines()[0] == '# Results on data source `manifest`'
  assert 'SYNTHETIC' not in text
  assert '| vgg16 |' in text and (tmp_path / 'report' / 'fig5_transfer.png').exists()
  assert 'alexnet, resnet101: not run' in text


def test_randomly_initialised_transfer_is_not_reported(tmp_path):
  text = report.write_report(make_workdir(tmp_path, transfer=True,
                                          transfer_pretrained=False)).read_text()
  assert '| vgg16 |' not in text
  assert 'vgg16: run with randomly initialised weights' in text
  assert 'were not run: no ImageNet weights were configured' in text


def test_cells_match_hand_computed(tmp_path):
  # Fold 0: 4 of 4 right; fold 1: labels 0,0,1,1 predicted 0,1,1,0 (AC .5, SE .5, SP .5).
  _write_preds(tmp_path / 'fold0' / 's', [0, 0, 1, 1], [0, 0, 1, 1])
  _write_preds(tmp_path / 'fold1' / 's', [0, 0, 1, 1], [0, 1, 1, 0])
  cell = results.binary_cell(tmp_path, 's')
  np.testing.assert_allclose(cell.mean, [0.75, 0.75, 0.75])
  np.testing.assert_allclose(cell.std, [np.std([1, .5], ddof=1)] * 3)
  assert cell.num_folds == 2 and cell.num_examples == 8
  assert np.all(cell.ci[:, 0] <= 0.75) and np.all(cell.ci[:, 1] >= 0.75)
  # One class against the rest: class 2 of [0,1,2,2] predicted [0,2,2,1].
  _write_preds(tmp_path / 'fold0' / 't', [0, 1, 2, 2], [0, 2, 2, 1])
  np.testing.assert_allclose(results.class_acsesp([0, 1, 2, 2], [0, 2, 2, 1], 2, 3),
                             [0.5, 0.5, 0.5])


def test_missing_everything_says_not_run(tmp_path):
  text = report.write_report(tmp_path).read_text()
  assert 'No 10-class stage has finished.' in text
  assert 'The size sweep has not run.' in text


def _cell(ac, lo, hi):
  return results.Cell(np.array([ac, np.nan, np.nan]), np.full(3, np.nan),
                      np.array([[lo, hi], [np.nan] * 2, [np.nan] * 2]), 3, 100)


def test_headline_says_indistinguishable_where_the_intervals_overlap():
  # "Fine-tuning mean AC 0.987 is above traditional method (0.987)" used to be printed.
  assert report.verdict(_cell(0.987, 0.97, 0.99), _cell(0.987, 0.97, 0.99)).startswith(
      'indistinguishable from it')
  assert report.verdict(_cell(0.95, 0.90, 0.98), _cell(0.90, 0.85, 0.93)).startswith(
      'indistinguishable from it')
  assert report.verdict(_cell(0.95, 0.93, 0.97), _cell(0.80, 0.75, 0.85)).startswith('above it')
  assert report.verdict(_cell(0.80, 0.75, 0.85), _cell(0.95, 0.93, 0.97)).startswith('below it')
  assert report.verdict(_cell(0.9, np.nan, np.nan), _cell(0.9, np.nan, np.nan)) == 'level with it'


def test_table1_has_the_binary_scratch_baseline(tmp_path):
  make_workdir(tmp_path)
  text = report.write_report(tmp_path).read_text()
  table1 = text[text.index('## Table I'):text.index('## Table II')]
  assert '| row | Scratch AC | Scratch SE |' in table1  # the header row of the table
  assert '(0.500)' in table1  # the paper's text: about 50% from scratch
  assert 'against scratch' in text[text.index('- Binary:'):]


def test_chance_level_results_are_flagged_and_no_bullet_is_empty(tmp_path):
  make_workdir(tmp_path)
  rng = np.random.default_rng(1)
  for k in range(2):
    for s in SIGNS:  # fine-tuned binary models that guess: AC about 0.5
      y = np.repeat([0, 1], 20)
      _write_preds(tmp_path / f'fold{k}' / f'binary_{s}_finetune', y, rng.integers(0, 2, 40))
  text = report.write_report(tmp_path).read_text()
  line = next(l for l in text.splitlines() if l.startswith('- Binary, mean over signs'))
  assert 'Not distinguishable from chance (0.500)' in line

  # No binary stage at all: the bullet says why instead of being empty.
  import shutil  # pylint: disable=g-import-not-at-top
  for d in tmp_path.glob('fold*/binary_*'):
    shutil.rmtree(d)
  text = report.write_report(tmp_path).read_text()
  bullet = next(l for l in text.splitlines() if l.startswith('- Binary:'))
  assert bullet.startswith('- Binary: not measured: the stages fold1/binary_CV_pretrain')


def test_training_curves_give_each_loss_its_own_panel(tmp_path):
  # Losses used to share one linear axis: a KL of 0.5 flattened a D loss going 1 -> 1e-3.
  from cisl_jax.report import figures  # pylint: disable=g-import-not-at-top
  x = np.arange(10)
  series = {'loss_d': (x, 10.0 ** (-x / 3)), 'loss_kl': (x, 0.5 + 0 * x),
            'train/accuracy': (x, x / 10), 'test/accuracy': (x[-1:], np.array([0.7])),
            'steps_per_sec': (x, 5 + 0 * x), 'hinge_loss': (x, np.linspace(-1, 1, 10))}
  panels = figures.curve_panels(series)
  assert [p.tags for p in panels] == [['hinge_loss'], ['loss_d'], ['loss_kl'],
                                      ['test/accuracy', 'train/accuracy']]
  assert [p.log for p in panels] == [False, True, False, False]
  out = report.write_report(make_workdir(tmp_path))
  assert (out.parent / 'training_curves.png').stat().st_size > 1000


def test_quality_section_names_the_recipe_widths_and_budget(tmp_path):
  """A reader of the samples learns what made them: the objective, each network's width
  and the iterations (the quick config widens the discriminator alone)."""
  gan_dir = tmp_path / 'fold0' / 'gan'
  gan_dir.mkdir(parents=True)
  config = {'width': 0.125, 'num_steps': 240, 'batch_size': 32,
            'gan': {'recipe': 'improved', 'discriminator_width': 0.5,
                    'improved': {'adv_weight': 10.0, 'noise_inputs': True}}}
  (gan_dir / 'config.json').write_text(json.dumps(config))
  text = report._recipe(tmp_path)  # pylint: disable=protected-access
  assert 'recipe `improved`' in text and 'adv_weight=10.0' in text
  assert 'width 0.125, discriminator 0.5; 240 iterations at batch 32' in text
  config['gan']['classifier_width'] = 0.25
  (gan_dir / 'config.json').write_text(json.dumps(config))
  text = report._recipe(tmp_path)  # pylint: disable=protected-access
  assert 'discriminator 0.5, classifier 0.25;' in text
  config['gan']['decoder_width'] = 0.25
  (gan_dir / 'config.json').write_text(json.dumps(config))
  text = report._recipe(tmp_path)  # pylint: disable=protected-access
  assert 'width 0.125, decoder 0.25, discriminator 0.5, classifier 0.25;' in text
  config['gan'] = {'recipe': 'paper', 'discriminator_width': 0.0}
  (gan_dir / 'config.json').write_text(json.dumps(config))
  text = report._recipe(tmp_path)  # pylint: disable=protected-access
  assert "the paper's objective" in text and 'discriminator' not in text
  assert 'match_intensities' not in text
  generate_dir = tmp_path / 'fold0' / 'generate'
  generate_dir.mkdir()
  (generate_dir / 'metrics.json').write_text(json.dumps(
      {'intensity_match': {'GGO': {'median_before': 0.1}}}))
  assert 'match_intensities' in report._recipe(tmp_path)  # pylint: disable=protected-access
