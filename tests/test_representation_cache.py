"""The frozen representation's outputs computed once
(config.cache_frozen_representation): the same training, a cheaper step."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from saccader_jax import config_checks
from saccader_jax import models
from saccader_jax import representation_cache
from saccader_jax import train
from saccader_jax.data import input_pipeline
from tests.helpers import xla_flags_with

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cached_and_plain_runs(config, tmp_path, monkeypatch):
  """Final variables of each stage, trained without and with the cache, and
  how many caches the second run computed."""
  computed = []
  compute = representation_cache.compute
  representation_cache.clear()

  def counting_compute(*args, **kwargs):
    computed.append(compute(*args, **kwargs))
    return computed[-1]

  monkeypatch.setattr(representation_cache, "compute", counting_compute)
  results = {}
  for cache in (False, True):
    config.cache_frozen_representation = cache
    results[cache] = train.Trainer.open(config, str(tmp_path / str(cache))).train()
  return results[False], results[True], computed


@pytest.mark.slow
def test_cached_stages_train_as_the_plain_ones(tiny_config, tmp_path,
                                               monkeypatch):
  config = tiny_config
  config.eval_at_stage_end = False
  config.stages.policy.train_representation = False
  config.stages.policy.location_learning_rate_factor = 100.0
  config.stages.location.num_steps = 5
  config.stages.policy.num_steps = 5
  plain, cached, computed = cached_and_plain_runs(config, tmp_path,
                                                  monkeypatch)
  # Stage 2 and the frozen stage 3 each read a cache; stage 1 trains the
  # BagNet and cannot. Stage 2 leaves the BagNet as it was: stage 3 reads
  # the same cache, computed once.
  assert len(computed) == 2 and computed[0] is computed[1]
  builder = input_pipeline.get_builder(config.dataset)
  assert len(computed[0].arrays["logits2d"]) == input_pipeline.num_examples(
      builder, config.dataset.train_split)
  # Equal up to float32 reordering (the two programs fuse differently),
  # carried through 10 steps at a 100x rate.
  for name in ("representation", "location", "policy"):
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        plain[name], cached[name])
  # Stages 2 and 3 moved the location network: the comparison is not of
  # untouched initialisations.
  for before, after in (("representation", "location"),
                        ("location", "policy")):
    moved = jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(a - b))),
        plain[before]["params"]["attention"],
        plain[after]["params"]["attention"])
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4, (before, after)


@pytest.mark.slow
def test_cache_rows_are_the_representation_of_each_batch_row(tiny_config):
  config = tiny_config
  model = models.create_model(config.model)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  builder = input_pipeline.get_builder(config.dataset)
  cache = representation_cache.compute(model, variables, config.dataset,
                                       builder, batch_size=7)
  batch = next(input_pipeline.train_batches(
      config.dataset, builder, 16, seed=3, start_position=40,
      with_index=True))
  looked_up = cache.lookup(batch)
  assert "image" not in looked_up and "index" not in looked_up
  np.testing.assert_array_equal(looked_up["label"], batch["label"])
  rep = model.apply(variables, batch["image"], method="represent")
  for name in representation_cache.OUTPUTS:
    np.testing.assert_allclose(looked_up["representation"][name],
                               getattr(rep, name), rtol=1e-5, atol=1e-5)
  # Rows of other examples differ: the rows are the examples' own.
  assert not np.allclose(looked_up["representation"]["logits2d"],
                         np.roll(rep.logits2d, 1, axis=0))
  # The same network on the same data: the cache held, not a new one; other
  # variables: a new cache, the old one released.
  assert representation_cache.compute(model, variables, config.dataset,
                                      builder, batch_size=7) is cache
  other = jax.tree_util.tree_map(lambda x: x * 1.5, variables)
  recomputed = representation_cache.compute(model, other, config.dataset,
                                            builder, batch_size=7)
  assert recomputed is not cache
  assert list(representation_cache._LAST.values()) == [recomputed]  # pylint: disable=protected-access
  assert not np.allclose(recomputed.arrays["logits2d"],
                         cache.arrays["logits2d"])
  representation_cache.clear()


def test_cache_needs_fixed_training_images():
  from configs import imagenet_saccader  # pylint: disable=g-import-not-at-top
  config = imagenet_saccader.get_config()
  config.cache_frozen_representation = True
  config.stages.policy.train_representation = False
  problems = config_checks.config_problems(config, num_devices=8)
  assert any(line.startswith("config.cache_frozen_representation=True: "
                             "needs a data set whose training images are "
                             "fixed") for line in problems), problems
  # No stage of the run freezes the BagNet: nothing to cache, no problem.
  config.stages.policy.train_representation = True
  assert config_checks.config_problems(config, num_devices=8) == []
  del config["cache_frozen_representation"]   # a config read from JSON
  config.cache_frozen_representation = "yes"
  assert ("config.cache_frozen_representation='yes': must be True or False."
          in config_checks.config_problems(config, num_devices=8))


@pytest.mark.slow
def test_the_cache_built_over_four_devices_is_the_one_device_cache(
    tiny_data_dir, tmp_path):
  """Each pass's images are split over the host's devices (padded to a
  multiple of them: 10 rows over 4 devices): every device computes, and the
  rows are those one device computes."""
  arrays, logs = {}, {}
  for devices in (1, 4):
    out = tmp_path / f"{devices}.npz"
    result = subprocess.run(
        [sys.executable, "-m", "tests.representation_cache_on_devices",
         f"--data_dir={tiny_data_dir}", f"--out={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags_with(
            f"--xla_force_host_platform_device_count={devices}")))
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as f:
      arrays[devices] = {k: f[k] for k in f.files}
    logs[devices] = result.stderr
  assert int(arrays[4]["devices"]) == 4
  assert "on 4 device(s)" in logs[4] and "on 1 device(s)" in logs[1]
  for name in representation_cache.OUTPUTS:
    assert arrays[4][name].shape == arrays[1][name].shape
    np.testing.assert_allclose(arrays[4][name], arrays[1][name], rtol=1e-5,
                               atol=1e-5)
