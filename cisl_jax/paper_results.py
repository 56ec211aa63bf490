"""The paper's own figures (Tables I and II), typed in from its text, for the report.

Source: G. He, "Lung CT Imaging Sign Classification through Deep Learning on Small
Data", Section III-C (the copy in shared/seed/000_2d5680faa894b78c.txt). Each value is
(AC, SE, SP); a cell the paper's text leaves empty is None, never filled in.
"""
from cisl_jax import signs

METRICS = ('AC', 'SE', 'SP')

# Table I, "Models performance of binary classification for each type of CISLs".
# Columns: scratch, pre-training (generated only), fine-tuning, traditional augmentation.
# The table itself has no scratch column; the text of Section III-C-2 says of training
# from scratch only "the accuracy is about 50%" (SE and SP about 50%, or one 0 and the
# other 1): that one figure is the mean row's AC, every other scratch cell is None.
TABLE1_METHODS = ('scratch', 'pretrain', 'finetune', 'traditional')
TABLE1_SCRATCH_TEXT = {'mean': (0.5, None, None)}
_TABLE1_COLUMNS = {
    'GGO': ((0.904, 0.736, 0.988), (0.926, 0.919, 0.932), (0.901, 0.951, 0.851)),
    'lobulation': ((0.966, 0.931, 1.000), (0.983, 1.000, 0.967), (0.859, 0.785, 0.933)),
    'calcification': ((0.913, 0.826, 1.000), (0.946, 0.927, 0.967), (0.868, 0.781, 0.956)),
    'CV': ((0.866, 0.732, 1.000), (0.949, 0.940, 0.955), (0.960, 0.942, 0.978)),
    'spiculation': ((0.860, 0.760, 0.960), (0.940, 0.919, 0.964), (0.836, 0.671, 1.000)),
    'PI': ((0.882, 0.764, 1.000), (0.965, 0.944, 0.986), (0.972, 0.944, 1.000)),
    'BMP': ((0.826, 0.681, 0.971), (0.920, 0.912, 0.927), (0.920, 0.927, 0.913)),
    'AB': ((0.886, 0.909, 0.864), (0.955, 0.962, 0.961), (0.836, 0.720, 0.952)),
    'OP': ((0.857, 0.714, 1.000), (0.964, 0.944, 1.000), (0.800, 0.600, 1.000)),
    'mean': ((0.884, 0.784, 0.976), (0.950, 0.941, 0.962), (0.883, 0.813, 0.954)),
}
TABLE1 = {row: (TABLE1_SCRATCH_TEXT.get(row, (None, None, None)),) + cells
          for row, cells in _TABLE1_COLUMNS.items()}

# Table II, "Sensitivity and specificity of 10-classification results".
# Columns: scratch, pre-training, fine-tuning, traditional augmentation. The text gives
# only SE and SP for every row but PI; PI's row carries a third, leading number per
# method that the text's Section III-C-3 quotes as the method's mean accuracy (43.23%,
# 79.65%, 91.83%), i.e. most likely one merged AC cell for the whole column that the
# text extraction put on the middle row. It is kept where the text puts it.
TABLE2_METHODS = ('scratch', 'pretrain', 'finetune', 'traditional')
TABLE2 = {
    'GGO': ((None, 0.952, 0.329), (None, 0.730, 0.985), (None, 0.919, 0.974),
            (None, 0.958, 0.971)),
    'lobulation': ((None, 0.333, 0.998), (None, 0.896, 0.998), (None, 0.972, 0.998),
                   (None, 0.807, 0.980)),
    'calcification': ((None, 0.271, 0.997), (None, 0.826, 0.997), (None, 0.900, 0.994),
                      (None, 0.709, 0.987)),
    'CV': ((None, 0.367, 0.988), (None, 0.797, 0.990), (None, 0.921, 0.986),
           (None, 0.945, 0.991)),
    'spiculation': ((None, 0.238, 0.994), (None, 0.720, 1.000), (None, 0.878, 0.997),
                    (None, 0.422, 0.994)),
    'PI': ((0.432, 0.267, 0.998), (0.797, 0.875, 0.998), (0.927, 0.963, 0.999),
           (0.805, 0.901, 0.981)),
    'BMP': ((None, 0.197, 0.988), (None, 0.420, 0.997), (None, 0.852, 0.986),
            (None, 0.674, 0.936)),
    'AB': ((None, 0.278, 0.998), (None, 0.909, 0.998), (None, 1.000, 0.998),
           (None, 0.274, 0.990)),
    'OP': ((None, 0.200, 1.000), (None, 0.714, 1.000), (None, 0.952, 1.000),
           (None, 0.500, 0.995)),
    'normal': ((None, 0.255, 0.978), (None, 0.986, 0.781), (None, 0.916, 0.968),
               (None, 0.791, 0.956)),
    'mean': ((None, 0.336, 0.927), (None, 0.787, 0.974), (None, 0.927, 0.990),
             (None, 0.702, 0.977)),
}

# Mean 10-class figures the text of Section III-C-3 states in words (AC, SE, SP).
TABLE2_TEXT_MEANS = {
    'scratch': (0.4323, None, None),
    'pretrain': (0.7965, 0.7873, 0.9744),
    'finetune': (0.9183, 0.9273, 0.990),
}

# Fig. 4 (GGO, fine-tuned): the text says only that AC/SE/SP plateau at about 16,000
# generated pre-training samples; the curve's values are not given in the text.
FIG4_PLATEAU = 16000

assert set(TABLE1) == set(signs.SIGNS) | {'mean'}
assert set(TABLE2) == set(signs.CLASS_NAMES) | {'mean'}


def table1(row: str, method: str):
  """Paper's (AC, SE, SP) for a Table I row (a sign or 'mean') and method."""
  return TABLE1[row][TABLE1_METHODS.index(method)]


def table2(row: str, method: str):
  """Paper's (AC, SE, SP) for a Table II row (a class or 'mean') and method."""
  return TABLE2[row][TABLE2_METHODS.index(method)]
