"""The visual Turing test (paper, Section III-C-1): a page for readers, its key, its scorer.

`build` picks, from a seed, `num_real` real and `num_generated` generated patches per
sign, shuffles them and returns a self-contained HTML page (inline JS/CSS, patches as
PNG data: URIs, no network) and an answer key. The page never holds the truth: item
ids are positions in the shuffled order, and the key is written to a separate folder
(`page/` is what readers get, `key/` stays with the experimenter).

Display: patches are in [-1, 1] over the dataset's HU window (data_window, the
(level, width) of cisl_jax/data/patches.py). They are mapped back to HU and rendered on
a lung window (level -600, width 1500 by default), what a chest reader expects. With
the dataset's default window (also -600/1500) this is the identity; HU clipped by a
narrower dataset window stays clipped.

`score` gives, per reader and per sign, the paper's two figures: the share of
generated patches taken as real and of real patches taken as fake, with totals.
"""
import base64
import dataclasses
import hashlib
import io
import json
import os
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from cisl_jax import signs as signs_lib
from cisl_jax import workdir as wd

KEY_FORMAT = 'cisl_turing_key/1'
ANSWERS_FORMAT = 'cisl_turing_answers/1'
LUNG_WINDOW = (-600.0, 1500.0)  # (level, width) in HU
PAGE_NAME = os.path.join('page', 'turing_test.html')
KEY_NAME = os.path.join('key', 'answer_key.json')
TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), 'turing_page.html')


class AnswersError(ValueError):
  """Answers that do not belong to the key; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Item:
  id: str  # 't001', ... in display order: says nothing about the truth
  sign: str
  truth: str  # 'real' | 'generated'
  index: int  # row in the real or generated array it was taken from


def to_display(patches: np.ndarray, data_window: Sequence[float],
               display_window: Sequence[float] = LUNG_WINDOW) -> np.ndarray:
  """[-1, 1] patches -> uint8 grey on a (level, width) HU display window.

  Args:
    patches: [..., H, W] or [..., H, W, 1] in [-1, 1].
    data_window: (level, width) in HU that the dataset mapped to [-1, 1].
    display_window: (level, width) in HU.
  """
  x = np.asarray(patches, np.float64)
  if x.shape[-1] == 1:
    x = x[..., 0]
  hu = data_window[0] + np.clip(x, -1.0, 1.0) * data_window[1] / 2.0
  level, width = display_window
  grey = (hu - (level - width / 2.0)) / width
  return np.round(np.clip(grey, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_data_uri(grey: np.ndarray) -> str:
  """A uint8 [H, W] image as a data:image/png;base64 URI."""
  buf = io.BytesIO()
  Image.fromarray(np.asarray(grey, np.uint8), mode='L').save(buf, format='PNG', optimize=True)
  return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


def select(real_labels: np.ndarray, gen_labels: np.ndarray, *, num_real: int,
           num_generated: int, seed: int,
           signs: Sequence[str] = signs_lib.SIGNS) -> list[Item]:
  """Picks num_real real and num_generated generated rows per sign, shuffled, from seed."""
  rng = np.random.default_rng(seed)
  real_labels, gen_labels = np.asarray(real_labels), np.asarray(gen_labels)
  picked = []
  for sign in signs:
    code = signs_lib.code(sign)
    for truth, labels, count in (('real', real_labels, num_real),
                                 ('generated', gen_labels, num_generated)):
      pool = np.flatnonzero(labels == code)
      if len(pool) < count:
        raise ValueError(
            f'only {len(pool)} {truth} {sign} patches for {count} requested; lower '
            f'--config.num_{truth} or generate/collect more {sign} patches.')
      for i in np.sort(rng.choice(pool, count, replace=False)):
        picked.append((signs_lib.canonical(sign), truth, int(i)))
  order = rng.permutation(len(picked))
  width = max(3, len(str(len(picked))))
  return [Item(f't{n + 1:0{width}d}', *picked[j]) for n, j in enumerate(order)]


def page_id_of(seed: int, items: Sequence[Item], uris: Sequence[str]) -> str:
  """A short id from the seed, the item signs and the exact images shown."""
  h = hashlib.sha256(f'{seed}'.encode())
  for item, uri in zip(items, uris):
    h.update(f'|{item.id}|{item.sign}|'.encode())
    h.update(uri.encode())
  return h.hexdigest()[:16]


def build(real_images: np.ndarray, real_labels: np.ndarray, gen_images: np.ndarray,
          gen_labels: np.ndarray, *, num_real: int = 10, num_generated: int = 10,
          seed: int = 0, data_window: Sequence[float] = LUNG_WINDOW,
          display_window: Sequence[float] = LUNG_WINDOW, size_px: int = 384,
          signs: Sequence[str] = signs_lib.SIGNS, source: Mapping | None = None
          ) -> tuple[str, dict]:
  """Returns (html, key) for a Turing test over the given real and generated patches.

  Args:
    real_images, real_labels: real patches [N,64,64,1] in [-1,1] and sign codes.
    gen_images, gen_labels: generated patches and their conditioning sign codes.
    num_real, num_generated: per sign.
    seed: selection and order.
    data_window: the dataset's (level, width) in HU behind [-1, 1].
    display_window: (level, width) in HU the page renders with.
    size_px: on-screen size of a patch (nearest-neighbour enlargement).
    signs: the signs to include.
    source: free-form provenance written into the key only (workdir, fold, ...).
  """
  items = select(real_labels, gen_labels, num_real=num_real, num_generated=num_generated,
                 seed=seed, signs=signs)
  arrays = {'real': np.asarray(real_images), 'generated': np.asarray(gen_images)}
  uris = [png_data_uri(to_display(arrays[it.truth][it.index], data_window, display_window))
          for it in items]
  page_id = page_id_of(seed, items, uris)
  long_names = dict(zip(signs_lib.SIGNS, signs_lib.LONG_NAMES))
  data = {
      'page_id': page_id, 'answers_format': ANSWERS_FORMAT, 'size_px': int(size_px),
      'display_window': [float(v) for v in display_window],
      'signs': [signs_lib.canonical(s) for s in signs],
      'items': [{'id': it.id, 'sign': it.sign, 'sign_long': long_names[it.sign], 'src': u}
                for it, u in zip(items, uris)],
  }
  key = {
      'format': KEY_FORMAT, 'page_id': page_id, 'seed': int(seed),
      # Per sign: the page shows this many real and generated patches of every sign.
      'num_real_per_sign': int(num_real), 'num_generated_per_sign': int(num_generated),
      'data_window': [float(v) for v in data_window],
      'display_window': [float(v) for v in display_window],
      'source': dict(source or {}),
      'items': [dataclasses.asdict(it) for it in items],
  }
  return render_page(data), key


def render_page(data: dict) -> str:
  """The HTML page with `data` (no truth in it) embedded as JSON."""
  with open(TEMPLATE_PATH, encoding='utf-8') as f:
    template = f.read()
  blob = json.dumps(data, separators=(',', ':')).replace('</', '<\\/')
  return template.replace('__PAGE_DATA__', blob).replace(
      '__PAGE_ID__', data['page_id'])


def write(out_dir: str, html: str, key: dict) -> tuple[str, str]:
  """Writes <out_dir>/page/turing_test.html and <out_dir>/key/answer_key.json."""
  page_path, key_path = os.path.join(out_dir, PAGE_NAME), os.path.join(out_dir, KEY_NAME)
  wd.write_text(key_path, json.dumps(key, indent=1))
  wd.write_text(page_path, html)
  return page_path, key_path


def _read_json(path: str, what: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      obj = json.load(f)
  except FileNotFoundError as e:
    raise AnswersError(f'{path}: no such {what} file; check the path.') from e
  except json.JSONDecodeError as e:
    raise AnswersError(f'{path}: not valid JSON ({e}); give the {what} file as written.') from e
  if not isinstance(obj, dict):
    raise AnswersError(f'{path}: expected a JSON object for the {what}.')
  return obj


def load_key(path: str) -> dict:
  key = _read_json(path, 'answer key')
  if key.get('format') != KEY_FORMAT or 'items' not in key:
    raise AnswersError(f'{path}: not a Turing test answer key (format {key.get("format")!r}, '
                       f'expected {KEY_FORMAT!r}); give key/answer_key.json from build.')
  return key


def load_answers(path: str) -> dict:
  ans = _read_json(path, 'answers')
  if ans.get('format') != ANSWERS_FORMAT or not isinstance(ans.get('answers'), dict):
    raise AnswersError(f'{path}: not a Turing test answers file (format '
                       f'{ans.get("format")!r}, expected {ANSWERS_FORMAT!r}); give the JSON '
                       'the page downloads.')
  return ans


def _few(ids: Sequence[str], n: int = 10) -> str:
  ids = sorted(ids)
  return ', '.join(ids[:n]) + (f' and {len(ids) - n} more' if len(ids) > n else '')


def check_answers(key: dict, answers: dict, name: str, allow_missing: bool = False) -> None:
  """Raises AnswersError (naming `name`) unless answers belong to the key."""
  if answers.get('page_id') != key['page_id']:
    raise AnswersError(
        f'{name}: answers are for page {answers.get("page_id")!r} but the key is for page '
        f'{key["page_id"]!r}; score them against the key written with that page.')
  known = {it['id'] for it in key['items']}
  marks = answers['answers']
  unknown = set(marks) - known
  if unknown:
    raise AnswersError(f'{name}: {len(unknown)} item id(s) not in the key: {_few(unknown)}.')
  bad = {i for i, v in marks.items() if v not in ('real', 'fake')}
  if bad:
    raise AnswersError(f'{name}: marks must be "real" or "fake"; items {_few(bad)} are not.')
  conf = answers.get('confidence') or {}
  if not isinstance(conf, dict):
    raise AnswersError(f'{name}: "confidence" must map item ids to 1..5.')
  bad = {i for i, v in conf.items() if i not in marks or v not in CONFIDENCE_SCALE}
  if bad:
    raise AnswersError(f'{name}: confidence must be an integer 1 (a guess) to 5 (certain) '
                       f'for a marked item; items {_few(bad)} are not.')
  missing = known - set(marks)
  if missing and not allow_missing:
    raise AnswersError(
        f'{name}: {len(missing)} of {len(known)} item(s) not marked: {_few(missing)}; ask '
        'the reader to finish (marks survive a reload) or pass --allow_missing.')


def _rates(rows: list[tuple[str, str]]) -> dict:
  gen = [m for t, m in rows if t == 'generated']
  real = [m for t, m in rows if t == 'real']
  g_real, r_fake = sum(m == 'real' for m in gen), sum(m == 'fake' for m in real)
  return {'num_generated': len(gen), 'generated_as_real': g_real,
          'generated_as_real_share': g_real / len(gen) if gen else None,
          'num_real': len(real), 'real_as_fake': r_fake,
          'real_as_fake_share': r_fake / len(real) if real else None}


CONFIDENCE_SCALE = (1, 2, 3, 4, 5)  # optional per answer: 1 a guess .. 5 certain


def _accuracy(rows: list[tuple[str, str, str]], confidence: Mapping[str, int]) -> dict:
  """Overall accuracy of (id, truth, mark) rows with a two-sided binomial test against
  50% (a reader who cannot tell real from generated), and mean confidence if given."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  right = [(i, (t == 'real') == (m == 'real')) for i, t, m in rows]
  k, n = sum(r for _, r in right), len(right)
  out = {'num_marked': n, 'correct': k, 'accuracy': k / n if n else None,
         'binomial_p': float(stats.binomtest(k, n, 0.5).pvalue) if n else None}
  for name, want in (('mean_confidence_correct', True), ('mean_confidence_wrong', False)):
    vals = [confidence[i] for i, r in right if r == want and i in confidence]
    out[name] = float(np.mean(vals)) if vals else None
  # Accuracy at each confidence level given: a reader who can tell should be right
  # more often when sure.
  out['by_confidence'] = {}
  for level in CONFIDENCE_SCALE:
    hits = [r for i, r in right if confidence.get(i) == level]
    if hits:
      out['by_confidence'][str(level)] = {'num_marked': len(hits), 'correct': sum(hits),
                                          'accuracy': sum(hits) / len(hits)}
  out['num_without_confidence'] = sum(i not in confidence for i, _ in right)
  return out


def cohen_kappa(a: Mapping[str, str], b: Mapping[str, str]) -> tuple[float | None, int]:
  """Cohen's kappa of two readers' real/fake marks over the items both marked."""
  common = sorted(set(a) & set(b))
  if not common:
    return None, 0
  x = np.array([a[i] == 'real' for i in common])
  y = np.array([b[i] == 'real' for i in common])
  observed = float(np.mean(x == y))
  expected = float(x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean()))
  if expected == 1.0:
    return None, len(common)  # both readers gave one answer throughout: undefined
  return (observed - expected) / (1 - expected), len(common)


def score(key: dict, answers: Mapping[str, dict], allow_missing: bool = False) -> dict:
  """Per reader and per sign rates; `answers` maps a name (file) to its answers dict.

  Returns {'page_id', 'readers': {reader: {'file', 'per_sign': {sign: rates},
  'total': rates}}, 'all_readers': {'per_sign', 'total'}} (pooled over readers).
  """
  by_id = {it['id']: it for it in key['items']}
  present = {it['sign'] for it in key['items']}
  signs = [s for s in signs_lib.SIGNS if s in present]  # the paper's order
  readers, pooled, pooled_acc, marks = {}, [], [], {}
  for name, ans in answers.items():
    check_answers(key, ans, name, allow_missing)
    rows = [(by_id[i]['sign'], by_id[i]['truth'], m) for i, m in ans['answers'].items()]
    acc_rows = [(f'{name}:{i}', by_id[i]['truth'], m) for i, m in ans['answers'].items()]
    conf = {f'{name}:{i}': v for i, v in (ans.get('confidence') or {}).items()}
    pooled += rows
    pooled_acc.append((acc_rows, conf))
    reader = str(ans.get('reader') or '').strip() or os.path.basename(name)
    if reader in readers:
      reader = f'{reader} ({os.path.basename(name)})'
    readers[reader] = {'file': name, **_summarise(rows, signs),
                       'overall': _accuracy(acc_rows, conf)}
    marks[reader] = ans['answers']
  names = list(marks)
  agreement = []
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      kappa, n = cohen_kappa(marks[a], marks[b])
      agreement.append({'readers': [a, b], 'cohen_kappa': kappa, 'num_items': n})
  all_rows = [r for rows, _ in pooled_acc for r in rows]
  all_conf = {k: v for _, conf in pooled_acc for k, v in conf.items()}
  return {'page_id': key['page_id'], 'readers': readers,
          'all_readers': {**_summarise(pooled, signs),
                          'overall': _accuracy(all_rows, all_conf)},
          'agreement': agreement}


def _summarise(rows, signs):
  return {'per_sign': {s: _rates([(t, m) for g, t, m in rows if g == s]) for s in signs},
          'total': _rates([(t, m) for _, t, m in rows])}


def _pct(share: float, k: int, n: int) -> str:
  return 'n/a' if not n else f'{100 * share:.1f}% ({k}/{n})'


def score_markdown(scores: dict) -> str:
  """Markdown tables: per reader (and pooled), per sign and total."""
  lines = [f'# Visual Turing test scores (page {scores["page_id"]})', '',
           'Generated taken as real: higher means more convincing generated patches. '
           'Paper (2 radiologists): 46.7% and 66.7% generated taken as real; 26.7% and '
           '46.7% real taken as fake.']
  blocks = list(scores['readers'].items())
  if len(blocks) > 1:
    blocks.append(('all readers, pooled', scores['all_readers']))
  for reader, res in blocks:
    lines += ['', f'## {reader}', '', '| sign | generated taken as real | real taken as fake |',
              '|---|---|---|']
    for sign, r in list(res['per_sign'].items()) + [('**total**', res['total'])]:
      g = _pct(r['generated_as_real_share'], r['generated_as_real'], r['num_generated'])
      f = _pct(r['real_as_fake_share'], r['real_as_fake'], r['num_real'])
      lines.append(f'| {sign} | {g} | {f} |')
    o = res['overall']
    if o['num_marked']:
      lines += ['', f'Overall accuracy {100 * o["accuracy"]:.1f}% ({o["correct"]}/'
                f'{o["num_marked"]}); two-sided binomial test against 50% (cannot tell real '
                f'from generated): p = {o["binomial_p"]:.3g}.' + ''.join(
                    f' Mean confidence (1-5) when {w}: {o[k]:.2f}.' for w, k in (
                        ('right', 'mean_confidence_correct'),
                        ('wrong', 'mean_confidence_wrong')) if o[k] is not None)]
      if o.get('by_confidence'):
        lines += ['', '| confidence (1 a guess, 5 certain) | marked | right | accuracy |',
                  '|---|---|---|---|']
        lines += [f'| {level} | {c["num_marked"]} | {c["correct"]} | '
                  f'{100 * c["accuracy"]:.1f}% |' for level, c in o['by_confidence'].items()]
        if o['num_without_confidence']:
          lines.append(f'| none given | {o["num_without_confidence"]} | | |')
  if scores.get('agreement'):
    lines += ['', '## Agreement between readers', '', '| readers | Cohen\'s kappa | items |',
              '|---|---|---|']
    for a in scores['agreement']:
      k = 'undefined' if a['cohen_kappa'] is None else f'{a["cohen_kappa"]:.3f}'
      lines.append(f'| {" / ".join(a["readers"])} | {k} | {a["num_items"]} |')
  return '\n'.join(lines) + '\n'


def build_from_workdir(config, workdir: str, out_dir: str) -> tuple[str, str]:
  """Builds the page of fold config.fold of a reproduce workdir; returns (page, key) paths.

  Generated patches come from `<workdir>/fold<k>/<generate_stage>/` (or
  config.generated_dir); real ones from every fold of the dataset that stage used, so
  that the rarest signs have enough (the paper drew them from the whole database).
  """
  from cisl_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from cisl_jax.quality import stage as quality  # pylint: disable=g-import-not-at-top
  stage_dir = str(wd.stage_dir(workdir, config.fold, config.generate_stage or wd.GENERATE))
  gen_dir = config.generated_dir or quality.find_generated(stage_dir)
  data = quality.data_settings(config, stage_dir)
  real = input_pipeline.load_split(data['data_dir'], data['source'], range(data['num_folds']))
  gen = input_pipeline.load_generated(gen_dir)
  chosen = [s.strip() for s in config.signs.split(',') if s.strip()] or list(signs_lib.SIGNS)
  html, key = build(
      real['image'], real['label'], gen['image'], gen['label'], num_real=config.num_real,
      num_generated=config.num_generated, seed=config.seed,
      data_window=(config.data_hu_level, config.data_hu_width),
      display_window=(config.display_level, config.display_width), size_px=config.size_px,
      signs=[signs_lib.canonical(s) for s in chosen],
      source={'workdir': os.path.abspath(workdir), 'fold': int(config.fold),
              'generated_dir': os.path.abspath(gen_dir), **data})
  return write(out_dir, html, key)
