"""The nine Common Imaging Signs of Lung diseases (CISL): the one source of truth.

Label codes 0-8 are the signs in the paper's order; code 9 is normal lung tissue,
the tenth class of the 10-class task. Everything that names a sign (sources, patches,
reports) goes through this module so that codes never drift apart.
"""
import difflib

SIGNS = ('GGO', 'lobulation', 'calcification', 'CV', 'spiculation', 'PI', 'BMP', 'AB', 'OP')
LONG_NAMES = ('ground-glass opacity', 'lobulation', 'calcification', 'cavity & vacuole',
              'spiculation', 'pleural indentation', 'bronchial mucus plug',
              'air bronchogram', 'obstructive pneumonia')
NUM_SIGNS = len(SIGNS)
NORMAL = NUM_SIGNS  # label of normal lung tissue in the 10-class task
CLASS_NAMES = SIGNS + ('normal',)
NUM_CLASSES = len(CLASS_NAMES)

# Patches per sign in the paper (Section III-A), 696 in all.
PAPER_COUNTS = dict(zip(SIGNS, (205, 41, 47, 167, 29, 80, 86, 23, 18)))



class AbsentClass(ValueError):
  """The data hold no patches of a class a task needs (small data of one's own): the
  stage cannot be measured. reproduce records it as skipped with this reason, not as
  failed."""


_ALIASES = {
    'ground glass opacity': 'GGO', 'ground-glass opacity': 'GGO',
    'cavity': 'CV', 'vacuole': 'CV', 'cavity & vacuole': 'CV', 'cavity and vacuole': 'CV',
    'pleural indentation': 'PI', 'bronchial mucus plug': 'BMP', 'mucus plug': 'BMP',
    'air bronchogram': 'AB', 'obstructive pneumonia': 'OP',
}
_BY_KEY = {s.lower(): s for s in SIGNS}
_BY_KEY.update({k.lower(): v for k, v in _ALIASES.items()})


def canonical(name: str) -> str:
  """Returns the canonical sign name for `name` (case-insensitive, long names accepted).

  Raises ValueError naming the closest known sign when `name` is unknown.
  """
  key = str(name).strip().lower()
  if key in _BY_KEY:
    return _BY_KEY[key]
  close = difflib.get_close_matches(key, list(_BY_KEY), n=1, cutoff=0.4)
  hint = f' Did you mean {_BY_KEY[close[0]]!r}?' if close else ''
  raise ValueError(f'unknown sign {name!r}; known signs: {", ".join(SIGNS)}.{hint}')


def code(name: str) -> int:
  """Label code (0-8) of a sign name."""
  return SIGNS.index(canonical(name))
