"""What the baseline policies share: the BagNet they read their glimpse
logits from, and choosing the top T of a score map one step at a time."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from saccader_jax.models import Saccader
from saccader_jax.models import cell
from saccader_jax.models.saccader import read_glimpse_logits


def bagnet_logits2d(model: Saccader, variables: Any,
                    images: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w, classes] per-location logits of the model's BagNet."""
  return model.apply(variables, images, method=Saccader.represent).logits2d


def top_t(scores: jnp.ndarray,
          num_glimpses: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The T highest scores, one per step, ties to the lower flat index.

  Args:
    scores: [batch, N] float32 score map.
    num_glimpses: T <= N.

  Returns:
    (locations [batch, T] int32, location_logits [batch, T, N]): step t's
    logits are the scores with earlier choices set to -1e5, so each choice
    is its step's argmax.
  """

  def step(visited, _):
    logits = jnp.where(visited, -cell.MASK_VALUE, scores)
    location = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    visited = visited | jax.nn.one_hot(location, scores.shape[-1],
                                       dtype=bool)
    return visited, (location, logits)

  visited = jnp.zeros(scores.shape, bool)
  _, (locations, logits) = jax.lax.scan(step, visited, None,
                                        length=num_glimpses)
  return locations.T, jnp.swapaxes(logits, 0, 1)


def score_map_glimpses(model: Saccader, variables: Any, images: jnp.ndarray,
                       scores: jnp.ndarray, num_glimpses: int,
                       logits2d: Optional[jnp.ndarray] = None):
  """A deterministic baseline's GlimpseFn result from its score map
  [batch, h, w]: (locations, location logits, glimpse logits)."""
  if logits2d is None:
    logits2d = bagnet_logits2d(model, variables, images)
  flat = scores.reshape(scores.shape[0], -1).astype(jnp.float32)
  locations, location_logits = top_t(flat, num_glimpses)
  return locations, location_logits, read_glimpse_logits(logits2d, locations)
