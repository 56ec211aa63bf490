"""Convolution kernel gradients as one matmul over the kernel taps, for XLA's CPU backend.

XLA (jax 0.10.2) runs the kernel gradient of a stride-2 5x5 convolution as a
backward-filter convolution whose window is the whole output map; on the large maps of
these networks (64x64x32 -> 64 in the classifier and both critics) that is ~2.8x slower
than the same FLOPs as one matmul (MEASUREMENTS.md). Written as what it is, a sum over
the k*k kernel taps,
  dW[ky, kx] = X_tap(ky, kx)^T G,   one (N, k*k*I)^T (N, O) matmul, N = B*H'*W',
the FLOPs land on XLA's dot kernels. SAME padding as lax's; NHWC / HWIO.
"""
import jax
import jax.numpy as jnp


def same_padding(size: int, k: int, stride: int) -> tuple[int, int, int]:
  """(output size, pad low, pad high) of lax's 'SAME' rule along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return out, total // 2, total - total // 2


def tap_slices(x: jax.Array, k: int, stride: int) -> list[jax.Array]:
  """The k*k strided views of the SAME-padded input, one per kernel tap (row-major).

  Tap (ky, kx) is x_padded[:, ky + stride * i, kx + stride * j, :] over output (i, j).
  """
  _, h, w, _ = x.shape
  oh, top, bottom = same_padding(h, k, stride)
  ow, left, right = same_padding(w, k, stride)
  xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
  return [xp[:, ky:ky + span_h:stride, kx:kx + span_w:stride, :]
          for ky in range(k) for kx in range(k)]


def kernel_grad(x: jax.Array, g: jax.Array, k: int, stride: int) -> jax.Array:
  """d sum(conv(x, W) * g) / dW, shape (k, k, I, O), as one matmul over tap columns."""
  cols = jnp.stack(tap_slices(x, k, stride), axis=3)  # (B, H', W', k*k, I)
  n = cols.shape[0] * cols.shape[1] * cols.shape[2]
  # Contract over N in f32 whatever the inputs are (the sum runs over B*H'*W' terms).
  dw = jnp.einsum('nc,no->co', cols.reshape(n, -1), g.reshape(n, -1),
                  preferred_element_type=jnp.float32)
  return dw.reshape(k, k, x.shape[-1], g.shape[-1]).astype(x.dtype)
