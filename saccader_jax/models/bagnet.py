"""BagNet-lowD: the representation ("what") network of Saccader.

A ResNet-50 layout in which most 3x3 convolutions become 1x1 and every
convolution is VALID, so each output location is a function of one bounded
image patch (77x77 pixels for the ImageNet configuration, stride 8).

Where a bottleneck projects its shortcut (a stride or a change of width),
the batch norm of that projection goes, by `projection_norm`:
  - "shortcut" (default): on the projected shortcut, the standard ResNet
    block (He et al. 2016), whose two summands are both normalised;
  - "main_branch": on the main branch, after its own last batch norm, with
    the projection left unnormalised: what the original TensorFlow code
    does (saccader/feedforward/bagnet_model.py, `bottleneck`, scope
    "downsample"), from which the paper's numbers came.
Both have the same variables (`bn_proj` either way), so only their outputs
tell them apart.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from saccader_jax.models import convolution
from saccader_jax.models import geometry
from saccader_jax.models import layers

Dtype = Any
PROJECTION_NORMS = ("shortcut", "main_branch")


@flax.struct.dataclass
class RepresentationOutput:
  """Outputs of the representation network.

  Attributes:
    features2d: [batch, h, w, 4 * planes[-1]] features before the lowD
      bottleneck; the attention network reads these.
    what_features: [batch, h, w, what_channels] lowD ("what") features.
    logits2d: [batch, h, w, num_classes] class logits at every location.
    logits: [batch, num_classes] whole-image logits, the mean of logits2d.
  """
  features2d: jnp.ndarray
  what_features: jnp.ndarray
  logits2d: jnp.ndarray
  logits: jnp.ndarray


class Bottleneck(nn.Module):
  """1x1 -> kxk (stride) -> 1x1 bottleneck with a VALID-cropped shortcut."""
  planes: int
  kernel_size: int
  stride: int
  expansion: int
  conv: Any
  norm: Any
  projection_norm: str = "shortcut"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    out_channels = self.planes * self.expansion
    y = self.conv(self.planes, (1, 1), name="conv_a")(x)
    y = nn.relu(self.norm(name="bn_a")(y))
    y = self.conv(self.planes, (self.kernel_size,) * 2,
                  strides=(self.stride,) * 2, name="conv_b")(y)
    y = nn.relu(self.norm(name="bn_b")(y))
    y = self.conv(out_channels, (1, 1), name="conv_c")(y)
    # Zero-initialised scale: every block starts as the identity.
    y = self.norm(scale_init=nn.initializers.zeros, name="bn_c")(y)

    # A VALID kxk convolution trims (k - 1) / 2 pixels from each border; the
    # shortcut is trimmed the same way so both branches stay aligned.
    shortcut = x
    trim = (self.kernel_size - 1) // 2
    if trim:
      shortcut = shortcut[:, trim:-trim, trim:-trim, :]
    if self.stride != 1 or shortcut.shape[-1] != out_channels:
      shortcut = self.conv(out_channels, (1, 1), strides=(self.stride,) * 2,
                           name="conv_proj")(shortcut)
      if self.projection_norm == "main_branch":
        y = self.norm(name="bn_proj")(y)
      else:
        shortcut = self.norm(name="bn_proj")(shortcut)
    return nn.relu(y + shortcut)


class BagNet(nn.Module):
  """Bag-of-local-features network with an optional lowD bottleneck.

  Attributes:
    num_classes: classes of the per-location logits.
    blocks: bottleneck blocks per group.
    planes: bottleneck width per group (outputs have expansion * planes).
    strides: stride of the first block of each group.
    kernel3: per group, how many leading blocks use a 3x3 middle convolution
      (the rest use 1x1); this sets the receptive field.
    stem_channels: channels of the 3x3 stem convolution.
    expansion: channel expansion of each bottleneck.
    what_channels: width of the lowD bottleneck; None feeds the logits
      straight from the group outputs.
    bn_momentum, bn_epsilon: batch-norm settings.
    dtype: compute dtype; parameters stay float32 and logits are float32.
    precision: matmul precision of the convolutions (`layers.MATMUL_PRECISIONS`);
      the per-location logits always run at `layers.DECISION_PRECISION`.
    bn_groups: batch-norm statistics over this many equal slices of a
      training batch (`layers.GroupedBatchNorm`; 1: the whole batch).
    projection_norm: where a projecting block's `bn_proj` goes (one of
      PROJECTION_NORMS; see the module docstring).
  """
  num_classes: int
  blocks: Sequence[int] = (3, 4, 6, 3)
  planes: Sequence[int] = (64, 128, 256, 512)
  strides: Sequence[int] = (2, 2, 2, 1)
  kernel3: Sequence[int] = (2, 2, 2, 2)
  stem_channels: int = 64
  expansion: int = 4
  what_channels: Optional[int] = 512
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  precision: layers.Precision = None
  bn_groups: int = 1
  projection_norm: str = "shortcut"

  def __post_init__(self):
    if self.projection_norm not in PROJECTION_NORMS:
      raise ValueError(f"Unknown projection_norm {self.projection_norm!r}; "
                       f"valid: {list(PROJECTION_NORMS)}.")
    lengths = {len(self.blocks), len(self.planes), len(self.strides),
               len(self.kernel3)}
    if len(lengths) != 1:
      raise ValueError(
          "blocks, planes, strides and kernel3 need one entry per group; got "
          f"blocks={self.blocks}, planes={self.planes}, "
          f"strides={self.strides}, kernel3={self.kernel3}")
    super().__post_init__()

  def conv_specs(self) -> list[geometry.ConvSpec]:
    """The convolutions along the classification path, in order."""
    specs = [geometry.ConvSpec(3, 1)]
    for num_blocks, stride, num_3x3 in zip(self.blocks, self.strides,
                                           self.kernel3):
      for i in range(num_blocks):
        specs += [geometry.ConvSpec(1, 1),
                  geometry.ConvSpec(3 if i < num_3x3 else 1,
                                    stride if i == 0 else 1),
                  geometry.ConvSpec(1, 1)]
    return specs

  def grid_geometry(self, image_height: int,
                    image_width: int) -> geometry.GridGeometry:
    return geometry.GridGeometry.from_convs(self.conv_specs(), image_height,
                                            image_width)

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool) -> RepresentationOutput:
    """images: [batch, height, width, channels] -> RepresentationOutput."""
    conv = layers.conv(self.dtype, precision=self.precision)
    norm = layers.batch_norm(train, self.bn_momentum, self.bn_epsilon,
                             self.dtype, self.bn_groups)
    x = conv(self.stem_channels, (3, 3), name="stem_conv")(images)
    x = nn.relu(norm(name="stem_bn")(x))
    for g, (num_blocks, planes, stride, num_3x3) in enumerate(
        zip(self.blocks, self.planes, self.strides, self.kernel3)):
      for i in range(num_blocks):
        x = Bottleneck(planes=planes, kernel_size=3 if i < num_3x3 else 1,
                       stride=stride if i == 0 else 1,
                       expansion=self.expansion, conv=conv, norm=norm,
                       projection_norm=self.projection_norm,
                       name=f"group{g}_block{i}")(x)
    features2d = x
    if self.what_channels:
      x = conv(self.what_channels, (1, 1), name="lowd_conv")(x)
      x = nn.relu(norm(name="lowd_bn")(x))
    what_features = x
    # Locations are ranked by these logits (stage-2 targets, the greedy
    # policies): float32 from the compute-dtype features, since 8 bits of
    # bf16 mantissa tie near-equal scores and top_k breaks ties towards the
    # top-left of the image.
    logits2d = nn.Conv(
        self.num_classes, (1, 1), padding="VALID", dtype=jnp.float32,
        precision=layers.DECISION_PRECISION,
        conv_general_dilated=convolution.conv_general_dilated,
        name="logits2d")(x.astype(jnp.float32))
    return RepresentationOutput(
        features2d=features2d, what_features=what_features,
        logits2d=logits2d, logits=jnp.mean(logits2d, axis=(1, 2)))


def stop_gradient(output: RepresentationOutput) -> RepresentationOutput:
  return jax.tree_util.tree_map(jax.lax.stop_gradient, output)
