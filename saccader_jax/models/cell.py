"""The Saccader cell (paper eqs. 1-3) and its rollout over T glimpses.

Locations are handled flattened: a grid of h x w locations is indexed by
l = row * w + col, so spatial softmaxes are ordinary softmaxes over l.

The cell runs in float32 whatever the model's compute dtype and matmul
precision, its contractions at `layers.DECISION_PRECISION`: the -1e5 mask
and the three softmaxes need the range, the arg-max over locations needs
every bit (a TPU's default one-pass bf16 product, or a GPU's TF32, would pick
other glimpses than a CPU), and the cell's cost is negligible.
"""

from __future__ import annotations

import math
from typing import Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from saccader_jax.models import layers

# The paper's mask for visited locations (eqs. 1 and 3). A finite value keeps
# softmaxes and their gradients free of NaNs, unlike -inf.
MASK_VALUE = 1e5


@flax.struct.dataclass
class Rollout:
  """A rollout of the cell.

  Attributes:
    locations: [batch, T] int32 flat location chosen at each step.
    location_logits: [batch, T, L] policy logits R^t of eq. 3, visited
      locations masked with -1e5; log_softmax gives log pi(l | X, C^{t-1}).
  """
  locations: jnp.ndarray
  location_logits: jnp.ndarray


def location_logits(features: jnp.ndarray, feature_scores: jnp.ndarray,
                    visited: jnp.ndarray) -> jnp.ndarray:
  """Policy logits R^t of one step (eqs. 1-3).

  Args:
    features: [batch, L, d] mixed features F.
    feature_scores: [batch, L] the time-invariant part of eq. 1,
      sum_p F_lp a_p / sqrt(d).
    visited: [batch, L] state C^{t-1}, 1 at visited locations.

  Returns:
    [batch, L] logits R^t; softmax over L gives the policy R~^t.
  """
  mask = MASK_VALUE * visited
  spatial_weights = jax.nn.softmax(feature_scores - mask, axis=-1)  # eq. 1
  channel_logits = jnp.einsum("bl,bld->bd", spatial_weights, features,
                              precision=layers.DECISION_PRECISION)
  channel_weights = jax.nn.softmax(channel_logits, axis=-1)  # eq. 2
  return jnp.einsum("bld,bd->bl", features, channel_weights,  # eq. 3
                    precision=layers.DECISION_PRECISION) - mask


def choose_locations(logits: jnp.ndarray,
                     key: Optional[jax.Array]) -> jnp.ndarray:
  """[batch, L] logits -> [batch] int32: argmax if key is None, else a sample."""
  if key is None:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def mark_visited(visited: jnp.ndarray, locations: jnp.ndarray) -> jnp.ndarray:
  """Sets C[b, locations[b]] = 1, clipped to [0, 1]."""
  one_hot = jax.nn.one_hot(locations, visited.shape[-1], dtype=visited.dtype)
  return jnp.clip(visited + one_hot, 0.0, 1.0)


def rollout(features: jnp.ndarray,
            feature_scores: jnp.ndarray,
            num_glimpses: int,
            key: Optional[jax.Array] = None,
            forced_locations: Optional[jnp.ndarray] = None) -> Rollout:
  """Runs the cell for num_glimpses steps with `jax.lax.scan`.

  Args:
    features: [batch, L, d] float32 mixed features F.
    feature_scores: [batch, L] float32, F a / sqrt(d).
    num_glimpses: T, the number of steps (static).
    key: None for the greedy policy (argmax R^t); otherwise a PRNG key, split
      into one key per step, to sample l_t ~ Categorical(R^t).
    forced_locations: optional [batch, T] int locations that are marked
      visited instead of the chosen ones (teacher forcing, eq. 5) and are
      returned as the rollout's locations.

  Returns:
    Rollout with [batch, T] locations and [batch, T, L] logits.
  """
  step_keys = None if key is None else jax.random.split(key, num_glimpses)
  if forced_locations is not None:
    forced_locations = jnp.swapaxes(forced_locations.astype(jnp.int32), 0, 1)

  def step(visited, inputs):
    step_key, forced = inputs
    logits = location_logits(features, feature_scores, visited)
    locations = choose_locations(logits, step_key) if forced is None else forced
    return mark_visited(visited, locations), (locations, logits)

  visited = jnp.zeros(feature_scores.shape, jnp.float32)
  _, (locations, logits) = jax.lax.scan(
      step, visited, (step_keys, forced_locations), length=num_glimpses)
  return Rollout(locations=jnp.swapaxes(locations, 0, 1),
                 location_logits=jnp.swapaxes(logits, 0, 1))


class SaccaderCell(nn.Module):
  """Holds the cell's one parameter, the vector a of eq. 1, and rolls out."""

  @nn.compact
  def __call__(self, features2d: jnp.ndarray, num_glimpses: int,
               key: Optional[jax.Array] = None,
               forced_locations: Optional[jnp.ndarray] = None) -> Rollout:
    """features2d: [batch, h, w, d] mixed features F -> Rollout."""
    batch, height, width, depth = features2d.shape
    features = features2d.astype(jnp.float32).reshape(
        batch, height * width, depth)
    scores = nn.Dense(1, use_bias=False, dtype=jnp.float32,
                      precision=layers.DECISION_PRECISION,
                      name="attention_weights")(features)[..., 0]
    return rollout(features, scores / math.sqrt(depth), num_glimpses, key,
                   forced_locations)
