"""The Saccader model: representation, attention, mixing and cell."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from saccader_jax.models import attention
from saccader_jax.models import bagnet
from saccader_jax.models import cell


@flax.struct.dataclass
class SaccaderOutput:
  """What one forward pass of Saccader returns.

  Attributes:
    logits2d: [batch, h, w, num_classes] per-location logits of the
      representation network.
    locations: [batch, T] int32 flat glimpse locations (row * w + col).
    location_logits: [batch, T, h * w] masked policy logits R^t.
    glimpse_logits: [batch, T, num_classes] logits2d read at each glimpse.
    logits: [batch, num_classes] glimpse logits averaged over time.
  """
  logits2d: jnp.ndarray
  locations: jnp.ndarray
  location_logits: jnp.ndarray
  glimpse_logits: jnp.ndarray
  logits: jnp.ndarray


def read_glimpse_logits(logits2d: jnp.ndarray,
                        locations: jnp.ndarray) -> jnp.ndarray:
  """logits2d [batch, h, w, C], flat locations [batch, T] -> [batch, T, C]."""
  batch, height, width, classes = logits2d.shape
  flat = logits2d.reshape(batch, height * width, classes)
  return jnp.take_along_axis(flat, locations[..., None], axis=1)


class Saccader(nn.Module):
  """Hard-attention classifier of Elsayed et al. (2019), section 3.1.

  Attributes:
    representation: the BagNet "what" network.
    attention: the "where" network.
    mixed_channels: d, the width of the mixed features F.
    dtype: compute dtype of the mixing convolution.
    precision: its matmul precision (`layers.MATMUL_PRECISIONS`).
  """
  representation: bagnet.BagNet
  attention: attention.AttentionNetwork
  mixed_channels: int = 512
  dtype: jnp.dtype = jnp.float32
  precision: Any = None

  # Keyword arguments of the call `models.init_variables` makes.
  init_kwargs: ClassVar[dict[str, Any]] = {"num_glimpses": 1}

  def setup(self):
    self.mixing = attention.WhatWhereMixing(self.mixed_channels,
                                            dtype=self.dtype,
                                            precision=self.precision)
    self.cell = cell.SaccaderCell()

  def grid_geometry(self, image_height: int, image_width: int):
    return self.representation.grid_geometry(image_height, image_width)

  def glimpse_fn(self, variables: Any, images: jnp.ndarray,
                 num_glimpses: int, key: Optional[jax.Array]
                 ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The learned policy in inference mode, as a `policy.GlimpseFn`:
    (flat locations [batch, T], location logits [batch, T, h * w], glimpse
    logits [batch, T, classes])."""
    out = self.apply(variables, images, num_glimpses=num_glimpses, key=key)
    return out.locations, out.location_logits, out.glimpse_logits

  def whole_image_logits(self, variables: Any,
                         images: jnp.ndarray) -> jnp.ndarray:
    """The representation network on every location (the BagNet):
    [batch, classes], the mean of logits2d."""
    return self.apply(variables, images, method=Saccader.represent).logits

  def represent(self, images: jnp.ndarray,
                train: bool = False) -> bagnet.RepresentationOutput:
    """The representation network alone (stage 1 trains only this)."""
    return self.representation(images, train=train)

  def encode(self, images: jnp.ndarray, train: bool = False,
             freeze_representation: bool = False,
             frozen_batch_statistics: bool = False
             ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Everything before the cell, computed once per image.

    Args:
      images: [batch, height, width, channels] float images.
      train: batch norm uses batch statistics and updates its averages.
      freeze_representation: the representation network's outputs carry no
        gradient (location pretraining); it runs in inference mode unless
        frozen_batch_statistics.
      frozen_batch_statistics: with train and freeze_representation, the
        frozen representation normalises with the batch's statistics, as the
        original implementation's stage 2 does. Its moving averages are then
        updated in the returned collection; callers that freeze it discard
        those updates.

    Returns:
      (logits2d [batch, h, w, classes], mixed features F [batch, h, w, d]).
    """
    rep = self.representation(
        images, train=train and (not freeze_representation
                                 or frozen_batch_statistics))
    if freeze_representation:
      rep = bagnet.stop_gradient(rep)
    return self.encode_representation(rep.features2d, rep.what_features,
                                      rep.logits2d, train=train)

  def encode_representation(self, features2d: jnp.ndarray,
                            what_features: jnp.ndarray,
                            logits2d: jnp.ndarray, train: bool = False
                            ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`encode` after the representation network, from its outputs
    (`bagnet.RepresentationOutput`'s features2d [batch, h, w, c],
    what_features [batch, h, w, what] and logits2d [batch, h, w, classes]),
    e.g. those a frozen one gave once (`saccader_jax.representation_cache`).

    Returns:
      (logits2d, mixed features F [batch, h, w, d]).
    """
    where = self.attention(features2d, train=train)
    return logits2d, self.mixing(where, what_features)

  def glimpse(self, logits2d: jnp.ndarray, mixed: jnp.ndarray,
              num_glimpses: int, key: Optional[jax.Array] = None,
              forced_locations: Optional[jnp.ndarray] = None
              ) -> SaccaderOutput:
    """Rolls the cell out over encoded images (see `encode`).

    Several rollouts of one encoding (REINFORCE's S trajectories) call this
    once per key.
    """
    trajectory = self.cell(mixed, num_glimpses, key, forced_locations)
    glimpse_logits = read_glimpse_logits(logits2d, trajectory.locations)
    return SaccaderOutput(
        logits2d=logits2d,
        locations=trajectory.locations,
        location_logits=trajectory.location_logits,
        glimpse_logits=glimpse_logits,
        logits=jnp.mean(glimpse_logits, axis=1))

  def __call__(self,
               images: jnp.ndarray,
               *,
               num_glimpses: int,
               key: Optional[jax.Array] = None,
               train: bool = False,
               freeze_representation: bool = False,
               forced_locations: Optional[jnp.ndarray] = None
               ) -> SaccaderOutput:
    """Classifies images from num_glimpses glimpses.

    Args:
      images: [batch, height, width, channels] float images.
      num_glimpses: T (static).
      key: None for the greedy policy, else a PRNG key to sample locations.
      train, freeze_representation: see `encode`.
      forced_locations: optional [batch, T] locations to mark visited instead
        of the chosen ones (teacher forcing).

    Returns:
      SaccaderOutput.
    """
    logits2d, mixed = self.encode(images, train, freeze_representation)
    return self.glimpse(logits2d, mixed, num_glimpses, key, forced_locations)
