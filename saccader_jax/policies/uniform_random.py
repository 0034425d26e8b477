"""Random: T distinct locations, uniform over the unvisited ones at each
step; reproducible per key."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saccader_jax.models import cell
from saccader_jax.models.saccader import read_glimpse_logits
from saccader_jax.policies import common


def random_locations(key: jax.Array, batch: int, num_locations: int,
                     num_glimpses: int):
  """(locations [batch, T], location logits [batch, T, N]) drawn uniformly
  without replacement; step t uses fold_in(key, t)."""

  def step(visited, t):
    logits = jnp.where(visited, -cell.MASK_VALUE, 0.0)
    location = jax.random.categorical(jax.random.fold_in(key, t), logits,
                                      axis=-1).astype(jnp.int32)
    visited = visited | jax.nn.one_hot(location, num_locations, dtype=bool)
    return visited, (location, logits)

  visited = jnp.zeros((batch, num_locations), bool)
  _, (locations, logits) = jax.lax.scan(step, visited,
                                        jnp.arange(num_glimpses))
  return locations.T, jnp.swapaxes(logits, 0, 1)


def glimpse_fn(model):
  def fn(variables, images, num_glimpses, key):
    if key is None:
      raise ValueError("The random policy needs a PRNG key.")
    logits2d = common.bagnet_logits2d(model, variables, images)
    batch, height, width, _ = logits2d.shape
    locations, logits = random_locations(key, batch, height * width,
                                         num_glimpses)
    return locations, logits, read_glimpse_logits(logits2d, locations)
  return fn
