"""Sobel mean / Sobel variance: glimpse where the image has the most edge
energy (section 4.1), per location over its receptive field box."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saccader_jax.models import geometry
from saccader_jax.policies import common

# ITU-R 601 luma, as tf.image.rgb_to_grayscale.
GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def grey(images: jnp.ndarray) -> jnp.ndarray:
  """[batch, H, W, 1 or 3] -> [batch, H, W]."""
  if images.shape[-1] == 1:
    return images[..., 0]
  if images.shape[-1] == 3:
    return jnp.tensordot(images, jnp.asarray(GREY_WEIGHTS, images.dtype),
                         axes=(-1, 0))
  raise ValueError(f"Sobel baselines take 1 or 3 channels; got "
                   f"{images.shape[-1]}.")


def sobel_magnitude(images: jnp.ndarray) -> jnp.ndarray:
  """[batch, H, W, C] -> [batch, H, W]: sqrt(dy^2 + dx^2) of the grey image,
  kernels [[-1,-2,-1],[0,0,0],[1,2,1]] (dy) and its transpose (dx), 1-pixel
  reflect padding."""
  x = jnp.pad(grey(images.astype(jnp.float32)), ((0, 0), (1, 1), (1, 1)),
              mode="reflect")
  smooth_x = x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]
  smooth_y = x[:, :-2, :] + 2 * x[:, 1:-1, :] + x[:, 2:, :]
  dy = smooth_x[:, 2:, :] - smooth_x[:, :-2, :]
  dx = smooth_y[:, :, 2:] - smooth_y[:, :, :-2]
  return jnp.sqrt(dy ** 2 + dx ** 2)


def box_statistics(values: jnp.ndarray, grid: geometry.GridGeometry,
                   variance: bool) -> jnp.ndarray:
  """values [batch, H, W] -> [batch, h, w]: the mean (or the unbiased
  variance, n = rf^2) of each location's receptive field box."""
  rf, stride = grid.receptive_field, grid.stride

  def box_sum(x):
    sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, rf, rf),
                                 (1, stride, stride), "VALID")
    return sums[:, :grid.grid_height, :grid.grid_width]

  n = rf * rf
  if not variance:
    return box_sum(values) / n
  # Centred per image (the variance does not change): the sums then cancel
  # little in float32.
  values = values - jnp.mean(values, axis=(1, 2), keepdims=True)
  sums = box_sum(values)
  return (box_sum(values ** 2) - sums ** 2 / n) / (n - 1)


def glimpse_fn(model, variance: bool):
  def fn(variables, images, num_glimpses, key):
    del key  # deterministic
    grid = model.grid_geometry(images.shape[1], images.shape[2])
    scores = box_statistics(sobel_magnitude(images), grid, variance)
    return common.score_map_glimpses(model, variables, images, scores,
                                     num_glimpses)
  return fn
