"""The convolution primitive behind every Flax conv layer of the model."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

Padding = Union[str, Sequence[tuple[int, int]]]


def _is_pointwise(lhs, rhs, padding, lhs_dilation, dimension_numbers,
                  feature_group_count) -> bool:
  """A 1x1 kernel, no padding, dilation or groups, channels-last layout."""
  ndim = lhs.ndim
  if rhs.shape[:-2] != (1,) * (ndim - 2) or feature_group_count != 1:
    return False
  # Under "SAME" or "VALID" a 1x1 kernel never pads, at any stride; kernel
  # dilation spreads taps a 1x1 kernel does not have.
  if not isinstance(padding, str) and any(tuple(p) != (0, 0)
                                          for p in padding):
    return False
  if any(d != 1 for d in (lhs_dilation or ())):
    return False
  channels_last = (0, ndim - 1, *range(1, ndim - 1))
  kernel_hwio = (ndim - 1, ndim - 2, *range(ndim - 2))
  numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                           dimension_numbers)
  return numbers == jax.lax.ConvDimensionNumbers(channels_last, kernel_hwio,
                                                 channels_last)


def conv_general_dilated(lhs: jnp.ndarray, rhs: jnp.ndarray,
                         window_strides: Sequence[int], padding: Padding,
                         lhs_dilation: Optional[Sequence[int]] = None,
                         rhs_dilation: Optional[Sequence[int]] = None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         precision=None) -> jnp.ndarray:
  """`jax.lax.conv_general_dilated` that computes 1x1 kernels as a matmul.

  Flax's conv layers take this as `conv_general_dilated`. A 1x1 convolution
  over channels-last input is a strided slice and a dot over the channels:
  the same products and sums. Written as a dot, its kernel gradient is a dot
  too, which XLA's CPU backend runs in its matmul kernels; written as a
  convolution, that gradient is a convolution whose window spans the whole
  image, several times slower on CPU (most of all once fused with the L2
  term's gradient). TPU and GPU compile both forms to the same matmul.

  Args:
    lhs: [batch, *spatial, in_channels].
    rhs: [*kernel_size, in_channels, out_channels].
    Others: as `jax.lax.conv_general_dilated`.

  Returns:
    [batch, *out_spatial, out_channels].
  """
  if not _is_pointwise(lhs, rhs, padding, lhs_dilation, dimension_numbers,
                       feature_group_count):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision)
  if any(s != 1 for s in window_strides):
    lhs = lhs[(slice(None),) + tuple(slice(None, None, s)
                                     for s in window_strides)]
  kernel = rhs.reshape(rhs.shape[-2:])
  return jax.lax.dot_general(lhs, kernel, (((lhs.ndim - 1,), (0,)), ((), ())),
                             precision=precision)
