"""ImageNet (TFDS imagenet2012, manual download): Inception-style crops and
flips for training, the original pipeline's central crop for evaluation."""

from __future__ import annotations

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax.data import common


def build(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  # array_record: the input pipeline reads examples by index.
  builder = tfds.builder("imagenet2012", data_dir=common.data_dir(config),
                         file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=config.get("source_dir")))
  return builder


def _decode_crop_resize(image_bytes, window, size):
  """Decodes only the [y, x, height, width] window and resizes it."""
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return tf.image.resize(image, [size, size], method="bicubic")


def inception_window(shape, seed):
  """[y, x, height, width] of an Inception-style random crop of an image of
  `shape` ([H, W, C]): 8-100 % of its area, aspect ratio 3/4-4/3."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])


def inception_crop(image_bytes, size, seed):
  """The crop of a JPEG, decoding only its window."""
  window = inception_window(tf.image.extract_jpeg_shape(image_bytes), seed)
  return _decode_crop_resize(image_bytes, window, size)


def inception_crop_image(image, size, seed):
  """The same crop of a decoded [H, W, C] image (any file format)."""
  window = inception_window(tf.shape(image), seed)
  crop = image[window[0]:window[0] + window[2],
               window[1]:window[1] + window[3]]
  return tf.image.resize(crop, [size, size], method="bicubic")


def central_crop_window(height, width, size):
  """[y, x, side, side] of the evaluation crop, as the original pipeline:
  side = size / (size + size // 10) of the shorter side (224/246 = 0.911 at
  224), centred."""
  fraction = size / (size + size // 10)
  side = tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32),
                 tf.int32)
  side = tf.maximum(side, 1)
  return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side,
                   side])


def central_crop(image_bytes, size):
  shape = tf.image.extract_jpeg_shape(image_bytes)
  return _decode_crop_resize(image_bytes,
                             central_crop_window(shape[0], shape[1], size),
                             size)


def eval_image(image, config):
  """A decoded [H, W, 3] uint8 image -> the evaluation's central crop,
  resized (what `preprocess` computes from the JPEG), as pixels."""
  window = central_crop_window(tf.shape(image)[0], tf.shape(image)[1],
                               config.image_size)
  crop = image[window[0]:window[0] + window[2],
               window[1]:window[1] + window[3]]
  crop = tf.image.resize(crop, [config.image_size] * 2, method="bicubic")
  return tf.clip_by_value(crop, 0.0, 255.0)


def preprocess(example, config, train):
  if train:
    seed = example["seed"]
    image = inception_crop(example["image"], config.image_size, seed)
    image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
  else:
    image = central_crop(example["image"], config.image_size)
  image = tf.clip_by_value(image, 0.0, 255.0)
  # The TF-slim label set puts a background class at 0.
  label = tf.cast(example["label"], tf.int32) + config.get("label_offset", 0)
  return {"image": image, "label": label}


def class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """TFDS's WordNet IDs, after label_offset background classes."""
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=g-import-not-at-top
  names = tfds.features.ClassLabel(
      names_file=imagenet_common.label_names_file()).names
  return ("background",) * config.get("label_offset", 0) + tuple(names)


SPEC = common.DatasetSpec(build, preprocess, skip_decoding=True,
                          config_keys=("label_offset",),
                          eval_image=eval_image, class_names=class_names)
