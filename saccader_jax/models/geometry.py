"""Receptive-field arithmetic for stacks of VALID convolutions.

The classification path of Saccader is a BagNet: every convolution is VALID,
so grid location (i, j) of the output sees exactly the input pixels
[stride * i, stride * i + receptive_field) along each axis. These helpers
compute that geometry from the list of convolutions, without running the
network, so that inputs can be validated before any tracing.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ConvSpec:
  """One convolution of a VALID stack: square kernel size and stride."""
  kernel_size: int
  stride: int


def receptive_field(convs: Sequence[ConvSpec]) -> tuple[int, int]:
  """Returns (receptive field, output stride) of a stack of convolutions."""
  field, jump = 1, 1
  for conv in convs:
    field += jump * (conv.kernel_size - 1)
    jump *= conv.stride
  return field, jump


def output_size(convs: Sequence[ConvSpec], input_size: int) -> int:
  """Spatial size after the stack; <= 0 when the input is too small."""
  size = input_size
  for conv in convs:
    size = math.ceil((size - conv.kernel_size + 1) / conv.stride)
    if size <= 0:
      return 0
  return size


@dataclasses.dataclass(frozen=True)
class GridGeometry:
  """Where the grid locations of a VALID network fall on its input image.

  Attributes:
    image_height, image_width: input size in pixels.
    receptive_field: side of the square patch each location sees.
    stride: pixels between neighbouring locations.
    grid_height, grid_width: number of locations along each axis.
  """
  image_height: int
  image_width: int
  receptive_field: int
  stride: int
  grid_height: int
  grid_width: int

  @classmethod
  def from_convs(cls, convs: Sequence[ConvSpec], image_height: int,
                 image_width: int) -> "GridGeometry":
    field, stride = receptive_field(convs)
    return cls(image_height=image_height, image_width=image_width,
               receptive_field=field, stride=stride,
               grid_height=output_size(convs, image_height),
               grid_width=output_size(convs, image_width))

  @property
  def num_locations(self) -> int:
    return self.grid_height * self.grid_width

  def unflatten(self, flat_locations: jnp.ndarray) -> jnp.ndarray:
    """Flat location indices [...] -> (row, col) grid coordinates [..., 2]."""
    return jnp.stack(
        [flat_locations // self.grid_width, flat_locations % self.grid_width],
        axis=-1).astype(jnp.int32)

  def boxes(self, grid_locations: jnp.ndarray) -> jnp.ndarray:
    """Grid (row, col) [..., 2] -> pixel boxes [..., 4].

    Boxes are (y_min, x_min, y_max, x_max) with exclusive maxima: the glimpse
    at that location is image[y_min:y_max, x_min:x_max].
    """
    top_left = grid_locations * self.stride
    bottom_right = top_left + self.receptive_field
    return jnp.concatenate([top_left, bottom_right], axis=-1).astype(jnp.int32)
