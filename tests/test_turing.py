"""Tests for the visual Turing test page builder, answer key and scorer."""
import collections
import json
import re

import numpy as np
import pytest

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
  # Data window [-1000, 400] HU, lung window [-1350, 150] HU: -1 -> -1000 HU, grey
  # (-1000 + 1350) / 1500; 1 -> 400 HU, above 150: white.
  x = np.array([[-1.0, 1.0, -0.5]])
  g = turing.to_display(x, (-1000.0, 400.0), (-600.0, 1500.0))
  assert g.dtype == np.uint8
  assert g[0, 0] == round(350 / 1500 * 255) and g[0, 1] == 255
  # -0.5 -> -650 HU -> (−650 + 1350) / 1500.
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
