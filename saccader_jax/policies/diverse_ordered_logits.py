"""Ordered logits with a diversity rule (not in the paper): after each
glimpse, the 8 neighbours of the chosen location rank below every location
not yet next to a glimpse, so that the next glimpses spread over the image
before they crowd one spot."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saccader_jax.models import cell
from saccader_jax.models.saccader import read_glimpse_logits
from saccader_jax.policies import common
from saccader_jax.policies import ordered_logits


def neighbours(one_hot: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w] bool -> [batch, h, w] bool: the location and its 8
  neighbours."""
  padded = jnp.pad(one_hot, ((0, 0), (1, 1), (1, 1)))
  h, w = one_hot.shape[1:]
  return jnp.any(jnp.stack([padded[:, dy:dy + h, dx:dx + w]
                            for dy in range(3) for dx in range(3)]), axis=0)


def top_t_spread(scores: jnp.ndarray, num_glimpses: int
                 ) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The T best of a score map [batch, h, w], one per step, a glimpse's
  neighbours demoted below the other unvisited locations.

  Returns (locations [batch, T] int32 flat indices, location_logits
  [batch, T, h*w]): step t's logits, whose argmax is its choice (visited
  locations at -1e5).
  """
  batch, h, w = scores.shape
  scores = scores.astype(jnp.float32)
  # Below every unsuppressed score, above the mask of visited locations.
  demotion = (jnp.max(scores, axis=(1, 2), keepdims=True)
              - jnp.min(scores, axis=(1, 2), keepdims=True) + 1.0)

  def step(carry, _):
    visited, near = carry
    logits = jnp.where(visited, -cell.MASK_VALUE,
                       jnp.where(near, scores - demotion, scores))
    flat = logits.reshape(batch, h * w)
    location = jnp.argmax(flat, axis=-1).astype(jnp.int32)
    chosen = jax.nn.one_hot(location, h * w, dtype=bool).reshape(batch, h, w)
    return (visited | chosen, near | neighbours(chosen)), (location, flat)

  empty = jnp.zeros(scores.shape, bool)
  _, (locations, logits) = jax.lax.scan(step, (empty, empty), None,
                                        length=num_glimpses)
  return locations.T, jnp.swapaxes(logits, 0, 1)


def glimpse_fn(model):
  def fn(variables, images, num_glimpses, key):
    del key  # deterministic
    logits2d = common.bagnet_logits2d(model, variables, images)
    locations, location_logits = top_t_spread(
        ordered_logits.ordered_logits_scores(logits2d), num_glimpses)
    return (locations, location_logits,
            read_glimpse_logits(logits2d, locations))
  return fn
