"""From images to the models' input and back to a picture: the public
preprocessing is the evaluation's, class names follow the labels, and the
glimpse drawing takes a policy's output."""

import numpy as np
import pytest
import tensorflow as tf

import saccader_jax
from configs import imagenet_saccader
from saccader_jax.data import common
from saccader_jax.data import imagenet
from saccader_jax.data import input_pipeline


def test_preprocessing_stored_canvases_gives_the_evaluation_input(
    tiny_config):
  dataset = tiny_config.dataset
  builder = input_pipeline.get_builder(dataset)
  spec = input_pipeline.DATASETS[dataset.name]
  source = input_pipeline.data_source(builder, "test", spec)
  raw = [tf.io.decode_png(source[i]["image"]).numpy() for i in range(5)]
  images, labels = saccader_jax.read_examples(dataset, "test", 5, builder)
  assert images.shape == (5, 36, 36, 1) and images.dtype == np.float32
  np.testing.assert_array_equal(labels,
                                [source[i]["label"] for i in range(5)])
  np.testing.assert_array_equal(
      saccader_jax.preprocess_images(raw, dataset), images)
  np.testing.assert_array_equal(
      saccader_jax.preprocess_images(np.stack(raw), dataset), images)
  # A canvas of another size is resized to the configured one.
  assert saccader_jax.preprocess_images(
      [np.zeros((50, 50, 1), np.uint8)], dataset).shape == (1, 36, 36, 1)


def test_imagenet_preprocessing_matches_the_pipeline_crop():
  dataset = imagenet_saccader.get_config().dataset
  yy, xx = np.mgrid[0:300, 0:400]
  image = np.stack([128 + 100 * np.sin(xx / 17.0),
                    128 + 100 * np.cos(yy / 23.0), (xx + yy) % 256], -1)
  jpeg = tf.io.encode_jpeg(image.astype(np.uint8)).numpy()
  pipeline = common.normalize(imagenet.preprocess(
      {"image": jpeg, "label": 0}, dataset, False)["image"], dataset).numpy()
  from_bytes = saccader_jax.preprocess_images([jpeg], dataset)[0]
  np.testing.assert_array_equal(from_bytes, pipeline)
  decoded = tf.io.decode_jpeg(jpeg).numpy()
  from_pixels = saccader_jax.preprocess_images([decoded], dataset)[0]
  assert from_pixels.shape == (224, 224, 3)
  # A full decode differs from the windowed one only near the window's edge.
  inner = np.abs(from_pixels - pipeline)[8:-8, 8:-8]
  assert inner.max() < 0.05, inner.max()


def test_bad_images_are_named():
  dataset = imagenet_saccader.get_config().dataset
  with pytest.raises(ValueError, match="uint8 images; got float32"):
    saccader_jax.preprocess_images([np.zeros((9, 9, 3), np.float32)], dataset)
  with pytest.raises(ValueError, match="3 channel"):
    saccader_jax.preprocess_images([np.zeros((9, 9, 1), np.uint8)], dataset)


def test_class_names_follow_the_labels(tiny_config):
  names = saccader_jax.class_names(tiny_config.dataset)
  assert names[0] == "t-shirt/top" and names[9] == "ankle boot"
  imagenet_names = saccader_jax.class_names(
      imagenet_saccader.get_config().dataset)
  # label_offset 1: the TF-slim label set's background class comes first.
  assert len(imagenet_names) == 1001 and imagenet_names[0] == "background"
  assert imagenet_names[1] == "n01440764"
