"""The attention ("where") network and the what/where mixing convolution."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from saccader_jax.models import convolution
from saccader_jax.models import layers

Dtype = Any


class AttentionNetwork(nn.Module):
  """Widens the receptive field of the representation features.

  Each group is a 1x1 convolution that narrows the channels followed by a 3x3
  dilated convolution; every layer is SAME-padded, bias-free and followed by
  batch norm and ReLU. The SAME padding is deliberate: this path only chooses
  where to look, so it may see the whole image.

  Attributes:
    widths: output channels of each group (the paper: 1024, 512).
    dilation: dilation rate of the 3x3 convolutions.
    bn_groups: batch-norm statistics over this many equal slices of a
      training batch (`layers.GroupedBatchNorm`; 1: the whole batch).
  """
  widths: Sequence[int] = (1024, 512)
  dilation: int = 2
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  precision: layers.Precision = None
  bn_groups: int = 1

  @nn.compact
  def __call__(self, features2d: jnp.ndarray, train: bool) -> jnp.ndarray:
    """features2d: [batch, h, w, c] -> where features [batch, h, w, widths[-1]]."""
    conv = layers.conv(self.dtype, padding="SAME", precision=self.precision)
    norm = layers.batch_norm(train, self.bn_momentum, self.bn_epsilon,
                             self.dtype, self.bn_groups)
    x = features2d
    for g, width in enumerate(self.widths):
      x = conv(width, (1, 1), name=f"group{g}_conv1x1")(x)
      x = nn.relu(norm(name=f"group{g}_bn1x1")(x))
      x = conv(width, (3, 3), kernel_dilation=(self.dilation,) * 2,
               name=f"group{g}_conv3x3")(x)
      x = nn.relu(norm(name=f"group{g}_bn3x3")(x))
    return x


class WhatWhereMixing(nn.Module):
  """Linear 1x1 convolution over concat(where, what): the features F."""
  channels: int = 512
  dtype: Dtype = jnp.float32
  precision: layers.Precision = None

  @nn.compact
  def __call__(self, where: jnp.ndarray, what: jnp.ndarray) -> jnp.ndarray:
    """where, what: [batch, h, w, *] -> F [batch, h, w, channels]."""
    mixed = jnp.concatenate([where, what.astype(where.dtype)], axis=-1)
    return nn.Conv(self.channels, (1, 1), use_bias=True, dtype=self.dtype,
                   precision=self.precision,
                   conv_general_dilated=convolution.conv_general_dilated,
                   name="conv")(mixed)
