"""The convolution primitive behind every Flax conv layer of the model."""

from __future__ import annotations

import functools
import itertools
from typing import Optional, Sequence, Union

import jax
from jax import custom_derivatives
import jax.numpy as jnp

Padding = Union[str, Sequence[tuple[int, int]]]


def _channels_last(ndim: int) -> jax.lax.ConvDimensionNumbers:
  spatial = tuple(range(1, ndim - 1))
  return jax.lax.ConvDimensionNumbers((0, ndim - 1, *spatial),
                                      (ndim - 1, ndim - 2, *range(ndim - 2)),
                                      (0, ndim - 1, *spatial))


def _is_plain(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count) -> bool:
  """Channels-last, no dilation, no feature groups."""
  return (feature_group_count == 1
          and all(d == 1 for d in (lhs_dilation or ()))
          and all(d == 1 for d in (rhs_dilation or ()))
          and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                             dimension_numbers)
          == _channels_last(lhs.ndim))


def _is_zero_padding(padding) -> bool:
  return all(tuple(p) == (0, 0) for p in padding)


def _strided_as_phases(lhs, rhs, window_strides, padding, precision):
  """A strided NHWC convolution as a sum of stride-1 ones over input phases.

  Output row i of a stride-s convolution reads input rows s*i + u, u < k.
  Writing u = s*a + p, phase p of the input (rows p, p + s, ...) meets kernel
  rows p, p + s, ... at stride 1. The products and sums are the same. XLA's
  CPU backend computes the input gradient of a strided convolution over a
  zero-dilated copy of the output gradient, s * s times the work; that of a
  stride-1 convolution has no such waste (the BagNet train step: 3-10%
  faster).

  Returns:
    The convolution, or None where lax should handle it (negative padding,
    an input smaller than the kernel).
  """
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2],
                                      window_strides, padding)
  if any(p < 0 for pair in padding for p in pair):
    return None
  if not _is_zero_padding(padding):
    lhs = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
  out_shape = [(n - k) // s + 1 for n, k, s in
               zip(lhs.shape[1:-1], rhs.shape[:-2], window_strides)]
  if min(out_shape) < 1:
    return None
  total = None
  for phase in itertools.product(*(range(s) for s in window_strides)):
    taps = tuple(slice(p, None, s) for p, s in zip(phase, window_strides))
    kernel = rhs[taps]
    if 0 in kernel.shape:
      continue
    rows = tuple(slice(p, p + s * (n + k - 1), s) for p, s, n, k in
                 zip(phase, window_strides, out_shape, kernel.shape))
    out = jax.lax.conv_general_dilated(
        lhs[(slice(None), *rows)], kernel, (1,) * len(phase), "VALID",
        dimension_numbers=_channels_last(lhs.ndim), precision=precision)
    total = out if total is None else total + out
  return total


def _channel_dot(x, kernel, precision):
  """[..., in] x [in, out] -> [..., out]."""
  return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())),
                             precision=precision)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _pointwise(x: jnp.ndarray, kernel: jnp.ndarray, precision) -> jnp.ndarray:
  """A 1x1 convolution as a dot over the channels: [..., in] -> [..., out].

  The tangent rule writes the kernel's term over the flattened positions,
  [positions, in] x [in, out]. Its transpose, the kernel gradient, is then a
  dot of two [positions, channels] matrices, which XLA's CPU backend runs
  without first transposing the output gradient (as it does for the
  gradient of the rank-4 form): the BagNet stage-1 step is 1.13x faster.
  """
  return _channel_dot(x, kernel, precision)


def _pointwise_jvp(precision, primals, tangents):
  x, kernel = primals
  x_dot, kernel_dot = tangents
  out = _channel_dot(x, kernel, precision)
  # Symbolic zeros (inputs that are not differentiated, such as a frozen
  # network's features) contribute no term.
  terms = []
  if not isinstance(x_dot, custom_derivatives.SymbolicZero):
    terms.append(_channel_dot(x_dot, kernel, precision))
  if not isinstance(kernel_dot, custom_derivatives.SymbolicZero):
    flat = _channel_dot(x.reshape(-1, x.shape[-1]), kernel_dot, precision)
    terms.append(flat.reshape(out.shape).astype(out.dtype))
  return out, sum(terms) if terms else jnp.zeros_like(out)


_pointwise.defjvp(_pointwise_jvp, symbolic_zeros=True)


def conv_general_dilated(lhs: jnp.ndarray, rhs: jnp.ndarray,
                         window_strides: Sequence[int], padding: Padding,
                         lhs_dilation: Optional[Sequence[int]] = None,
                         rhs_dilation: Optional[Sequence[int]] = None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         precision=None) -> jnp.ndarray:
  """`jax.lax.conv_general_dilated` in the forms XLA's CPU backend runs fast.

  Flax's conv layers take this as `conv_general_dilated`. Channels-last
  convolutions without dilation or groups are rewritten; the products and
  sums stay the same, so results agree up to float32 reordering:
  - a 1x1 kernel is a strided slice and a dot over the channels. Its kernel
    gradient is then a dot as well, which runs in the CPU matmul kernels; as
    a convolution that gradient has a window spanning the whole image and is
    several times slower (most of all once fused with the L2 gradient);
  - on CPU only, a strided kxk kernel is a sum of stride-1 convolutions over
    the input's phases (`_strided_as_phases`). GPU and TPU run strided
    convolutions natively and keep them.
  Everything else goes to `jax.lax.conv_general_dilated` unchanged. GPU and
  TPU compile the 1x1 form to the same matmul as the convolution.

  Args:
    lhs: [batch, *spatial, in_channels].
    rhs: [*kernel_size, in_channels, out_channels].
    Others: as `jax.lax.conv_general_dilated`.

  Returns:
    [batch, *out_spatial, out_channels].
  """
  plain = _is_plain(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers,
                    feature_group_count)
  pointwise = rhs.shape[:-2] == (1,) * (lhs.ndim - 2)
  # Under "SAME" or "VALID" a 1x1 kernel never pads, at any stride.
  if plain and pointwise and (isinstance(padding, str)
                              or _is_zero_padding(padding)):
    if any(s != 1 for s in window_strides):
      lhs = lhs[(slice(None),) + tuple(slice(None, None, s)
                                       for s in window_strides)]
    return _pointwise(lhs, rhs.reshape(rhs.shape[-2:]), precision)
  if (plain and any(s != 1 for s in window_strides)
      and jax.default_backend() == "cpu"):
    out = _strided_as_phases(lhs, rhs, window_strides, padding, precision)
    if out is not None:
      return out
  return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision)
