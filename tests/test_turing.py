"""Tests for the visual Turing test page builder, answer key and scorer."""
import collections
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from cisl_jax import config_lib
from cisl_jax import signs as signs_lib
from cisl_jax import turing


def make_sets(per_sign=12, seed=0):
  """Real patches dark, generated ones bright, so a test can tell them apart."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(signs_lib.NUM_SIGNS), per_sign)
  real = rng.uniform(-1, 0, size=(len(labels), 64, 64, 1)).astype(np.float32)
  gen = rng.uniform(0, 1, size=(len(labels), 64, 64, 1)).astype(np.float32)
  return real, labels, gen, labels.copy()


def test_to_display_maps_data_window_to_lung_window():
  x = np.array([[-1.0, 1.0, -0.5, 0.0]])
  # Same window as the dataset: a linear map of [-1, 1] onto [0, 255].
  g = turing.to_display(x, (-600.0, 1500.0), (-600.0, 1500.0))
  assert g.dtype == np.uint8 and g.tolist() == [[0, 255, 64, 128]]
  # Dataset window level -300 width 1400 ([-1000, 400] HU), lung window [-1350, 150]:
  # -1 -> -1000 HU -> grey 350/1500; 1 -> 400 HU -> white; -0.5 -> -650 HU.
  g = turing.to_display(x[..., None], (-300.0, 1400.0), (-600.0, 1500.0))
  assert g[0, 0] == round(350 / 1500 * 255) and g[0, 1] == 255
  assert g[0, 2] == round(700 / 1500 * 255)


def test_select_counts_order_and_seed():
  real, rl, gen, gl = make_sets()
  items = turing.select(rl, gl, num_real=10, num_generated=10, seed=3)
  assert len(items) == 180
  counts = collections.Counter((it.sign, it.truth) for it in items)
  assert set(counts.values()) == {10}
  assert [it.id for it in items] == [f't{i:03d}' for i in range(1, 181)]
  again = turing.select(rl, gl, num_real=10, num_generated=10, seed=3)
  assert items == again
  other = turing.select(rl, gl, num_real=10, num_generated=10, seed=4)
  assert items != other
  # Shuffled: the first 20 items are not one sign's block.
  assert len({it.sign for it in items[:20]}) > 2


def test_select_too_few_names_sign():
  real, rl, gen, gl = make_sets(per_sign=5)
  with pytest.raises(ValueError, match=r'only 5 real GGO patches for 10.*num_real'):
    turing.select(rl, gl, num_real=10, num_generated=2, seed=0)


def test_page_is_self_contained_and_holds_no_truth(tmp_path):
  real, rl, gen, gl = make_sets()
  html, key = turing.build(real, rl, gen, gl, num_real=2, num_generated=2, seed=1)
  page, key_path = turing.write(str(tmp_path), html, key)
  assert page.endswith('page/turing_test.html') and key_path.endswith('key/answer_key.json')
  text = open(page).read()
  assert key['page_id'] in text
  assert not re.search(r'https?://|src="(?!data:)|<link|@import|url\(', text)
  assert 'all real, all fake' in text and 'pixelated' in text
  for word in ('generated', 'truth', '"real"', 'index'):
    assert word not in text.split('id="page-data">')[1].split('</script>')[0]
  data = json.loads(text.split('id="page-data">')[1].split('</script>')[0])
  assert [d['id'] for d in data['items']] == [it['id'] for it in key['items']]
  assert all(d['src'].startswith('data:image/png;base64,') for d in data['items'])
  # Same seed, same data: byte-identical page and key.
  html2, key2 = turing.build(real, rl, gen, gl, num_real=2, num_generated=2, seed=1)
  assert html2 == html and key2 == key


def answers_for(key, rule, reader='A'):
  return {'format': turing.ANSWERS_FORMAT, 'page_id': key['page_id'], 'reader': reader,
          'answers': {it['id']: rule(it) for it in key['items']}}


def test_score_rates_per_sign_and_total():
  real, rl, gen, gl = make_sets()
  _, key = turing.build(real, rl, gen, gl, num_real=4, num_generated=4, seed=0)
  # Reader A calls everything real; reader B is always right except on GGO fakes.
  a = answers_for(key, lambda it: 'real')
  b = answers_for(key, lambda it: 'real' if it['truth'] == 'real' or it['sign'] == 'GGO'
                  else 'fake', reader='B')
  s = turing.score(key, {'a.json': a, 'b.json': b})
  ra, rb = s['readers']['A'], s['readers']['B']
  assert ra['total']['generated_as_real_share'] == 1.0
  assert ra['total']['real_as_fake_share'] == 0.0
  assert rb['per_sign']['GGO']['generated_as_real_share'] == 1.0
  assert rb['per_sign']['CV']['generated_as_real_share'] == 0.0
  assert rb['total']['generated_as_real'] == 4 and rb['total']['num_generated'] == 36
  assert s['all_readers']['total']['generated_as_real'] == 40
  assert list(ra['per_sign']) == list(signs_lib.SIGNS)
  md = turing.score_markdown(s)
  assert '| GGO | 100.0% (4/4) | 0.0% (0/4) |' in md and '## all readers, pooled' in md


def test_score_refuses_answers_of_another_key():
  real, rl, gen, gl = make_sets()
  _, key = turing.build(real, rl, gen, gl, num_real=2, num_generated=2, seed=0)
  good = answers_for(key, lambda it: 'fake')
  wrong_page = dict(good, page_id='0123')
  with pytest.raises(turing.AnswersError, match=r'x.json: answers are for page .0123'):
    turing.score(key, {'x.json': wrong_page})
  extra = dict(good, answers=dict(good['answers'], t999='real'))
  with pytest.raises(turing.AnswersError, match=r'x.json: 1 item id.*not in the key: t999'):
    turing.score(key, {'x.json': extra})
  partial = dict(good, answers={k: v for k, v in good['answers'].items() if k != 't002'})
  with pytest.raises(turing.AnswersError, match=r'1 of 36 item.*not marked: t002'):
    turing.score(key, {'x.json': partial})
  assert turing.score(key, {'x.json': partial}, allow_missing=True)['readers']
  bad_mark = dict(good, answers=dict(good['answers'], t001='maybe'))
  with pytest.raises(turing.AnswersError, match='t001'):
    turing.score(key, {'x.json': bad_mark})


def test_load_errors_name_the_file(tmp_path):
  p = tmp_path / 'a.json'
  p.write_text('{not json')
  with pytest.raises(turing.AnswersError, match='a.json: not valid JSON'):
    turing.load_answers(str(p))
  p.write_text('{"answers": {}}')
  with pytest.raises(turing.AnswersError, match='a.json: not a Turing test answers file'):
    turing.load_answers(str(p))
  with pytest.raises(turing.AnswersError, match='a.json: not a Turing test answer key'):
    turing.load_key(str(p))


ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(arg='quick'):
  return config_lib.load(ROOT / 'configs' / 'turing_test.py', arg)


def test_build_from_workdir_reads_generate_stage(tmp_path, monkeypatch):
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  real, rl, gen, gl = make_sets()
  stage = tmp_path / 'run' / 'fold1' / 'generate'
  input_pipeline.write_generated(str(stage / 'generated'), gen, gl)
  # As the pipeline leaves it: generate names its GAN run, whose config.json has the data.
  gan = tmp_path / 'run' / 'fold1' / 'gan'
  gan.mkdir(parents=True)
  (gan / 'config.json').write_text(json.dumps(
      {'data_dir': '/data/x', 'source': 'manifest', 'num_folds': 3, 'fold': 1}))
  (stage / 'metrics.json').write_text(json.dumps({'gan_workdir': str(gan)}))
  calls = []

  def fake_load_split(data_dir, source, folds):
    calls.append((data_dir, source, list(folds)))
    return {'image': real, 'label': rl}

  monkeypatch.setattr(input_pipeline, 'load_split', fake_load_split)
  config = load_config()
  config.unlock()
  config.fold, config.num_real, config.num_generated, config.signs = 1, 3, 2, 'GGO,op'
  page, key_path = turing.build_from_workdir(config, str(tmp_path / 'run'), str(tmp_path / 'o'))
  assert calls == [('/data/x', 'manifest', [0, 1, 2])]
  key = turing.load_key(key_path)
  assert key['source']['generated_dir'] == str(stage / 'generated')
  assert collections.Counter((i['sign'], i['truth']) for i in key['items']) == {
      ('GGO', 'real'): 3, ('GGO', 'generated'): 2, ('OP', 'real'): 3, ('OP', 'generated'): 2}
  # The generated items are the generated (bright) patches: the key points at them.
  for it in key['items']:
    assert (gen if it['truth'] == 'generated' else real)[it['index']].mean() * (
        1 if it['truth'] == 'generated' else -1) > 0


def run_launcher(*args):
  return subprocess.run([sys.executable, str(ROOT / 'launch' / 'turing_test.py'), *args],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_launcher_scores_readers_and_refuses_foreign_answers(tmp_path):
  real, rl, gen, gl = make_sets()
  html, key = turing.build(real, rl, gen, gl, num_real=2, num_generated=2, seed=0)
  _, key_path = turing.write(str(tmp_path), html, key)
  for name, rule in (('a', lambda it: 'real'), ('b', lambda it: 'fake')):
    (tmp_path / f'{name}.json').write_text(json.dumps(answers_for(key, rule, reader=name)))
  out = run_launcher('score', f'--key={key_path}', f'--answers={tmp_path / "a.json"}',
                     str(tmp_path / 'b.json'), f'--out={tmp_path / "scores"}')
  assert out.returncode == 0, out.stderr
  assert '| **total** | 100.0% (18/18) | 0.0% (0/18) |' in out.stdout
  assert '| **total** | 0.0% (0/18) | 100.0% (18/18) |' in out.stdout
  scores = json.loads((tmp_path / 'scores' / 'scores.json').read_text())
  assert set(scores['readers']) == {'a', 'b'}
  other = answers_for(key, lambda it: 'real')
  other['page_id'] = 'feedfacefeedface'
  (tmp_path / 'c.json').write_text(json.dumps(other))
  out = run_launcher('score', f'--key={key_path}', f'--answers={tmp_path / "c.json"}')
  assert out.returncode != 0
  assert 'c.json: answers are for page' in out.stderr and key['page_id'] in out.stderr


def test_score_gives_accuracy_binomial_test_kappa_and_confidence():
  from scipy import stats  # pylint: disable=g-import-not-at-top
  real, rl, gen, gl = make_sets()
  _, key = turing.build(real, rl, gen, gl, num_real=4, num_generated=4, seed=0)
  assert key['num_real_per_sign'] == key['num_generated_per_sign'] == 4  # labelled per sign
  a = answers_for(key, lambda it: 'real')  # cannot tell: 50% right
  b = answers_for(key, lambda it: 'real' if it['truth'] == 'real' or it['sign'] == 'GGO'
                  else 'fake', reader='B')  # right on 68 of 72
  b['confidence'] = {it['id']: 5 if it['sign'] != 'GGO' else 1 for it in key['items']}
  s = turing.score(key, {'a.json': a, 'b.json': b})
  oa, ob = s['readers']['A']['overall'], s['readers']['B']['overall']
  assert (oa['correct'], oa['num_marked'], oa['accuracy']) == (36, 72, 0.5)
  assert oa['binomial_p'] == pytest.approx(1.0)
  assert ob['correct'] == 68
  assert ob['binomial_p'] == pytest.approx(stats.binomtest(68, 72, 0.5).pvalue)
  assert ob['mean_confidence_correct'] > ob['mean_confidence_wrong'] == 1.0
  kappa = s['agreement'][0]
  assert kappa['readers'] == ['A', 'B'] and kappa['num_items'] == 72
  assert kappa['cohen_kappa'] == pytest.approx(0.0)  # A's constant answer agrees by chance
  md = turing.score_markdown(s)
  assert 'Overall accuracy 94.4% (68/72)' in md and "Cohen's kappa" in md
  b['confidence'] = {key['items'][0]['id']: 7}
  with pytest.raises(turing.AnswersError, match='confidence must be an integer 1'):
    turing.score(key, {'b.json': b})


def test_confidence_is_offered_stored_with_the_answers_and_scored_by_level(tmp_path):
  # The page offered no confidence scale and score gave no accuracy by confidence.
  real, rl, gen, gl = make_sets()
  html, key = turing.build(real, rl, gen, gl, num_real=2, num_generated=2, seed=0)
  page_path, key_path = turing.write(str(tmp_path / 'out'), html, key)
  page = open(page_path).read()
  assert all(f'class="conf" data-level="{k}"' in page for k in range(1, 6))
  assert 'confidence: confidence' in page  # the downloaded answers carry it
  # Answers as the page downloads them: sure (5) and right on real patches, a guess (1)
  # on generated ones, called real; one generated patch marked without confidence.
  items = key['items']
  answers = answers_for(key, lambda it: 'real', reader='C')
  gen_ids = [it['id'] for it in items if it['truth'] == 'generated']
  answers['confidence'] = {it['id']: 5 if it['truth'] == 'real' else 1 for it in items
                           if it['id'] != gen_ids[0]}
  path = tmp_path / 'turing_answers_C.json'
  path.write_text(json.dumps(answers))
  scores = turing.score(turing.load_key(key_path), {str(path): turing.load_answers(str(path))})
  o = scores['readers']['C']['overall']
  n_real, n_gen = len(items) - len(gen_ids), len(gen_ids)
  assert o['by_confidence'] == {
      '1': {'num_marked': n_gen - 1, 'correct': 0, 'accuracy': 0.0},
      '5': {'num_marked': n_real, 'correct': n_real, 'accuracy': 1.0}}
  assert o['num_without_confidence'] == 1
  md = turing.score_markdown(scores)
  assert f'| 5 | {n_real} | {n_real} | 100.0% |' in md and '| none given | 1 | | |' in md
  out = run_launcher('score', f'--key={key_path}', f'--answers={path}',
                     f'--out={tmp_path / "scores"}')
  assert out.returncode == 0, out.stderr[-2000:]
  saved = json.loads((tmp_path / 'scores' / 'scores.json').read_text())
  assert saved['readers']['C']['overall']['by_confidence']['5']['accuracy'] == 1.0
