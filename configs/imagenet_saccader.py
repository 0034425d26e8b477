"""Saccader on ImageNet at 224x224: the paper's model (BagNet-77-lowD)."""

import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
  """The paper's Saccader: 35,583,913 variables with 1001 classes."""
  return ml_collections.ConfigDict({
      "name": "saccader",
      # The TF-slim ImageNet label set: 1000 classes plus background at 0.
      "num_classes": 1001,
      # Compute dtype; parameters and the cell always stay float32.
      "dtype": "float32",
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
      "representation": {
          "blocks": (3, 4, 6, 3),
          "planes": (64, 128, 256, 512),
          "strides": (2, 2, 2, 1),
          "kernel3": (2, 2, 2, 2),
          "stem_channels": 64,
          "expansion": 4,
          "what_channels": 512,
      },
      "attention": {"widths": (1024, 512), "dilation": 2},
      "mixed_channels": 512,
  })


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.image_size = 224
  config.num_channels = 3
  config.model = get_model_config()
  return config
