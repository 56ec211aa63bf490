"""Tables I and II of the paper, ours beside the paper's, as Markdown and CSV."""
import csv
import dataclasses
import io
import math

from cisl_jax import paper_results
from cisl_jax import signs
from cisl_jax import workdir as wd
from cisl_jax.report import results

METHOD_TITLES = {
    'scratch': 'Scratch', 'pretrain': 'Pre-training', 'finetune': 'Fine-tuning',
    'traditional': 'Traditional method',
}
CSV_FIELDS = ('table', 'row', 'method', 'metric', 'mean', 'std', 'ci_low', 'ci_high',
              'num_folds', 'num_examples', 'paper')


@dataclasses.dataclass
class Table:
  """One of the paper's tables filled in with our cells."""
  name: str  # 'I' or 'II'
  rows: tuple[str, ...]  # row labels, the last is 'mean'
  methods: tuple[str, ...]
  cells: dict[tuple[str, str], results.Cell]  # (row, method) -> Cell
  paper: dict[tuple[str, str], tuple]  # (row, method) -> paper's (AC, SE, SP)


def table1(workdir, sign_names=signs.SIGNS) -> Table:
  """Table I (binary, per sign) from the workdir's results."""
  methods = paper_results.TABLE1_METHODS
  cells, paper = {}, {}
  for m in methods:
    for s in sign_names:
      cells[s, m] = results.binary_cell(workdir, wd.binary_stage(s, m))
      paper[s, m] = paper_results.table1(s, m)
    cells['mean', m] = results.binary_mean_cell(
        workdir, [wd.binary_stage(s, m) for s in sign_names])
    paper['mean', m] = paper_results.table1('mean', m)
  return Table('I', tuple(sign_names) + ('mean',), methods, cells, paper)


def table2(workdir) -> Table:
  """Table II (10-class, per class) from the workdir's results."""
  methods = paper_results.TABLE2_METHODS
  cells, paper = {}, {}
  for m in methods:
    by_class = results.class_cells(workdir, wd.ten_stage(m))
    for c, name in enumerate(signs.CLASS_NAMES):
      cells[name, m] = by_class[c]
      paper[name, m] = paper_results.table2(name, m)
    cells['mean', m] = by_class[None]
    paper['mean', m] = paper_results.table2('mean', m)
  return Table('II', signs.CLASS_NAMES + ('mean',), methods, cells, paper)


def fmt(x: float | None, digits: int = 3) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return '–'
  return f'{x:.{digits}f}'


def markdown(table: Table) -> str:
  """The table as two Markdown tables: mean +- std over folds with the paper's figure
  in parentheses, then the 95% bootstrap intervals over the pooled held-out patches."""
  head = ['row'] + [f'{METHOD_TITLES[m]} {k}' for m in table.methods
                    for k in paper_results.METRICS]
  sep = ['---'] + ['---:'] * (len(head) - 1)
  main = [head, sep]
  ci = [head, sep]
  for row in table.rows:
    line, ci_line = [line_name(row)], [line_name(row)]
    for m in table.methods:
      cell, ref = table.cells[row, m], table.paper[row, m]
      for i in range(3):
        ours = fmt(cell.mean[i])
        if cell.num_folds > 1 and not math.isnan(cell.std[i]):
          ours += f' ± {fmt(cell.std[i])}'
        line.append(f'{ours} ({fmt(ref[i])})')
        lo, hi = cell.ci[i]
        ci_line.append('–' if math.isnan(lo) else f'[{fmt(lo, 2)}, {fmt(hi, 2)}]')
    main.append(line)
    ci.append(ci_line)
  render = lambda rows: '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)
  return (render(main) + '\n\n95% bootstrap intervals (held-out patches pooled over '
          'the folds):\n\n' + render(ci) + '\n')


def line_name(row: str) -> str:
  return f'**{row}**' if row == 'mean' else row


def to_csv(table: Table) -> str:
  """Long-form CSV: one line per (row, method, metric)."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator='\n')
  w.writerow(CSV_FIELDS)
  for m in table.methods:
    for row in table.rows:
      cell, ref = table.cells[row, m], table.paper[row, m]
      for i, metric in enumerate(paper_results.METRICS):
        num = lambda x: '' if x is None or math.isnan(x) else f'{x:.6f}'
        w.writerow([table.name, row, m, metric, num(cell.mean[i]), num(cell.std[i]),
                    num(cell.ci[i][0]), num(cell.ci[i][1]), cell.num_folds,
                    cell.num_examples, num(ref[i])])
  return buf.getvalue()

