"""The paper's CNN classifier: 4 convolutions + 2 fully connected layers (Section II-B).

Layer list (NHWC, 64x64x1 input in [-1, 1]):
  (1) conv 5x5 s1 SAME, 32, ReLU
  (2) conv 5x5 s2 SAME, 64, BN, ReLU
  (3) conv 5x5 s2 SAME, 128, BN, ReLU
  (4) conv 5x5 s2 SAME, 256, BN, ReLU
  (5) FC 1024, BN, ReLU, dropout 0.5
  (6) FC num_classes (2 binary, 10 multi-class); softmax is left to the loss.
The layers (and the fast stride-2 convolutions) are in layers.py.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from cisl_jax.models.layers import batch_norm
from cisl_jax.models.layers import conv
from cisl_jax.models.layers import down_blocks
from cisl_jax.models.layers import run_blocks
from cisl_jax.models.layers import scaled


class Classifier(nnx.Module):
  """The paper's classifier; `model(x) -> logits` of shape (B, num_classes).

  BatchNorm uses batch statistics and dropout is active after `model.train()`;
  `model.eval()` switches both to inference. `fast_conv=False` runs the stride-2
  convolutions as plain nnx.Conv (same parameters, same results up to rounding).
  """

  def __init__(self, num_classes: int, *, width: float = 1.0, dropout: float = 0.5,
               image_size: int = 64, fast_conv: bool = True, rngs: nnx.Rngs):
    c1, c2, c3, c4 = (scaled(c, width) for c in (32, 64, 128, 256))
    hidden = scaled(1024, width)
    self.num_classes = num_classes
    self.conv1 = conv(1, c1, 1, rngs, fast_conv)
    # (2)-(4): conv 5x5 s2 + BN each (attribute names as the paper's layer numbers).
    (self.conv2, self.bn2), (self.conv3, self.bn3), (self.conv4, self.bn4) = down_blocks(
        (c1, c2, c3, c4), rngs, fast_conv)
    side = -(-image_size // 8)  # three stride-2 SAME convolutions
    self.fc5 = nnx.Linear(side * side * c4, hidden, rngs=rngs)
    self.bn5 = batch_norm(hidden, rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.fc6 = nnx.Linear(hidden, num_classes, rngs=rngs)

  def features(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    """The input of the last FC layer (after dropout), shape (B, 1024 * width)."""
    x = nnx.relu(self.conv1(x))
    x = run_blocks(x, ((self.conv2, self.bn2), (self.conv3, self.bn3), (self.conv4, self.bn4)),
                   nnx.relu)
    x = x.reshape(x.shape[0], -1)
    x = nnx.relu(self.bn5(self.fc5(x)))
    return self.dropout(x, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    """Logits for images x (B, 64, 64, 1); `rngs` overrides the dropout stream."""
    return self.fc6(self.features(jnp.asarray(x), rngs=rngs))
