"""The shipped model loads in one line and scores what it scored when
shipped, on the shipped test canvases."""

import json
import pathlib

import jax
import numpy as np
import pytest

import saccader_jax
from saccader_jax import pretrained

# Points of top-1 a shipped model may move by on another CPU class (float
# order changes a few borderline predictions), on 1,000 canvases.
TOLERANCE_POINTS = 0.5


@pytest.fixture(scope="module")
def shipped():
  config, variables = saccader_jax.load_pretrained()
  return config, variables


def test_the_default_model_is_the_main_jobs(shipped):
  config, _ = shipped
  assert pretrained.DEFAULT in pretrained.names()
  assert config.dataset.item_size == 44 and config.seed == 0
  assert config.test_baselines == ("ordered_logits", "random")
  workdir = pretrained.pretrained_workdir()
  assert not list(pathlib.Path(workdir).rglob("opt_state"))   # models only
  with pytest.raises(ValueError, match="No shipped model 'imagenet'"):
    pretrained.pretrained_workdir("imagenet")


def test_the_shipped_model_scores_its_recorded_numbers(shipped):
  config, variables = shipped
  images, labels = pretrained.test_subset()
  assert images.dtype == np.uint8 and images.shape == (
      1000, config.dataset.image_size, config.dataset.image_size, 1)
  recorded = pretrained.subset_accuracy()
  scored = pretrained.score(config, variables, images, labels)
  assert scored["count"] == recorded["count"] == len(labels)
  for name, policy in recorded["policies"].items():
    np.testing.assert_allclose(100 * np.asarray(scored["policies"][name]
                                                ["top1"]),
                               100 * np.asarray(policy["top1"]),
                               atol=TOLERANCE_POINTS, err_msg=name)
  assert abs(scored["bagnet_top1"] - recorded["bagnet_top1"]) * 100 <= (
      TOLERANCE_POINTS)
  # The subset is the test split's head: its scores are near the job's
  # whole-split ones, which the workdir keeps.
  test = json.loads((pretrained.pretrained_workdir() /
                     "test_accuracy.json").read_text())
  assert abs(test["references"]["representation"]["top1"] -
             scored["bagnet_top1"]) < 0.05
  np.testing.assert_allclose(scored["policies"]["saccader"]["top1"],
                             test["top1"], atol=0.05)


def test_every_stage_reads_back_and_the_bagnet_is_stage_ones(shipped):
  config, final = shipped
  with saccader_jax.Run(config, pretrained.pretrained_workdir(),
                        read_only=True) as run:
    stages = run.train()
  assert tuple(stages) == tuple(config.run_stages)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         stages[config.run_stages[-1]].variables, final)
  # Stages 2 and 3 train the location network alone, so the baselines and
  # the Saccader read one BagNet.
  jax.tree_util.tree_map(
      np.testing.assert_array_equal,
      stages["representation"].variables["params"]["representation"],
      final["params"]["representation"])
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(stages["representation"].variables["params"]
                                ["attention"]),
      jax.tree_util.tree_leaves(final["params"]["attention"])))


def test_an_exported_workdir_reads_like_its_source(finished_tiny_workdir,
                                                   tmp_path):
  from saccader_jax import checkpoints  # pylint: disable=g-import-not-at-top
  source, _ = finished_tiny_workdir
  config = saccader_jax.load_config(source)
  target = tmp_path / "shipped"
  target.mkdir()
  (target / "config.json").write_text((source / "config.json").read_text())
  copied = checkpoints.export_models(source, target, config.run_stages)
  assert [p.parent.name for p in copied] == list(config.run_stages)
  assert not list(target.rglob("opt_state"))
  assert list(source.rglob("opt_state"))
  for stage in config.run_stages:
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        saccader_jax.load_variables(target, stage=stage),
        saccader_jax.load_variables(source, stage=stage))
  with saccader_jax.Run(config, target, read_only=True) as run:
    assert tuple(run.train()) == tuple(config.run_stages)
