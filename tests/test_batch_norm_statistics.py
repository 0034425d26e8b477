"""config.model.batch_norm_statistics: over the global batch, or over each
device's share of it (layers.GroupedBatchNorm)."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saccader_jax import models
from saccader_jax.models import layers
from tests.helpers import narrow_model_config
from tests.helpers import xla_flags_with

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_slice_is_normalised_by_its_own_statistics():
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (8, 5, 5, 6))
  grouped = layers.batch_norm(True, 0.9, 1e-5, None, groups=4)()
  variables = grouped.init(jax.random.key(1), x)
  y, updates = grouped.apply(variables, x, mutable=["batch_stats"])
  plain = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  assert (jax.tree_util.tree_structure(plain.init(jax.random.key(1), x))
          == jax.tree_util.tree_structure(variables))
  means, variances = [], []
  for g in range(4):
    piece = x[2 * g:2 * g + 2]
    expected, stats = plain.apply(variables, piece, mutable=["batch_stats"])
    np.testing.assert_allclose(y[2 * g:2 * g + 2], expected, atol=2e-5)
    means.append(stats["batch_stats"]["mean"])
    variances.append(stats["batch_stats"]["var"])
  # The moving averages take the mean of the four slices' updates.
  np.testing.assert_allclose(updates["batch_stats"]["mean"],
                             np.mean(means, axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["var"],
                             np.mean(variances, axis=0), rtol=1e-5)
  # Not the global batch's: the slices differ.
  whole, _ = plain.apply(variables, x, mutable=["batch_stats"])
  assert not np.allclose(y, whole, atol=1e-3)
  # Inference reads the moving averages, as nn.BatchNorm does.
  frozen = layers.batch_norm(False, 0.9, 1e-5, None, groups=4)()
  reference = nn.BatchNorm(use_running_average=True, epsilon=1e-5)
  trained = {"params": variables["params"], **updates}
  np.testing.assert_allclose(frozen.apply(trained, x),
                             reference.apply(trained, x), atol=1e-5)


def test_a_batch_that_does_not_split_names_the_sizes():
  grouped = layers.GroupedBatchNorm(groups=4)
  x = jnp.ones((6, 3))
  variables = grouped.init(jax.random.key(0), jnp.ones((8, 3)))
  with pytest.raises(ValueError, match="batch of 6 does not split into 4"):
    grouped.apply(variables, x, mutable=["batch_stats"])


def test_per_device_statistics_on_one_device_are_the_global_ones(
    narrow_variables):
  config = narrow_model_config()
  config.batch_norm_statistics = "per_device"
  model = models.create_model(config)
  assert model.representation.bn_groups == jax.device_count() == 1
  images = jax.random.normal(jax.random.key(0), (2, 93, 93, 3))
  out = model.apply(narrow_variables, images, num_glimpses=2, train=True,
                    mutable=["batch_stats"])[0]
  reference = models.create_model(narrow_model_config()).apply(
      narrow_variables, images, num_glimpses=2, train=True,
      mutable=["batch_stats"])[0]
  np.testing.assert_array_equal(out.locations, reference.locations)
  config.batch_norm_statistics = "per_core"
  with pytest.raises(ValueError, match="global.*per_device"):
    models.create_model(config)


@pytest.mark.slow
def test_per_device_statistics_remove_the_cross_device_reductions(tmp_path):
  """On 4 devices: the stage-1 step's all-reduces (compiled HLO) in each
  mode, and per-device training equals one device computing the same
  groups."""
  env = dict(os.environ, XLA_FLAGS=xla_flags_with(
      "--xla_force_host_platform_device_count=4"))
  result = subprocess.run(
      [sys.executable, "-m", "tests.batch_norm_on_devices"], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  counts = dict(line.split()[1:] for line in result.stdout.splitlines()
                if line.startswith("all-reduces "))
  assert int(counts["per_device"]) < int(counts["global"])
  assert "same as grouped on one device" in result.stdout
