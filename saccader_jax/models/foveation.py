"""DRAM's retina: multi-resolution glimpses at continuous locations.

A location l = (y, x) lies in [-1, 1]^2, (-1, -1) the top-left corner of
the image and (1, 1) the bottom-right. The glimpse of side s at l has its
top-left pixel at floor((S (l + 1) - s) / 2) per axis on an S-pixel axis;
pixels outside the image take the value of the nearest edge pixel.

Every function is pure and parameter-free; no gradient flows into the
images or the locations through them (the extraction is an index gather
at stop-gradient locations).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


# Pixels: below any real fraction of the corner formula (multiples of 1/2 at
# the edges), above float32 rounding of S (l + 1) for S up to ~10^4.
_ROUNDING = 1e-3


def position_channels(batch: int, height: int, width: int,
                      dtype=jnp.float32) -> jnp.ndarray:
  """[batch, height, width, 2]: row then column position, each
  linspace(-1, 1) over its axis."""
  rows = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, height, dtype=dtype)[:, None],
                          (height, width))
  cols = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, width, dtype=dtype)[None, :],
                          (height, width))
  return jnp.broadcast_to(jnp.stack([rows, cols], -1),
                          (batch, height, width, 2))


def resolution_sides(glimpse_size: int, image_size: int,
                     num_resolutions: int) -> tuple[int, ...]:
  """Sides of the fields of view, finest first: the glimpse itself, then
  int(f S) for f in linspace(g / S, 1, R)[1:] (224 px, g = 77: 77, 150,
  224; 64 px, g = 29: 29, 46, 64)."""
  if not 1 <= glimpse_size <= image_size:
    raise ValueError(f"glimpse size {glimpse_size} must be in [1, image size "
                     f"{image_size}].")
  fractions = np.linspace(glimpse_size / image_size, 1.0, num_resolutions,
                          dtype=np.float32)
  return (glimpse_size,) + tuple(int(f * image_size) for f in fractions[1:])


def location_scale(glimpse_size: int, image_size: int) -> float:
  """The largest |l| per axis that keeps a glimpse inside: 1 - g / S."""
  return 1.0 - glimpse_size / image_size


def top_left(locations: jnp.ndarray, side: int,
             image_size: int) -> jnp.ndarray:
  """[batch, 2] locations -> [batch, 2] int32 top-left pixel (row, col) of
  the side x side window centred there: floor((S (l + 1) - side) / 2).

  The floor forgives float32 rounding of up to 1e-3 pixel, so that
  l = +-(1 - side / S) gives a window exactly at the image's edge even
  where side / S has no exact binary form.
  """
  corner = (image_size * (locations.astype(jnp.float32) + 1.0) - side) / 2.0
  return jnp.floor(corner + _ROUNDING).astype(jnp.int32)


def boxes(locations: jnp.ndarray, side: int, image_size: int) -> jnp.ndarray:
  """[..., 2] locations -> [..., 4] int32 pixel boxes (y_min, x_min, y_max,
  x_max; maxima exclusive) of side x side windows."""
  shape = locations.shape[:-1]
  corner = top_left(locations.reshape(-1, 2), side, image_size)
  return jnp.concatenate([corner, corner + side], -1).reshape(shape + (4,))


def extract(images: jnp.ndarray, locations: jnp.ndarray,
            side: int) -> jnp.ndarray:
  """images [batch, S, S, C], locations [batch, 2] -> [batch, side, side, C]
  windows centred at the locations, edge pixels repeated outside."""
  _, height, width, _ = images.shape
  if height != width:
    raise ValueError(f"glimpses need square images; got {height}x{width}.")
  corner = top_left(jax.lax.stop_gradient(locations), side, height)
  offsets = jnp.arange(side, dtype=jnp.int32)
  rows = jnp.clip(corner[:, 0:1] + offsets, 0, height - 1)
  cols = jnp.clip(corner[:, 1:2] + offsets, 0, width - 1)
  return jax.vmap(lambda image, r, c: image[r][:, c])(images, rows, cols)


def multi_resolution(images: jnp.ndarray, locations: jnp.ndarray,
                     sides: Sequence[int], glimpse_size: int
                     ) -> list[jnp.ndarray]:
  """One [batch, g, g, C] glimpse per field of view in `sides` (finest
  first), each resized to g x g (bilinear, half-pixel centres), with no
  gradient to the images."""
  glimpses = []
  for side in sides:
    window = extract(images, locations, side)
    if side != glimpse_size:
      window = jax.image.resize(
          window, window.shape[:1] + (glimpse_size, glimpse_size)
          + window.shape[3:], "bilinear", antialias=False)
    glimpses.append(jax.lax.stop_gradient(window))
  return glimpses


def network_input(glimpses: Sequence[jnp.ndarray],
                  coarse: bool) -> jnp.ndarray:
  """Concatenates the resolutions on channels: [batch, g, g, R * C].

  With coarse=False only the finest resolution is seen: each coarser one
  is replaced by its per-channel spatial mean, which carries no gradient.
  """
  parts = [glimpses[0]]
  for glimpse in glimpses[1:]:
    if not coarse:
      glimpse = jnp.broadcast_to(
          jax.lax.stop_gradient(jnp.mean(glimpse, axis=(1, 2), keepdims=True)),
          glimpse.shape)
    parts.append(glimpse)
  return jnp.concatenate(parts, axis=-1)
