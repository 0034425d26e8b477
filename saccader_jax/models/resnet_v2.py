"""ResNet-v2 (pre-activation) in the TF-slim / Keras ResNet50V2 layout.

The full-image classifier of the occlusion analysis (section 4.2), and the
glimpse network of DRAM. Layout, as `tf.keras.applications.ResNet50V2`:
a root convolution with bias and no batch norm (7x7/2 and a 3x3/2 max-pool
for ImageNet), bottleneck units whose last one in a block carries the
block's stride, a projection shortcut with bias on the first unit of each
block, a final batch norm + ReLU, the spatial mean, and optional logits.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from saccader_jax.models import layers

Dtype = Any


def _same(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """TF-slim's conv2d_same padding (symmetric for odd kernels)."""
  pad = (kernel_size - 1) // 2
  return ((pad, kernel_size - 1 - pad),) * 2


class PreactBottleneck(nn.Module):
  """BN-ReLU -> 1x1 -> BN-ReLU -> 3x3 (stride) -> BN-ReLU -> 1x1 (bias)."""
  width: int
  stride: int
  expansion: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    out_channels = self.width * self.expansion
    preact = nn.relu(self.norm(name="preact_bn")(x))
    if x.shape[-1] != out_channels:
      shortcut = self.conv(out_channels, (1, 1), strides=(self.stride,) * 2,
                           use_bias=True, name="shortcut_conv")(preact)
    elif self.stride > 1:
      shortcut = x[:, ::self.stride, ::self.stride, :]
    else:
      shortcut = x
    y = self.conv(self.width, (1, 1), name="conv1")(preact)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(self.width, (3, 3), strides=(self.stride,) * 2,
                  padding=_same(3), name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = self.conv(out_channels, (1, 1), use_bias=True, name="conv3")(y)
    return shortcut + y


class ResNetV2(nn.Module):
  """Pre-activation ResNet.

  Attributes:
    num_classes: logits size; None returns the pooled features.
    units: bottleneck units per block ((3, 4, 6, 3) for ResNet-v2-50).
    widths: bottleneck width per block (outputs have expansion * width).
    strides: stride per block, applied by the block's last unit.
    root_channels, root_kernel, root_stride: the root convolution.
    root_pool: a 3x3/2 max-pool after the root convolution.
    expansion: channel expansion of each bottleneck.
    bn_momentum, bn_epsilon: batch-norm settings.
    dtype: compute dtype; parameters and logits stay float32.
    precision: matmul precision (`layers.MATMUL_PRECISIONS`).
    bn_groups: batch-norm statistics over this many equal slices of a
      training batch (`layers.GroupedBatchNorm`; 1: the whole batch).
  """
  num_classes: Optional[int]
  units: Sequence[int] = (3, 4, 6, 3)
  widths: Sequence[int] = (64, 128, 256, 512)
  strides: Sequence[int] = (2, 2, 2, 1)
  root_channels: int = 64
  root_kernel: int = 7
  root_stride: int = 2
  root_pool: bool = True
  expansion: int = 4
  bn_momentum: float = 0.9
  bn_epsilon: float = 1.001e-5
  dtype: Dtype = jnp.float32
  precision: layers.Precision = None
  bn_groups: int = 1

  # Keyword arguments of the call `models.init_variables` makes.
  init_kwargs: ClassVar[dict[str, Any]] = {}

  def __post_init__(self):
    if not len(self.units) == len(self.widths) == len(self.strides):
      raise ValueError(
          "units, widths and strides need one entry per block; got "
          f"units={self.units}, widths={self.widths}, "
          f"strides={self.strides}")
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """images [batch, height, width, channels] -> logits [batch, classes]
    (float32), or features [batch, expansion * widths[-1]] without logits."""
    conv = layers.conv(self.dtype, precision=self.precision)
    norm = layers.batch_norm(train, self.bn_momentum, self.bn_epsilon,
                             self.dtype, self.bn_groups)
    x = conv(self.root_channels, (self.root_kernel,) * 2,
             strides=(self.root_stride,) * 2, padding=_same(self.root_kernel),
             use_bias=True, name="root_conv")(images)
    if self.root_pool:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_same(3))
    for b, (num_units, width, stride) in enumerate(
        zip(self.units, self.widths, self.strides)):
      for u in range(num_units):
        x = PreactBottleneck(
            width=width, stride=stride if u == num_units - 1 else 1,
            expansion=self.expansion, conv=conv, norm=norm,
            name=f"block{b}_unit{u}")(x)
    x = nn.relu(norm(name="post_bn")(x))
    features = jnp.mean(x, axis=(1, 2))
    if self.num_classes is None:
      return features
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      precision=self.precision, name="logits")(features)
    return logits.astype(jnp.float32)
