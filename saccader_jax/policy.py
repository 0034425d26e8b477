"""Jitted glimpse policies for research code.

A policy maps a batch of images to T glimpses and the classification they
support. Every policy (the learned Saccader policy, the baselines that
share its representation network, DRAM) is a `Policy`: the same call, the
same checks, the same `PolicyOutput`. Grid policies choose among the
locations of their classification network's grid; `RolloutPolicy` wraps
models that look anywhere in the image (DRAM).

    policy = saccader_jax.make_policy(config, variables)
    out = policy(images, num_glimpses=6)            # greedy
    out = policy(images, num_glimpses=6, key=key)   # sampled
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Protocol

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from saccader_jax import chunking
from saccader_jax import models
from saccader_jax.models import geometry as geometry_lib


@flax.struct.dataclass
class PolicyOutput:
  """Glimpses chosen by a policy and the classification they give.

  Attributes:
    locations: [batch, T, 2] glimpse centres: int32 grid coordinates (row,
      col) for grid policies; float32 (y, x) in [-1, 1] for rollout policies
      (DRAM), (-1, -1) the top-left corner.
    boxes: [batch, T, 4] int32 pixel boxes (y_min, x_min, y_max, x_max),
      maxima exclusive: glimpse t of image b is
      images[b, y_min:y_max, x_min:x_max] (DRAM: its finest glimpse).
    location_probs: [batch, T, h, w] float32 policy distribution at each
      step of a grid policy; None for a rollout policy.
    glimpse_logits: [batch, T, num_classes] class logits of each glimpse
      (DRAM: of each step).
    step_logits: [batch, T, num_classes] the classification after glimpses
      1..t: the running mean of glimpse_logits for grid policies, each
      step's logits for DRAM.
    logits: [batch, num_classes] the classification after all T glimpses.
  """
  locations: jnp.ndarray
  boxes: jnp.ndarray
  location_probs: Optional[jnp.ndarray]
  glimpse_logits: jnp.ndarray
  step_logits: jnp.ndarray
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


def running_mean(glimpse_logits: jnp.ndarray) -> jnp.ndarray:
  """[batch, T, C] -> [batch, T, C]: the mean of the first 1..T glimpses."""
  steps = jnp.arange(1, glimpse_logits.shape[1] + 1, dtype=jnp.float32)
  return (jnp.cumsum(glimpse_logits.astype(jnp.float32), axis=1)
          / steps[None, :, None])


class RolloutFn(Protocol):
  """What a rollout policy model computes (e.g. `DRAM.rollout_fn`).

  Takes (variables, images [batch, S, S, channels], T, key or None) and
  returns an object with `locations` [batch, T, 2] float32 centres in
  [-1, 1] and `logits` [batch, T, num_classes], the prediction after 1..T
  glimpses.
  """

  def __call__(self, variables: Any, images: jnp.ndarray, num_glimpses: int,
               key: Optional[jax.Array]) -> Any:
    ...


class Policy:
  """A jitted glimpse policy with input checks done before tracing.

  The compiled function is cached per (image shape, dtype, num_glimpses, greedy
  or sampled); new keys or new image values reuse it.
  """

  def __init__(self, glimpse_fn: GlimpseFn, variables: Any,
               geometry_fn: Callable[[int, int], geometry_lib.GridGeometry],
               num_channels: int, name: str = "policy",
               requires_key: bool = False,
               chunk_size: chunking.ChunkSize = chunking.AUTO):
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
      chunk_size: images per chunk of a call's batch (`saccader_jax.chunking`:
        "auto" chunks on CPU only; 0 or None never).
    """
    self.name = name
    self.chunk_size = chunk_size
    self.num_channels = num_channels
    self.variables = variables
    self.requires_key = requires_key
    self._glimpse_fn = glimpse_fn
    self._geometry_fn = geometry_fn
    self._jitted = jax.jit(self.apply_chunked,
                           static_argnames=("num_glimpses",))

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
    step_logits = running_mean(glimpse_logits)
    return PolicyOutput(
        locations=grid_locations,
        boxes=grid.boxes(grid_locations),
        location_probs=probs.reshape(probs.shape[:2] + (grid.grid_height,
                                                        grid.grid_width)),
        glimpse_logits=glimpse_logits,
        step_logits=step_logits,
        logits=step_logits[:, -1])

  def apply_chunked(self, variables: Any, images: jnp.ndarray,
                    num_glimpses: int, key: Optional[jax.Array]) -> PolicyOutput:
    """`apply` over the batch in chunks of `chunk_size` images (what a call
    runs); chunk j samples with fold_in(key, j)."""
    chunk = chunking.resolve(self.chunk_size, images.shape[1],
                             images.shape[2])
    return chunking.map_batch(
        lambda x, k: self.apply(variables, x, num_glimpses, k), images, chunk,
        key)

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
    self.check_image_size(height, width)
    if (isinstance(num_glimpses, bool)
        or not isinstance(num_glimpses, (int, np.integer))):
      raise ValueError(prefix + "num_glimpses must be a Python int; got "
                       f"{num_glimpses!r}.")
    self.check_num_glimpses(height, width, num_glimpses)
    self.validate_key(key)

  def check_image_size(self, height: int, width: int) -> None:
    """Raises ValueError if the policy cannot look at such images."""
    grid = self._geometry_fn(height, width)
    if min(height, width) < grid.receptive_field or grid.num_locations == 0:
      raise ValueError(
          f"{self.name}: images of {height}x{width} pixels are smaller than "
          f"the receptive field of {grid.receptive_field}x"
          f"{grid.receptive_field}.")

  def check_num_glimpses(self, height: int, width: int,
                         num_glimpses: int) -> None:
    """Raises ValueError unless num_glimpses (an int) suits the images."""
    prefix = f"{self.name}: "
    grid = self._geometry_fn(height, width)
    if not 1 <= num_glimpses <= grid.num_locations:
      raise ValueError(
          prefix + f"num_glimpses must be in [1, {grid.num_locations}] (the "
          f"{grid.grid_height}x{grid.grid_width} locations of a {height}x"
          f"{width} image, each visited once); got {num_glimpses}.")

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


class RolloutPolicy(Policy):
  """A policy that looks anywhere in the image (e.g. DRAM): the same call,
  checks and `PolicyOutput` as a grid policy, with float32 centres in
  [-1, 1] as its locations, the boxes of its finest glimpse, and no grid
  distribution (location_probs None). num_glimpses has no upper bound: a
  recurrent policy may run past the T it was trained with."""

  def __init__(self, rollout_fn: RolloutFn, variables: Any,
               boxes_fn: Callable[[jnp.ndarray, int], jnp.ndarray],
               min_image_size: int, num_channels: int,
               name: str = "policy",
               chunk_size: chunking.ChunkSize = chunking.AUTO):
    """
    Args:
      rollout_fn: the model's rollout (see RolloutFn).
      variables: passed to rollout_fn on every call.
      boxes_fn: (locations [..., 2], image size) -> [..., 4] pixel boxes.
      min_image_size: the smallest image side the model can look at.
      num_channels: channels the images must have.
      name: shown in error messages.
      chunk_size: as for `Policy`.
    """
    self._rollout_fn = rollout_fn
    self._boxes_fn = boxes_fn
    self.min_image_size = min_image_size
    super().__init__(None, variables, None, num_channels, name=name,
                     chunk_size=chunk_size)

  def geometry(self, image_height: int, image_width: int):
    raise ValueError(f"{self.name} has no location grid: it looks anywhere "
                     "in the image.")

  def apply(self, variables: Any, images: jnp.ndarray, num_glimpses: int,
            key: Optional[jax.Array]) -> PolicyOutput:
    out = self._rollout_fn(variables, images, num_glimpses, key)
    logits = out.logits.astype(jnp.float32)
    return PolicyOutput(
        locations=out.locations,
        boxes=self._boxes_fn(out.locations, images.shape[1]),
        location_probs=None,
        glimpse_logits=logits,
        step_logits=logits,
        logits=logits[:, -1])

  def check_image_size(self, height: int, width: int) -> None:
    if height != width:
      raise ValueError(f"{self.name}: images must be square; got {height}x"
                       f"{width}.")
    if height < self.min_image_size:
      raise ValueError(
          f"{self.name}: images of {height}x{width} pixels are smaller than "
          f"its {self.min_image_size}x{self.min_image_size} glimpse.")

  def check_num_glimpses(self, height: int, width: int,
                         num_glimpses: int) -> None:
    del height, width
    if num_glimpses < 1:
      raise ValueError(f"{self.name}: num_glimpses must be at least 1; got "
                       f"{num_glimpses}.")


@functools.lru_cache(maxsize=16)
def _variable_shapes(model, num_channels: int) -> dict[tuple, tuple]:
  """{path: shape} of the variables model.init makes for num_channels-channel
  images (parameter shapes do not depend on the image size)."""
  if hasattr(model, "min_image_size"):
    size = model.min_image_size()
  else:
    size = model.grid_geometry(4096, 4096).receptive_field
  images = jax.ShapeDtypeStruct((1, size, size, num_channels), jnp.float32)
  shapes = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, **type(model).init_kwargs),
      images)
  return {path: tuple(leaf.shape) for path, leaf in
          traverse_util.flatten_dict(flax.core.unfreeze(shapes)).items()}


def check_variables(model, variables: Any,
                    num_channels: Optional[int] = None) -> int:
  """The channel count of the images variables were made for; raises
  ValueError if they are not model's variables (a parameter missing, extra
  or of another shape) or not for num_channels-channel images. variables
  None (given at each call instead) checks nothing: num_channels or 3."""
  if variables is None:
    return num_channels or 3
  def fail(problem: str):
    raise ValueError(
        f"make_policy: the variables are not those of this "
        f"{type(model).__name__}: {problem}. Pass the config they were "
        "trained with (saccader_jax.load_config(workdir)).")

  try:
    given = {path: tuple(np.shape(leaf)) for path, leaf in
             traverse_util.flatten_dict(flax.core.unfreeze(variables)).items()}
  except (TypeError, ValueError, AttributeError):
    fail(f"expected {{'params': ..., 'batch_stats': ...}}, got "
         f"{type(variables).__name__}")
  one, two = _variable_shapes(model, 1), _variable_shapes(model, 2)
  channels = num_channels
  for path in one:
    if one[path] != two[path] and path in given:
      axis = next(d for d, (a, b) in enumerate(zip(one[path], two[path]))
                  if a != b)
      per_channel = two[path][axis] - one[path][axis]
      offset = one[path][axis] - per_channel
      if len(given[path]) == len(one[path]):
        found, remainder = divmod(given[path][axis] - offset, per_channel)
        if found >= 1 and not remainder:
          if num_channels is not None and found != num_channels:
            raise ValueError(
                f"make_policy: the variables are for {found}-channel images "
                f"({'/'.join(path)} has shape {given[path]}), but "
                f"num_channels is {num_channels}.")
          channels = found
      break
  if channels is None:
    channels = 3
  expected = _variable_shapes(model, channels)
  params_first = sorted(expected.items(), key=lambda i: i[0][0] != "params")
  for path, shape in params_first:
    name = "/".join(path)
    if path not in given:
      fail(f"{name} is missing")
    if given[path] != shape:
      fail(f"{name} has shape {given[path]}, the model's {shape}")
  extra = sorted("/".join(p) for p in given if p not in expected)
  if extra:
    fail(f"{extra[0]} is not a variable of the model"
         + (f" (nor {len(extra) - 1} more)" if len(extra) > 1 else ""))
  return channels


def model_of(model_or_config: Any, num_channels: Optional[int] = None
             ) -> tuple[Any, Optional[int], Optional[ml_collections.ConfigDict]]:
  """(model, num_channels, full config or None) of a model, a full config
  (with `model` and `dataset.num_channels`) or a model config; num_channels
  given wins over the full config's."""
  if not isinstance(model_or_config, ml_collections.ConfigDict):
    return model_or_config, num_channels, None
  config, full_config = model_or_config, None
  if "model" in config:
    full_config = config
    num_channels = num_channels or config.dataset.get("num_channels")
    config = config.model
  return models.create_model(config), num_channels, full_config


def make_policy(model_or_config: Any, variables: Any,
                num_channels: Optional[int] = None,
                chunk_size: chunking.ChunkSize = chunking.AUTO) -> Policy:
  """A model's learned policy, jitted, in inference mode (greedy, or
  sampled when called with a key).

  Args:
    model_or_config: a policy model (e.g. `Saccader`, `DRAM`), a full config (with
      `model` and `dataset.num_channels` fields) or a model config.
    variables: the model's variables, {"params": ..., "batch_stats": ...}
      (checked against the model), or None to pass them at each call
      (`policy.apply`, `PolicyEvaluator`).
    num_channels: image channels; read from a full config, else from the
      variables.
    chunk_size: images per chunk of a call (`saccader_jax.chunking`); left
      at "auto", a full config's `eval_chunk_size`.

  Returns:
    A Policy: `policy(images, num_glimpses=T, key=None) -> PolicyOutput`.
  """
  model, num_channels, full_config = model_of(model_or_config, num_channels)
  if full_config is not None and chunk_size == chunking.AUTO:
    chunk_size = full_config.get("eval_chunk_size", chunking.AUTO)
  if not models.is_policy(model):
    raise ValueError("make_policy takes a policy model (one with glimpse_fn "
                     "or rollout_fn, e.g. Saccader or DRAM) or its config; "
                     f"got {type(model).__name__}.")
  num_channels = check_variables(model, variables, num_channels)
  name = f"{type(model).__name__.lower()} policy"
  if hasattr(model, "rollout_fn"):
    return RolloutPolicy(model.rollout_fn, variables, model.finest_boxes,
                         model.min_image_size(), num_channels, name=name,
                         chunk_size=chunk_size)
  return Policy(model.glimpse_fn, variables, model.grid_geometry,
                num_channels, name=name, chunk_size=chunk_size)
