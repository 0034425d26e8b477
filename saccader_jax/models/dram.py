"""DRAM, the deep recurrent attention model (Ba et al. 2014), as Sermanet
et al. (2015) adapted it and the Saccader paper uses it as a baseline.

One step: the glimpse network sees a multi-resolution glimpse at location
l_t; the classification LSTM (LSTM0) reads its features and a dense layer
gives the step's logits; the location LSTM (LSTM1) reads LSTM0's output and
the emission layer proposes l_{t+1} = location_scale * tanh(dense(h1)).

A context step at l = 0 with all resolutions comes first: its logits are
discarded and LSTM0's state is reset to zero, LSTM1's kept; the location it
emits is the first glimpse. Steps 1..T see the finest resolution only.
The prediction after t glimpses is step t's logits.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from saccader_jax.models import foveation
from saccader_jax.models import layers
from saccader_jax.models import resnet_v2

# Top-level parameter subtrees.
GLIMPSE_NETWORK = "glimpse_network"
CLASSIFICATION_LSTM = "classification_lstm"
CLASSIFIER = "classifier"
LOCATION_LSTM = "location_lstm"
EMISSION = "emission"


@flax.struct.dataclass
class DRAMOutput:
  """A rollout of T glimpses.

  Attributes:
    locations: [batch, T, 2] float32 glimpse centres l_t = (y, x) in
      [-location_scale, location_scale] (sampled, or the means when greedy);
      they carry no gradient.
    mean_locations: [batch, T, 2] float32 means of the location policy
      N(mean, stddev^2) that l_t was drawn from (differentiable).
    logits: [batch, T, num_classes] float32 logits of each step: the
      prediction after 1..T glimpses.
  """
  locations: jnp.ndarray
  mean_locations: jnp.ndarray
  logits: jnp.ndarray


class LSTMCell(nn.Module):
  """An LSTM cell as TF's LSTMCell: one dense layer on [x, h] gives the
  input, candidate, forget and output gates, tanh activation, and 1 added
  to the forget gate's pre-activation.

  Parameters: kernel [input + features, 4 features] and bias [4 features].
  """
  features: int
  forget_bias: float = 1.0
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, carry: tuple[jnp.ndarray, jnp.ndarray],
               inputs: jnp.ndarray
               ) -> tuple[tuple[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
    """carry (c, h), each [batch, features]; inputs [batch, d] ->
    ((c', h'), h')."""
    cell, hidden = carry
    gates = nn.Dense(4 * self.features, dtype=self.dtype,
                     precision=self.precision, name="gates")(
        jnp.concatenate([inputs, hidden.astype(inputs.dtype)], -1))
    gates = gates.astype(jnp.float32)
    i, j, f, o = jnp.split(gates, 4, axis=-1)
    cell = (jax.nn.sigmoid(f + self.forget_bias) * cell
            + jax.nn.sigmoid(i) * jnp.tanh(j))
    hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
    return (cell, hidden), hidden

  def zero_carry(self, batch: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    zeros = jnp.zeros((batch, self.features), jnp.float32)
    return zeros, zeros


class DRAM(nn.Module):
  """Deep recurrent attention model.

  Attributes:
    glimpse_network: a headless ResNet-v2 (num_classes None): glimpse
      [batch, g, g, R * (C + 2)] -> features [batch, d].
    num_classes: logits size.
    glimpse_size: g, the side of every glimpse fed to the glimpse network.
    num_resolutions: R fields of view, finest first (see
      `foveation.resolution_sides`).
    classification_units, location_units: LSTM0 and LSTM1 widths.
    location_stddev: the location policy's standard deviation when sampling.
    dtype: compute dtype of the networks; LSTM state, logits and locations
      stay float32.
    precision: matmul precision of the networks (`layers.MATMUL_PRECISIONS`);
      the emission, which places every glimpse, runs at
      `layers.DECISION_PRECISION`.
  """
  glimpse_network: resnet_v2.ResNetV2
  num_classes: int
  glimpse_size: int
  num_resolutions: int = 3
  classification_units: int = 1024
  location_units: int = 1024
  location_stddev: float = 0.1
  dtype: Any = jnp.float32
  precision: Any = None

  # Keyword arguments of the call `models.init_variables` makes.
  init_kwargs: ClassVar[dict[str, Any]] = {"num_glimpses": 1}

  def setup(self):
    self.classification_lstm = LSTMCell(self.classification_units,
                                        dtype=self.dtype,
                                        precision=self.precision)
    self.classifier = nn.Dense(self.num_classes, dtype=self.dtype,
                               precision=self.precision)
    self.location_lstm = LSTMCell(self.location_units, dtype=self.dtype,
                                  precision=self.precision)
    self.emission = nn.Dense(2, dtype=jnp.float32,
                             precision=layers.DECISION_PRECISION)

  # The policy interface (`saccader_jax.policy.make_policy`).

  def min_image_size(self) -> int:
    return self.glimpse_size

  def finest_boxes(self, locations: jnp.ndarray,
                   image_size: int) -> jnp.ndarray:
    """[..., 2] locations -> [..., 4] pixel boxes of the finest glimpse."""
    return foveation.boxes(locations, self.glimpse_size, image_size)

  def rollout_fn(self, variables: Any, images: jnp.ndarray, num_glimpses: int,
                 key: Optional[jax.Array]) -> DRAMOutput:
    """The policy in inference mode: greedy (the means) when key is None,
    else locations sampled from N(mean, location_stddev^2)."""
    return self.apply(variables, images, num_glimpses=num_glimpses, key=key)

  # The model.

  def _step(self, images: jnp.ndarray, locations: jnp.ndarray, carry,
            coarse: bool, train: bool):
    """One glimpse: (logits [batch, classes], mean of the next location
    [batch, 2], new (LSTM0, LSTM1) carry)."""
    image_size = images.shape[1]
    sides = foveation.resolution_sides(self.glimpse_size, image_size,
                                       self.num_resolutions)
    glimpses = foveation.multi_resolution(images, locations, sides,
                                          self.glimpse_size)
    features = self.glimpse_network(
        foveation.network_input(glimpses, coarse).astype(self.dtype),
        train=train)
    carry0, carry1 = carry
    carry0, out0 = self.classification_lstm(carry0, features)
    logits = self.classifier(out0.astype(self.dtype)).astype(jnp.float32)
    carry1, out1 = self.location_lstm(carry1, out0)
    scale = foveation.location_scale(self.glimpse_size, image_size)
    mean = scale * jnp.tanh(self.emission(out1.astype(jnp.float32)))
    return logits, mean, (carry0, carry1)

  def _choose(self, mean: jnp.ndarray, key: Optional[jax.Array],
              scale: float) -> jnp.ndarray:
    """l = clip(mean + N(0, stddev^2), +-scale) with a key, else the mean;
    no gradient either way."""
    if key is None:
      return jax.lax.stop_gradient(mean)
    noise = self.location_stddev * jax.random.normal(key, mean.shape,
                                                     jnp.float32)
    return jax.lax.stop_gradient(jnp.clip(mean + noise, -scale, scale))

  def __call__(self, images: jnp.ndarray, *, num_glimpses: int,
               key: Optional[jax.Array] = None,
               train: bool = False) -> DRAMOutput:
    """Classifies images from num_glimpses glimpses.

    Args:
      images: [batch, S, S, C] float images.
      num_glimpses: T (static); may exceed the T the model was trained with.
      key: None for the greedy policy (each l_t the policy's mean), else a
        PRNG key, split into one key per location sampled.
      train: batch norm uses batch statistics and updates its averages.

    Returns:
      DRAMOutput.
    """
    batch, image_size = images.shape[0], images.shape[1]
    scale = foveation.location_scale(self.glimpse_size, image_size)
    images = jnp.concatenate(
        [images.astype(jnp.float32),
         foveation.position_channels(batch, image_size, images.shape[2])], -1)
    keys = (None if key is None
            else jax.random.split(key, num_glimpses + 1))
    zero_lstm0 = self.classification_lstm.zero_carry(batch)
    carry = (zero_lstm0, self.location_lstm.zero_carry(batch))

    _, mean, carry = self._step(images, jnp.zeros((batch, 2), jnp.float32),
                                carry, coarse=True, train=train)
    carry = (zero_lstm0, carry[1])
    first = self._choose(mean, None if keys is None else keys[0], scale)

    def body(module, state, step_key):
      carry, locations, mean = state
      logits, next_mean, carry = module._step(images, locations, carry,
                                              coarse=False, train=train)
      next_locations = module._choose(next_mean, step_key, scale)
      return (carry, next_locations, next_mean), (locations, mean, logits)

    # Batch norm's moving averages are a carry when training updates them,
    # read-only otherwise. Fully unrolled: on XLA's CPU backend the gradient
    # of the rolled loop ran 6x slower (embedded config, batch 128: 7.2 s
    # against 1.1 s per step); T is small and static.
    scan = nn.scan(body,
                   variable_broadcast="params" if train
                   else ["params", "batch_stats"],
                   variable_carry="batch_stats" if train else False,
                   split_rngs={"params": False}, length=num_glimpses,
                   unroll=num_glimpses)
    _, (locations, means, logits) = scan(
        self, (carry, first, mean), None if keys is None else keys[1:])
    return DRAMOutput(locations=jnp.swapaxes(locations, 0, 1),
                      mean_locations=jnp.swapaxes(means, 0, 1),
                      logits=jnp.swapaxes(logits, 0, 1))
