"""Layer factories shared by every network of the project.

Each network builds its convolutions and batch norms from these, so that
initialisation, the CPU convolution rewrite (`convolution.py`) and the
compute dtype are set in one place.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn

from saccader_jax.models import convolution

Dtype = Any

# He initialisation for convolutions followed by ReLU.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(dtype: Dtype, padding: Any = "VALID", use_bias: bool = False,
         **kwargs) -> Any:
  """An `nn.Conv` partial: He-initialised, the project's convolution
  primitive, compute dtype `dtype` (parameters stay float32)."""
  return functools.partial(
      nn.Conv, use_bias=use_bias, padding=padding, kernel_init=conv_init,
      dtype=dtype, conv_general_dilated=convolution.conv_general_dilated,
      **kwargs)


def batch_norm(train: bool, momentum: float, epsilon: float,
               dtype: Dtype) -> Any:
  """An `nn.BatchNorm` partial: batch statistics (and moving-average
  updates) when train, the moving averages otherwise."""
  return functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=momentum, epsilon=epsilon, dtype=dtype)
