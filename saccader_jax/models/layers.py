"""Layer factories shared by every network of the project.

Each network builds its convolutions and batch norms from these, so that
initialisation, the CPU convolution rewrite (`convolution.py`) and the
compute dtype are set in one place.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from saccader_jax.models import convolution

Dtype = Any
Precision = Any   # None (the backend's default) or a jax.lax.Precision

# config.model.matmul_precision: the precision of the convolutions and dense
# layers of the networks. "default" lets the backend choose (TPU: one bf16
# pass for float32 operands; recent GPUs: TF32; CPU: full float32).
MATMUL_PRECISIONS: dict[str, Precision] = {
    "default": None,
    "high": jax.lax.Precision.HIGH,
    "highest": jax.lax.Precision.HIGHEST,
}

# Every contraction whose result is ranked or arg-maxed to choose a glimpse
# (the Saccader cell, per-location class logits, DRAM's emission) runs in
# float32 at this precision, whatever the compute dtype and
# matmul_precision: rounding there turns near-equal scores into ties, and
# ties into different glimpses on different hardware.
DECISION_PRECISION = jax.lax.Precision.HIGHEST

# He initialisation for convolutions followed by ReLU.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(dtype: Dtype, padding: Any = "VALID", use_bias: bool = False,
         precision: Precision = None, **kwargs) -> Any:
  """An `nn.Conv` partial: He-initialised, the project's convolution
  primitive, compute dtype `dtype` (parameters stay float32) at `precision`
  (a value of MATMUL_PRECISIONS)."""
  return functools.partial(
      nn.Conv, use_bias=use_bias, padding=padding, kernel_init=conv_init,
      dtype=dtype, precision=precision,
      conv_general_dilated=convolution.conv_general_dilated, **kwargs)


# config.model.batch_norm_statistics: over what a training step's batch-norm
# statistics are computed. "global": the whole global batch (on a mesh, XLA
# all-reduces each layer's moments across devices, forward and backward);
# "per_device": each device's share of the batch alone, as the original
# TensorFlow code on TPUs did (one core, one set of statistics), with no
# collective in the forward or backward pass of any batch norm.
BATCH_NORM_STATISTICS = ("global", "per_device")


class GroupedBatchNorm(nn.Module):
  """Training batch norm whose statistics are those of each of `groups`
  equal, contiguous slices of the batch: with the batch split along a mesh
  of `groups` devices, slice g is device g's share and its statistics need
  no cross-device reduction. The moving averages take the mean of the
  groups' statistics. Parameters and statistics are named as nn.BatchNorm's,
  which normalises with the moving averages at inference (`batch_norm`),
  and it computes as nn.BatchNorm does: float32 moments, var = E[x^2] -
  E[x]^2 clipped at 0.

  Attributes: as nn.BatchNorm's (training only), plus groups (> 1).
  """
  groups: int
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Dtype = None
  scale_init: Any = nn.initializers.ones
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, ..., features] -> the same shape, in dtype."""
    features = x.shape[-1]
    mean_stat = self.variable("batch_stats", "mean", jnp.zeros, (features,),
                              jnp.float32)
    var_stat = self.variable("batch_stats", "var", jnp.ones, (features,),
                             jnp.float32)
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", self.bias_init, (features,), jnp.float32)
    batch = x.shape[0]
    if batch % self.groups:
      raise ValueError(
          f"Per-device batch norm: a batch of {batch} does not split into "
          f"{self.groups} equal device shares.")
    grouped = x.astype(jnp.float32).reshape(self.groups, batch // self.groups,
                                            *x.shape[1:])
    axes = tuple(range(1, grouped.ndim - 1))
    mean = jnp.mean(grouped, axis=axes, keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(grouped), axis=axes,
                               keepdims=True) - jnp.square(mean), 0.0)
    if not self.is_initializing():
      mean_stat.value = (self.momentum * mean_stat.value + (1 - self.momentum)
                         * jnp.mean(mean, axis=(0,) + axes))
      var_stat.value = (self.momentum * var_stat.value + (1 - self.momentum)
                        * jnp.mean(var, axis=(0,) + axes))
    y = (grouped - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
    return y.reshape(x.shape).astype(self.dtype or x.dtype)


def batch_norm(train: bool, momentum: float, epsilon: float,
               dtype: Dtype, groups: int = 1) -> Any:
  """A batch-norm partial: batch statistics (and moving-average updates)
  when train, the moving averages otherwise; in training with groups > 1 the
  statistics of each of that many equal slices of the batch
  (`GroupedBatchNorm`)."""
  if train and groups > 1:
    return functools.partial(GroupedBatchNorm, groups=groups,
                             momentum=momentum, epsilon=epsilon, dtype=dtype)
  return functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=momentum, epsilon=epsilon, dtype=dtype)
