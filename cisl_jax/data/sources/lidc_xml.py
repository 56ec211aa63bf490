"""Parses one LIDC-IDRI reading XML (`LidcReadMessage`) into readers' marks.

What is read (the sign mapping and grouping are in `lidc.py`):
- each `readingSession` is one reader (`servicingRadiologistID`); each
  `unblindedReadNodule` with filled `characteristics` is one rated mark. Marks without
  ratings are the nodules under 3 mm (one point) and the few with blank or all-zero
  ratings: they give no sign.
- each `roi` of a rated mark: `imageSOP_UID` names the slice (`imageZposition` is not
  used), `edgeMap` xCoord (column) / yCoord (row) points its contour. Only `inclusion`
  TRUE contours make the box (FALSE ones outline holes inside the nodule); one-point
  contours are stray clicks and dropped (as pylidc does). A mark's box on a slice is the
  min/max of its contour points, half-open: [min x, max x + 1) x [min y, max y + 1).
- every point any reader placed, of any kind (rated and unrated nodules, exclusion and
  one-point contours, `nonNodule` loci), as a per-slice box: the spots that background
  patches keep off.
"""
import dataclasses
import xml.etree.ElementTree as ET

# The characteristics the sign mapping reads (the other four do not give signs).
RATED = ('texture', 'lobulation', 'spiculation', 'calcification', 'internalStructure')

Box = tuple[int, int, int, int]


class XmlError(ValueError):
  """A bad mark or file; the caller adds the file's path."""


@dataclasses.dataclass
class Mark:
  """One reader's rated mark of one nodule: ratings, a box per slice and its contours."""
  xml: str
  reader: str
  nodule_id: str
  ratings: dict[str, int]
  boxes: dict[str, Box]  # SOP Instance UID -> box of the inclusion contours there
  contours: dict[str, int]  # SOP Instance UID -> inclusion contours there
  series_uid: str = ''

  @property
  def where(self) -> str:
    return f'reader {self.reader}, nodule {self.nodule_id!r}'


@dataclasses.dataclass
class Reading:
  """One CT reading XML: its series, readers, rated marks and every reader's spot."""
  path: str
  series_uid: str  # from the ResponseHeader ('' when absent)
  readers: tuple[str, ...]
  marks: list[Mark]
  spots: dict[str, list[Box]]  # SOP UID -> boxes of every point placed on that slice
  bad: list[str]  # reasons of marks that could not be read (reader, nodule, what)


def local(tag: str) -> str:
  return tag.rsplit('}', 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
  return next((c for c in el if local(c.tag) == name), None)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
  return [c for c in el if local(c.tag) == name]


def _text(el: ET.Element, name: str) -> str:
  child = _child(el, name)
  return (child.text or '').strip() if child is not None else ''


def _ratings(chars: ET.Element | None, where: str) -> dict[str, int] | None:
  """RATED ratings of a mark, or None for an unrated (small) nodule."""
  if chars is None or not len(chars):
    return None
  texts = {k: _text(chars, k) for k in RATED}
  if any(v in ('', '0') for v in texts.values()):
    return None  # LIDC's few small nodules with an empty or all-zero characteristics block
  ratings = {}
  for k, v in texts.items():
    try:
      ratings[k] = int(float(v))
    except ValueError:
      raise XmlError(f'{where}: characteristic {k} is {v!r}, not a rating number') from None
  return ratings


def _points(el: ET.Element, tag: str, where: str, sop: str) -> list[tuple[int, int]]:
  try:
    return [(int(float(_text(e, 'xCoord'))), int(float(_text(e, 'yCoord'))))
            for e in _children(el, tag)]
  except ValueError:
    raise XmlError(f'{where}: {tag} with a non-numeric xCoord/yCoord on {sop}') from None


def _box(points) -> Box:
  xs, ys = zip(*points)
  return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def union(a: Box, b: Box) -> Box:
  return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _nodule(nodule: ET.Element, path: str, reader: str, spots) -> Mark | None:
  """The rated mark of one `unblindedReadNodule` (None if unrated); adds its spots."""
  nodule_id = _text(nodule, 'noduleID')
  where = f'reader {reader}, nodule {nodule_id!r}'
  ratings = _ratings(_child(nodule, 'characteristics'), where)
  boxes, contours = {}, {}
  for roi in _children(nodule, 'roi'):
    sop = _text(roi, 'imageSOP_UID')
    if not sop:
      raise XmlError(f'{where}: roi without imageSOP_UID')
    points = _points(roi, 'edgeMap', where, sop)
    if not points:
      continue
    spots.setdefault(sop, []).append(_box(points))
    if _text(roi, 'inclusion').upper() == 'FALSE' or len(points) <= 1:
      continue
    box = _box(points)
    boxes[sop] = union(boxes[sop], box) if sop in boxes else box
    contours[sop] = contours.get(sop, 0) + 1
  if ratings is None or not boxes:
    return None
  return Mark(path, reader, nodule_id, ratings, boxes, contours)


def parse(path: str) -> tuple[str, Reading | None]:
  """(root element, reading): the reading of a `LidcReadMessage`, None for other XML.

  Bad marks are listed in the reading's `bad`; a file that is no XML raises XmlError.
  """
  try:
    root = ET.parse(path).getroot()
  except (ET.ParseError, OSError) as e:
    raise XmlError(f'malformed XML ({e})') from None
  if local(root.tag) != 'LidcReadMessage':
    return local(root.tag), None
  header = _child(root, 'ResponseHeader')
  series_uid = ''
  if header is not None:
    series_uid = _text(header, 'SeriesInstanceUid') or _text(header, 'SeriesInstanceUID')
  marks, spots, readers, bad = [], {}, [], []
  for n, session in enumerate(_children(root, 'readingSession')):
    reader = _text(session, 'servicingRadiologistID') or f'reader {n + 1}'
    readers.append(reader)
    for nodule in _children(session, 'unblindedReadNodule'):
      try:
        mark = _nodule(nodule, path, reader, spots)
      except XmlError as e:
        bad.append(str(e))
        continue
      if mark:
        marks.append(mark)
    for non in _children(session, 'nonNodule'):
      sop = _text(non, 'imageSOP_UID')
      try:
        points = _points(non, 'locus', f'reader {reader}, non-nodule', sop)
      except XmlError as e:
        bad.append(str(e))
        continue
      if sop and points:
        spots.setdefault(sop, []).append(_box(points))
  return 'LidcReadMessage', Reading(path, series_uid, tuple(readers), marks, spots, bad)
