"""Saccader with a separate high-resolution classifier (the paper's
Saccader-NASNet, section 4.3).

The trained Saccader (frozen, inference mode) chooses T glimpses on the
image downsized to its own input size S. Each glimpse's box is cut from the
high-resolution image (side S_hr) at side floor(rf S_hr / S) and top-left
round(y_min S_hr / S), clipped inside, so that S_hr = S reproduces the
Saccader's own boxes. All T crops go to the classifier at once, unresized;
its logits are averaged over the glimpses.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from saccader_jax.models import geometry as geometry_lib
from saccader_jax.models import resnet_v2
from saccader_jax.models import saccader as saccader_lib

SACCADER = "saccader"
CLASSIFIER = "classifier"


@flax.struct.dataclass
class ClassnetOutput:
  """Attributes:
    locations: [batch, T] int32 flat Saccader grid locations.
    location_logits: [batch, T, h * w] the Saccader's policy logits.
    boxes: [batch, T, 4] int32 high-resolution crop boxes.
    glimpse_logits: [batch, T, num_classes] classifier logits per crop.
    logits: [batch, num_classes] glimpse logits averaged over time.
  """
  locations: jnp.ndarray
  location_logits: jnp.ndarray
  boxes: jnp.ndarray
  glimpse_logits: jnp.ndarray
  logits: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class HighResolutionGeometry(geometry_lib.GridGeometry):
  """The Saccader's grid on S-pixel images, with boxes on S_hr-pixel ones.

  image_height/width are S_hr; receptive_field is the crop side
  floor(rf S_hr / S); `low_res` is the Saccader's own geometry.
  """
  low_res: Optional[geometry_lib.GridGeometry] = None

  @classmethod
  def scale(cls, low_res: geometry_lib.GridGeometry, image_height: int,
            image_width: int) -> "HighResolutionGeometry":
    side = crop_side(low_res.receptive_field, low_res.image_height,
                     image_height)
    return cls(image_height=image_height, image_width=image_width,
               receptive_field=side, stride=low_res.stride,
               grid_height=low_res.grid_height,
               grid_width=low_res.grid_width, low_res=low_res)

  def boxes(self, grid_locations: jnp.ndarray) -> jnp.ndarray:
    return scale_boxes(self.low_res.boxes(grid_locations),
                       self.low_res.receptive_field,
                       self.low_res.image_height, self.image_height)


def crop_side(receptive_field: int, size: int, high_res_size: int) -> int:
  """floor(rf S_hr / S): 113 for rf 77 at 224 -> 331."""
  return (receptive_field * high_res_size) // size


def scale_boxes(boxes: jnp.ndarray, receptive_field: int, size: int,
                high_res_size: int) -> jnp.ndarray:
  """[..., 4] rf x rf boxes on S-pixel images -> the crops' boxes on
  S_hr-pixel ones: side floor(rf S_hr / S), top-left round(min S_hr / S)
  clipped inside."""
  side = crop_side(receptive_field, size, high_res_size)
  corner = jnp.round(boxes[..., :2].astype(jnp.float32) * high_res_size
                     / size).astype(jnp.int32)
  corner = jnp.clip(corner, 0, high_res_size - side)
  return jnp.concatenate([corner, corner + side], -1).astype(jnp.int32)


def cut_crops(images: jnp.ndarray, boxes: jnp.ndarray,
              side: int) -> jnp.ndarray:
  """images [batch, H, W, C], boxes [batch, T, 4] (inside, side x side) ->
  crops [batch, T, side, side, C]."""

  def crop(image, box):
    return jax.lax.dynamic_slice(image, (box[0], box[1], 0),
                                 (side, side, image.shape[-1]))

  return jax.vmap(jax.vmap(crop, in_axes=(None, 0)))(images, boxes)


class SaccaderClassnet(nn.Module):
  """A frozen Saccader choosing glimpses, a classifier reading them.

  Attributes:
    saccader: the policy (trained by the Saccader stages).
    classifier: a whole-image classifier (e.g. ResNet-v2) applied to the
      high-resolution crops.
    image_size: S, the Saccader's input side; the call's images have side
      S_hr >= S.
  """
  saccader: saccader_lib.Saccader
  classifier: resnet_v2.ResNetV2
  image_size: int

  # Keyword arguments of the call `models.init_variables` makes.
  init_kwargs: ClassVar[dict[str, Any]] = {"num_glimpses": 1}

  def grid_geometry(self, image_height: int,
                    image_width: int) -> HighResolutionGeometry:
    """The Saccader's grid with the crops' boxes on images of this size."""
    low_res = self.saccader.grid_geometry(self.image_size, self.image_size)
    return HighResolutionGeometry.scale(low_res, image_height, image_width)

  def glimpse_fn(self, variables: Any, images: jnp.ndarray,
                 num_glimpses: int, key: Optional[jax.Array]):
    """As a `policy.GlimpseFn`, on high-resolution images."""
    out = self.apply(variables, images, num_glimpses=num_glimpses, key=key)
    return out.locations, out.location_logits, out.glimpse_logits

  def downsize(self, images: jnp.ndarray) -> jnp.ndarray:
    """[batch, S_hr, S_hr, C] -> [batch, S, S, C] (antialiased bilinear)."""
    batch, height, width, channels = images.shape
    if (height, width) == (self.image_size, self.image_size):
      return images
    return jax.image.resize(images, (batch, self.image_size, self.image_size,
                                     channels), "bilinear", antialias=True)

  def __call__(self, images: jnp.ndarray, *, num_glimpses: int,
               key: Optional[jax.Array] = None,
               train: bool = False) -> ClassnetOutput:
    """Classifies high-resolution images from num_glimpses crops.

    Args:
      images: [batch, S_hr, S_hr, C] float images, S_hr >= S.
      num_glimpses: T (static).
      key: None for the Saccader's greedy policy, else a PRNG key to sample.
      train: the classifier's batch norm uses batch statistics; the
        Saccader always runs in inference mode and passes no gradient.

    Returns:
      ClassnetOutput.
    """
    batch, height, width, channels = images.shape
    if height != width or height < self.image_size:
      raise ValueError(f"SaccaderClassnet needs square images of at least "
                       f"{self.image_size} pixels; got {height}x{width}.")
    policy = self.saccader(self.downsize(images), num_glimpses=num_glimpses,
                           key=key)
    policy = jax.tree_util.tree_map(jax.lax.stop_gradient, policy)
    geometry = self.grid_geometry(height, width)
    grid = geometry.low_res
    boxes = geometry.boxes(grid.unflatten(policy.locations))
    crops = cut_crops(images, boxes, geometry.receptive_field)
    logits = self.classifier(
        crops.reshape((-1,) + crops.shape[2:]), train=train)
    glimpse_logits = logits.reshape(batch, num_glimpses, -1)
    return ClassnetOutput(
        locations=policy.locations, location_logits=policy.location_logits,
        boxes=boxes, glimpse_logits=glimpse_logits,
        logits=jnp.mean(glimpse_logits, axis=1))
