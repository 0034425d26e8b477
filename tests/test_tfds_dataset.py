"""Any prepared TFDS classification data set by name
(saccader_jax/data/tfds_dataset.py)."""

import numpy as np
import pytest

from saccader_jax import config_checks
from saccader_jax.data import input_pipeline
from tests.helpers import tiny_train_config
from tests.helpers import write_image_folder
from tests.tiny_folder_config import get_config

# The keys of the folder's and the embedded set's own sections.
OTHER_KEYS = ("path", "split_seed", "dev_fraction", "test_fraction",
              "on_corrupt", "mixed_channels", "seed", "num_clutter",
              "clutter_size", "dev_size", "item_size", "canvas_size")


def by_name(config, tfds_name, **fields):
  """config with its data set read by TFDS name instead."""
  config = config.copy_and_resolve_references()
  for key in OTHER_KEYS:
    if key in config.dataset:
      del config.dataset[key]
  config.dataset.name = "tfds"
  config.dataset.tfds_name = tfds_name
  config.dataset.image_key = "image"
  config.dataset.label_key = "label"
  config.dataset.update(fields)
  return config


@pytest.fixture(scope="module")
def folder_config(tmp_path_factory):
  root = write_image_folder(str(tmp_path_factory.mktemp("named") / "shapes"),
                            per_class=12)
  return get_config(root)


@pytest.mark.parametrize("preprocessing", ["resize", "inception_crop"])
def test_a_folder_read_by_name_gives_the_same_batches(folder_config,
                                                      preprocessing):
  folder_config.dataset.preprocessing = preprocessing
  builder = input_pipeline.get_builder(folder_config.dataset)
  named = by_name(folder_config,
                  f"image_folder/{builder.builder_config.name}")
  assert config_checks.config_problems(named) == []
  named_builder = input_pipeline.get_builder(named.dataset)
  for a, b in zip(
      input_pipeline.train_batches(folder_config.dataset, builder, 8, seed=3),
      input_pipeline.train_batches(named.dataset, named_builder, 8, seed=3)):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    break
  assert input_pipeline.class_names(named.dataset) == \
      input_pipeline.class_names(folder_config.dataset)


def test_an_image_feature_is_read_and_other_features_left(tiny_data_dir):
  config = tiny_train_config(tiny_data_dir)
  builder = input_pipeline.get_builder(config.dataset)
  named = by_name(config, f"cluttered_fashion_mnist/"
                  f"{builder.builder_config.name}", preprocessing="resize")
  named.model.num_classes = 0
  config_checks.check_config(named)
  assert named.model.num_classes == 10   # from the label feature
  named_builder = input_pipeline.get_builder(named.dataset)
  source = input_pipeline.data_source(
      named_builder, "test", input_pipeline.DATASETS["tfds"], named.dataset)
  assert sorted(source[0]) == ["image", "label"]   # no item_position
  mine = next(input_pipeline.eval_batches(config.dataset, builder, "test",
                                          16))
  theirs = next(input_pipeline.eval_batches(named.dataset, named_builder,
                                            "test", 16))
  np.testing.assert_allclose(theirs["image"], mine["image"], atol=1e-5)
  np.testing.assert_array_equal(theirs["label"], mine["label"])


def test_names_features_and_splits_that_are_not_there(folder_config,
                                                      tmp_path):
  builder = input_pipeline.get_builder(folder_config.dataset)
  name = f"image_folder/{builder.builder_config.name}"
  problems = config_checks.config_problems(
      by_name(folder_config, "mnist", data_dir=str(tmp_path)))
  assert problems == [
      f"mnist is not prepared in {tmp_path}: prepare it once where the "
      f"network is (`tfds build mnist --data_dir={tmp_path} "
      "--file_format=array_record`), or set config.dataset.data_dir to where "
      "it is; nothing is downloaded at run time."]
  problems = config_checks.config_problems(
      by_name(folder_config, name, image_key="picture", test_split="val"))
  assert problems == [
      "config.dataset.image_key='picture': " + name + " has no image feature "
      "of that name; its features: ['file', 'image', 'label'].",
      "config.dataset.test_split='val': not a split of " + name + "; its "
      "splits: ['dev', 'test', 'train'] (slices such as 'train[:90%]' "
      "allowed)."]
