"""The record every source produces: one boxed sign on one CT slice."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class BoxedSlice:
  """One sign box on one slice, in pixel coordinates of that slice.

  The box is half-open, [x0, x1) x [y0, y1), columns x and rows y, as in PASCAL-VOC
  read with xmax/ymax exclusive. `sign` is a canonical name from `cisl_jax.signs`,
  or None: with the empty box (0, 0, 0, 0), a slice listed without a box (a sign-free
  slice that still gives background patches); with a box, a region that gives no patch
  but that background patches keep off (e.g. a LIDC reader's mark without a sign).
  """
  patient_id: str
  path: str  # the slice file: DICOM, 16-bit PNG or NPY
  sign: str | None
  x0: int
  y0: int
  x1: int
  y1: int

  @property
  def width(self) -> int:
    return self.x1 - self.x0

  @property
  def height(self) -> int:
    return self.y1 - self.y0
