"""Jitted glimpse policies for research code.

A policy maps a batch of images to T glimpses and the classification they
support. Every policy (the learned Saccader policy, and the baselines that
share its representation network) is a `Policy`: the same call, the same
checks, the same `PolicyOutput`.

    policy = saccader_jax.make_policy(config, variables)
    out = policy(images, num_glimpses=6)            # greedy
    out = policy(images, num_glimpses=6, key=key)   # sampled
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from saccader_jax import models
from saccader_jax.models import geometry as geometry_lib


@flax.struct.dataclass
class PolicyOutput:
  """Glimpses chosen by a policy and the classification they give.

  Attributes:
    locations: [batch, T, 2] int32 grid coordinates (row, col).
    boxes: [batch, T, 4] int32 pixel boxes (y_min, x_min, y_max, x_max),
      maxima exclusive: glimpse t of image b is
      images[b, y_min:y_max, x_min:x_max].
    location_probs: [batch, T, h, w] float32 policy distribution at each step.
    glimpse_logits: [batch, T, num_classes] class logits of each glimpse.
    logits: [batch, num_classes] glimpse logits averaged over time.
  """
  locations: jnp.ndarray
  boxes: jnp.ndarray
  location_probs: jnp.ndarray
  glimpse_logits: jnp.ndarray
  logits: jnp.ndarray


class GlimpseFn(Protocol):
  """What a policy computes, on arrays that have passed validation.

  Takes (variables, images [batch, height, width, channels], T, key or None)
  and returns (flat locations [batch, T], location logits [batch, T, h * w],
  glimpse logits [batch, T, num_classes]). Variables are an argument, not a
  closure, so that they are not baked into the compiled program as constants.
  """

  def __call__(self, variables: Any, images: jnp.ndarray, num_glimpses: int,
               key: Optional[jax.Array]) -> tuple[jnp.ndarray, jnp.ndarray,
                                                   jnp.ndarray]:
    ...


class Policy:
  """A jitted glimpse policy with input checks done before tracing.

  The compiled function is cached per (image shape, dtype, num_glimpses, greedy
  or sampled); new keys or new image values reuse it.
  """

  def __init__(self, glimpse_fn: GlimpseFn, variables: Any,
               geometry_fn: Callable[[int, int], geometry_lib.GridGeometry],
               num_channels: int, name: str = "policy",
               requires_key: bool = False):
    """
    Args:
      glimpse_fn: the policy's computation (see GlimpseFn).
      variables: passed to glimpse_fn on every call.
      geometry_fn: (image_height, image_width) -> GridGeometry of the
        classification path.
      num_channels: channels the images must have.
      name: shown in error messages.
      requires_key: the policy only samples (e.g. the random baseline), so
        key=None is an error.
    """
    self.name = name
    self.num_channels = num_channels
    self.variables = variables
    self.requires_key = requires_key
    self._glimpse_fn = glimpse_fn
    self._geometry_fn = geometry_fn
    self._jitted = jax.jit(self.apply, static_argnames=("num_glimpses",))

  def geometry(self, image_height: int,
               image_width: int) -> geometry_lib.GridGeometry:
    return self._geometry_fn(image_height, image_width)

  def apply(self, variables: Any, images: jnp.ndarray, num_glimpses: int,
            key: Optional[jax.Array]) -> PolicyOutput:
    """The policy as a pure, traceable function of its variables: for use
    inside a caller's own `jax.jit` (evaluators, sharded steps). Inputs are
    not checked; `validate` them first."""
    grid = self._geometry_fn(images.shape[1], images.shape[2])
    locations, location_logits, glimpse_logits = self._glimpse_fn(
        variables, images, num_glimpses, key)
    grid_locations = grid.unflatten(locations)
    probs = jax.nn.softmax(location_logits.astype(jnp.float32), axis=-1)
    return PolicyOutput(
        locations=grid_locations,
        boxes=grid.boxes(grid_locations),
        location_probs=probs.reshape(probs.shape[:2] + (grid.grid_height,
                                                        grid.grid_width)),
        glimpse_logits=glimpse_logits,
        logits=jnp.mean(glimpse_logits, axis=1))

  def validate(self, images: Any, num_glimpses: Any, key: Any) -> None:
    """Raises ValueError naming the first problem with the arguments."""
    prefix = f"{self.name}: "
    shape = getattr(images, "shape", None)
    dtype = getattr(images, "dtype", None)
    if shape is None or dtype is None:
      raise ValueError(prefix + "images must be an array of shape [batch, "
                       f"height, width, channels]; got {type(images).__name__}.")
    if len(shape) != 4:
      raise ValueError(prefix + "images must have rank 4 [batch, height, "
                       f"width, channels]; got shape {tuple(shape)}.")
    batch, height, width, channels = shape
    if batch < 1:
      raise ValueError(prefix + f"images hold no image: shape {tuple(shape)}.")
    if channels != self.num_channels:
      raise ValueError(prefix + f"images must have {self.num_channels} "
                       f"channels (last axis); got shape {tuple(shape)}.")
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(prefix + "images must be floating point, preprocessed "
                       f"as in training; got dtype {dtype}.")
    grid = self._geometry_fn(height, width)
    if min(height, width) < grid.receptive_field or grid.num_locations == 0:
      raise ValueError(
          prefix + f"images of {height}x{width} pixels are smaller than the "
          f"receptive field of {grid.receptive_field}x{grid.receptive_field}.")
    if (isinstance(num_glimpses, bool)
        or not isinstance(num_glimpses, (int, np.integer))):
      raise ValueError(prefix + "num_glimpses must be a Python int; got "
                       f"{num_glimpses!r}.")
    if not 1 <= num_glimpses <= grid.num_locations:
      raise ValueError(
          prefix + f"num_glimpses must be in [1, {grid.num_locations}] (the "
          f"{grid.grid_height}x{grid.grid_width} locations of a {height}x"
          f"{width} image, each visited once); got {num_glimpses}.")
    self.validate_key(key)

  def validate_key(self, key: Any) -> None:
    """Raises ValueError unless key suits this policy: None (greedy, unless
    the policy only samples) or one PRNG key."""
    prefix = f"{self.name}: "
    if key is None and self.requires_key:
      raise ValueError(prefix + "key must be a PRNG key: this policy samples "
                       "its locations and has no greedy form.")
    if key is not None:
      key_dtype = getattr(key, "dtype", None)
      is_typed = key_dtype is not None and jnp.issubdtype(
          key_dtype, jax.dtypes.prng_key)
      is_raw = (key_dtype == jnp.uint32 and getattr(key, "shape", None) == (2,))
      if not (is_typed and key.shape == ()) and not is_raw:
        raise ValueError(prefix + "key must be None (greedy) or a single PRNG "
                         "key from jax.random.key or jax.random.PRNGKey; got "
                         f"{key!r}.")

  def __call__(self, images: jnp.ndarray, num_glimpses: int,
               key: Optional[jax.Array] = None) -> PolicyOutput:
    """Chooses num_glimpses glimpses for each image.

    Args:
      images: [batch, height, width, channels] float images, preprocessed as
        for training.
      num_glimpses: T, between 1 and the number of grid locations.
      key: None for the greedy (argmax) policy, else a PRNG key to sample.

    Returns:
      PolicyOutput.
    """
    self.validate(images, num_glimpses, key)
    return self._jitted(self.variables, images,
                        num_glimpses=int(num_glimpses), key=key)

  def trace(self, images: jnp.ndarray, num_glimpses: int,
            key: Optional[jax.Array] = None) -> jax.stages.Traced:
    """The checked call, traced: `.lower().compile()` gives the compiled
    program (cost analysis, compile time) without running it."""
    self.validate(images, num_glimpses, key)
    return self._jitted.trace(self.variables, images,
                              num_glimpses=int(num_glimpses), key=key)

  def lower(self, images: jnp.ndarray, num_glimpses: int,
            key: Optional[jax.Array] = None) -> jax.stages.Lowered:
    """The checked call, lowered (`.compile()` it, or read its HLO)."""
    return self.trace(images, num_glimpses, key).lower()


def make_policy(model_or_config: Any, variables: Any,
                num_channels: Optional[int] = None) -> Policy:
  """A model's learned policy, jitted, in inference mode (greedy, or
  sampled when called with a key).

  Args:
    model_or_config: a policy model (e.g. `Saccader`), a full config (with
      `model` and `dataset.num_channels` fields) or a model config.
    variables: the model's variables, {"params": ..., "batch_stats": ...}.
    num_channels: image channels; read from a full config, else 3.

  Returns:
    A Policy: `policy(images, num_glimpses=T, key=None) -> PolicyOutput`.
  """
  model = model_or_config
  if isinstance(model_or_config, ml_collections.ConfigDict):
    config = model_or_config
    if "model" in config:
      num_channels = num_channels or config.dataset.get("num_channels")
      config = config.model
    model = models.create_model(config)
  if not models.is_policy(model):
    raise ValueError("make_policy takes a policy model (one with glimpse_fn, "
                     "e.g. Saccader) or its config; got "
                     f"{type(model).__name__}.")
  return Policy(model.glimpse_fn, variables, model.grid_geometry,
                num_channels or 3,
                name=f"{type(model).__name__.lower()} policy")
