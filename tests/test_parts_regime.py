"""The parts regime (configs/fashion_mnist_parts_saccader.py): items larger
than a glimpse, checked on the model's geometry and on data built from real
Fashion-MNIST items through the data set's own builder."""

import os

import jax
import numpy as np
import pytest

from configs import fashion_mnist_parts_long_saccader as parts_long
from configs import fashion_mnist_parts_saccader as parts
from configs import fashion_mnist_whole_items_saccader
from experiments import regime
from saccader_jax import config_checks
from saccader_jax import models
from saccader_jax.data import cluttered_fashion_mnist as cfm


def test_lattice_bound_counts_boxes_no_box_can_share():
  content = np.zeros((3, 44, 44), bool)
  content[0] = True                      # a solid 44x44 square
  content[1, 10:30, 0:44] = True         # a 20-high band: one row of boxes
  content[2, 5, 5] = True                # one pixel
  # 44 = 21 + 21 + 2: three boxes of 21 per side, 9 in all.
  np.testing.assert_array_equal(regime.min_cover_bound(content, 21),
                                [9, 3, 1])
  np.testing.assert_array_equal(regime.content_extent(content),
                                [[44, 44], [20, 44], [1, 1]])


def test_single_locations_against_all_locations():
  # Two images, a 1x2 grid, two classes: image 0 is right only at location
  # 1; image 1 is right at both.
  logits2d = np.array([[[[2.0, 0.0], [0.0, 3.0]]],
                       [[[0.0, 1.0], [0.0, 2.0]]]])
  got = regime.location_accuracies(logits2d, np.array([1, 1]))
  assert got == {"all locations": 100.0, "ordered logits, t = 1": 100.0,
                 "single location, mean": 75.0,
                 "single location, oracle": 100.0}


def test_the_geometry_is_the_papers():
  config = parts.get_config()
  rows = regime.geometry_rows(config)
  assert rows["receptive field"] == parts.RECEPTIVE_FIELD == 21
  assert rows["canvas side"] == parts.CANVAS_SIZE
  assert 2.5 <= rows["canvas / receptive field"] <= 3.5      # ImageNet 2.9
  assert 1.7 <= rows["item / receptive field"] <= 2.5
  # The whole item's square takes ceil(44 / 21)^2 = 9 glimpses.
  square = np.ones((1, parts.ITEM_SIZE, parts.ITEM_SIZE), bool)
  assert regime.min_cover_bound(square, rows["receptive field"])[0] >= 4
  # DRAM glimpses are one receptive field; the high-resolution classifier's
  # crops follow the receptive field as well.
  assert config.dram.glimpse_size == rows["receptive field"]
  # The default keeps its geometry (and so its data and its numbers).
  default = regime.geometry_rows(
      fashion_mnist_whole_items_saccader.get_config())
  assert (default["receptive field"], default["item side"]) == (29, 28)


def test_default_builder_config_keeps_its_name():
  assert cfm.make_builder_config().name == (
      "canvas64_clutter6x9_dev5000_seed0")
  assert cfm.make_builder_config(item_size=44, clutter_size=14).name == (
      "canvas64_item44_clutter6x14_dev5000_seed0")


@pytest.fixture(scope="module")
def real_items_dir(tmp_path_factory, fashion_mnist_files):
  """IDX files holding the first real Fashion-MNIST items (300 train, 100
  test), for the builder."""
  files = fashion_mnist_files
  directory = tmp_path_factory.mktemp("real_items")
  for key, count in (("train", 300), ("test", 100)):
    for kind in ("images", "labels"):
      array = cfm.read_idx(files[f"{key}_{kind}"])[:count]
      cfm.write_idx(str(directory / cfm.FILES[f"{key}_{kind}"]), array)
  return str(directory)


def test_built_data_holds_large_items_wholly_on_the_canvas(real_items_dir,
                                                           tmp_path):
  config = parts.get_config().dataset
  builder = cfm.build(str(tmp_path / "tfds"), real_items_dir,
                      canvas_size=config.image_size,
                      num_clutter=config.num_clutter,
                      clutter_size=config.clutter_size, dev_size=50,
                      seed=config.seed, item_size=config.item_size)
  examples = list(builder.as_data_source(split="test"))
  items = cfm.upscale_items(
      cfm.read_idx(os.path.join(real_items_dir, cfm.FILES["test_images"])),
      config.item_size)
  labels = cfm.read_idx(os.path.join(real_items_dir,
                                     cfm.FILES["test_labels"]))
  assert items.shape[1:] == (44, 44)
  side = config.item_size
  placed = set()
  for example in examples:   # in the files' (shuffled) order
    image = example["image"][..., 0]
    assert image.shape == (config.image_size, config.image_size)
    y, x = example["item_position"]
    assert 0 <= y <= config.image_size - side
    assert 0 <= x <= config.image_size - side
    # Clutter is combined with max: an upscaled item of the example's label
    # is intact in place.
    window = image[y:y + side, x:x + side]
    found = [i for i in np.flatnonzero(labels == example["label"])
             if np.all(window >= items[i]) and items[i].any()]
    assert found, "no upscaled item of this label at the item's position"
    placed.update(found)
  assert len(placed) >= 0.9 * len(examples)
  # The items' content spans several glimpses: on real items, at least 4
  # for most (a lower bound), and the content's extent is about the item's.
  content = items > regime.CONTENT_THRESHOLD
  bound = regime.min_cover_bound(content, parts.RECEPTIVE_FIELD)
  assert np.median(bound) >= 4
  assert np.mean(bound >= 3) >= 0.9
  extent = regime.content_extent(content).max(1)
  assert 1.7 <= np.median(extent) / parts.RECEPTIVE_FIELD <= 2.5
  # The mean and std the config normalises with are these canvases'.
  pixels = np.stack([e["image"] for e in examples]) / 255.0
  assert abs(pixels.mean() - config.mean[0]) < 0.03
  assert abs(pixels.std() - config.std[0]) < 0.03


def test_the_model_reads_the_canvas_on_an_11x11_grid():
  config = parts.get_config()
  model = models.create_model(config.model)
  grid = model.grid_geometry(64, 64)
  assert (grid.grid_height, grid.grid_width, grid.stride) == (11, 11, 4)


@pytest.mark.parametrize("variant", [None, *parts_long.VARIANTS])
def test_the_long_config_and_its_ablations_are_valid(variant):
  assert config_checks.config_problems(parts_long.get_config(variant)) == []


def test_the_ablations_change_only_what_they_ablate():
  full = parts_long.get_config()
  no_pretraining = parts_long.get_config("no_location_pretraining")
  assert "location" in full.run_stages
  assert no_pretraining.run_stages == tuple(
      s for s in full.run_stages if s != "location")
  shapes = {name: jax.tree_util.tree_map(
      lambda x: x.shape, models.abstract_variables(
          parts_long.get_config(name))["params"])
            for name in (None, "no_attention_network")}
  without = shapes["no_attention_network"]
  # The same BagNet; no dilated convolutions, so the what-where mixing reads
  # the BagNet's own features in their place.
  assert without["representation"] == shapes[None]["representation"]
  assert "attention" in shapes[None] and "attention" not in without
  assert set(shapes[None]) - set(without) == {"attention"}
