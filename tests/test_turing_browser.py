"""Drives the Turing test page in headless Chromium: mark all (with some confidences),
change one, reload, download, score.

Needs Debian's `chromium` package (/usr/bin/chromium) and the pinned `playwright` from
PyPI; Playwright's own browser download is never used. Skipped, with the reason, where
either is missing.
"""
import os
import shutil

import numpy as np
import pytest

from cisl_jax import signs as signs_lib
from cisl_jax import turing

CHROMIUM = os.environ.get('CISL_CHROMIUM') or shutil.which('chromium') or '/usr/bin/chromium'
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run']

sync_api = pytest.importorskip(
    'playwright.sync_api', reason='playwright is not installed (pip install playwright==1.65.2)')
if not os.path.exists(CHROMIUM):
  pytest.skip(f'Chromium not found at {CHROMIUM} (apt-get install -y chromium)',
              allow_module_level=True)


def intended(item):
  """The test reader's rule: right on real patches, fooled on generated GGO/CV ones."""
  if item['truth'] == 'real':
    return 'real'
  return 'real' if item['sign'] in ('GGO', 'CV') else 'fake'


def _synthetic_page(tmp_path):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(signs_lib.NUM_SIGNS), 3)
  real = rng.uniform(-1, 1, size=(len(labels), 64, 64, 1)).astype(np.float32)
  gen = rng.uniform(-1, 1, size=(len(labels), 64, 64, 1)).astype(np.float32)
  html, key = turing.build(real, labels, gen, labels, num_real=2, num_generated=2, seed=7)
  return turing.write(str(tmp_path / 'out'), html, key)


def test_page_end_to_end(tmp_path):
  drive(*_synthetic_page(tmp_path), tmp_path)


@pytest.mark.skipif(not os.environ.get('CISL_TURING_OUT'),
                    reason='set CISL_TURING_OUT=<turing_test.py build --out folder> to drive '
                    'a page built from a run')
def test_built_page_end_to_end(tmp_path):
  out = os.environ['CISL_TURING_OUT']
  drive(os.path.join(out, turing.PAGE_NAME), os.path.join(out, turing.KEY_NAME), tmp_path)


def drive(page_path, key_path, tmp_path):
  """Marks every patch, changes one mark, reloads, downloads, scores; checks each step."""
  key = turing.load_key(key_path)
  truth = {it['id']: it for it in key['items']}
  n = len(truth)

  requests = []
  with sync_api.sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    try:
      context = browser.new_context(accept_downloads=True)
      page = context.new_page()
      page.on('request', lambda r: requests.append(r.url))
      page.goto('file://' + os.path.abspath(page_path))
      assert 'all real, all fake' in page.inner_text('#intro')
      page.click('#start')
      assert 'enter your name' in page.inner_text('#intro-msg')
      page.fill('#reader', 'Dr Test')
      page.click('#start')

      # Every patch: half by keyboard, half by buttons.
      for i in range(n):
        assert page.inner_text('#counter').startswith(f'Patch {i + 1} of {n}')
        item_id = page.get_attribute('#patch', 'data-item')
        sign = truth[item_id]['sign']
        assert page.inner_text('#sign').startswith(sign)
        width = page.evaluate("document.getElementById('patch').getBoundingClientRect().width")
        assert width == page.evaluate('DATA.size_px') > 64
        mark = intended(truth[item_id])
        # Optional confidence: by key, by button, and a key pressed twice (cleared).
        if i == 0:
          page.keyboard.press('4')
          confident = {item_id: 4}
        elif i == 1:
          page.click('button.conf[data-level="2"]')
          assert 'chosen' in page.get_attribute('button.conf[data-level="2"]', 'class')
          confident[item_id] = 2
        elif i == 2:
          page.keyboard.press('3')
          page.keyboard.press('3')
        assert page.get_attribute('#patch', 'data-item') == item_id  # it does not advance
        if i % 2:
          page.keyboard.press('R' if mark == 'real' else 'F')
        else:
          page.click('#mark-real' if mark == 'real' else '#mark-fake')
      assert page.is_visible('#done') and f'{n} of {n}' in page.inner_text('#summary')

      # Back to patch 3 and flip its mark.
      page.click('#review')
      while not page.inner_text('#counter').startswith('Patch 3 '):
        page.keyboard.press('ArrowLeft')
      changed = page.get_attribute('#patch', 'data-item')
      flipped = 'fake' if intended(truth[changed]) == 'real' else 'real'
      page.click('#mark-real' if flipped == 'real' else '#mark-fake')
      assert page.inner_text('#counter').startswith('Patch 4 ')

      # Marks survive a reload. Chromium hands localStorage writes to its browser process
      # asynchronously; wait until another page of the origin sees the new mark, so that
      # the reload cannot race the write.
      store = page.evaluate('STORE_KEY')
      blank = tmp_path / 'blank.html'
      blank.write_text('<!DOCTYPE html><title>probe</title>')
      probe = context.new_page()
      probe.goto('file://' + str(blank))
      probe.wait_for_function(
          '([k, id, v]) => (JSON.parse(localStorage.getItem(k) || "{}").answers || {})[id] === v',
          arg=[store, changed, flipped])
      probe.close()
      page.reload()
      assert page.is_visible('#test')
      page.keyboard.press('ArrowLeft')
      assert page.get_attribute('#patch', 'data-item') == changed
      chosen = page.get_attribute(f'#mark-{flipped}', 'class')
      assert 'chosen' in chosen
      assert f'({n} marked)' in page.inner_text('#counter')

      page.click('#finish')
      with page.expect_download() as info:
        page.click('#download')
      answers_path = str(tmp_path / info.value.suggested_filename)
      info.value.save_as(answers_path)
    finally:
      browser.close()

  assert all(u.startswith(('file:', 'data:', 'blob:')) for u in requests), requests
  answers = turing.load_answers(answers_path)
  assert answers['reader'] == 'Dr Test' and answers['page_id'] == key['page_id']
  expected = {i: intended(it) for i, it in truth.items()}
  expected[changed] = flipped
  assert answers['answers'] == expected
  assert answers['confidence'] == confident  # stored with the answers, the cleared one gone

  scores = turing.score(turing.load_key(key_path), {answers_path: answers})
  total = scores['readers']['Dr Test']['total']
  gen_ids = [i for i, it in truth.items() if it['truth'] == 'generated']
  real_ids = [i for i, it in truth.items() if it['truth'] == 'real']
  assert total['generated_as_real'] == sum(expected[i] == 'real' for i in gen_ids)
  assert total['real_as_fake'] == sum(expected[i] == 'fake' for i in real_ids)
  assert scores['readers']['Dr Test']['per_sign']['GGO']['generated_as_real_share'] == (
      1.0 if changed not in gen_ids or truth[changed]['sign'] != 'GGO' else 0.5)
