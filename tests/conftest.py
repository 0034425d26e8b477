"""Shared fixtures: small Saccader variants that run in seconds on a CPU."""

import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import imagenet_saccader  # pylint: disable=g-import-not-at-top
from saccader_jax import models


def narrow_model_config(num_classes: int = 10) -> ml_collections.ConfigDict:
  """The ImageNet layout (so receptive field 77, stride 8), a few channels wide."""
  config = imagenet_saccader.get_model_config()
  config.num_classes = num_classes
  config.representation.planes = (4, 4, 4, 8)
  config.representation.stem_channels = 8
  config.representation.what_channels = 16
  config.attention.widths = (16, 8)
  config.mixed_channels = 8
  return config


@pytest.fixture(scope="session")
def narrow_config():
  return narrow_model_config()


@pytest.fixture(scope="session")
def narrow_model(narrow_config):
  return models.create_model(narrow_config)


@pytest.fixture(scope="session")
def narrow_variables(narrow_model):
  """Variables with every batch-norm scale set to one, so that no residual
  branch is switched off by its zero-initialised scale."""
  images = jnp.zeros((1, 93, 93, 3))
  variables = jax.jit(lambda key: narrow_model.init(key, images,
                                                    num_glimpses=1))(
                                                        jax.random.key(0))
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.ones_like(x) if path[-1].key == "scale" else x,
      variables["params"])
  return {"params": params, "batch_stats": variables["batch_stats"]}
