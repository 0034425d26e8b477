"""What every data set defines, and the preprocessing they share."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

from etils import epath
import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax import paths


# The keys of config.dataset every data set has.
DATASET_KEYS = ("name", "data_dir", "source_dir", "image_size",
                "num_channels", "mean", "std", "train_split", "dev_split",
                "test_split", "cache", "prefetch", "num_threads",
                "read_threads", "read_latency_ms", "normalize_on_device")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to build a data set and preprocess one example.

  Attributes:
    build: config.dataset -> the prepared TFDS builder.
    preprocess: (example, config.dataset, train) -> {"image" [H, W, C]
      pixels in [0, 255] (uint8, or float32 where resizing made them),
      "label" int32}; a train example carries "seed" ([2] int64) for its
      augmentation. The pipeline normalises the pixels (`finish`).
    skip_decoding: images arrive encoded and `preprocess` decodes them
      (so that it can crop first).
    config_keys: the keys of config.dataset this data set reads beyond
      DATASET_KEYS, which every data set has.
    eval_image: (decoded [H, W, C] uint8 image, config.dataset) -> what
      evaluation's `preprocess` makes of it ([S, S, C] pixels), for images
      from elsewhere (`input_pipeline.preprocess_images`).
    class_names: config.dataset -> the name of each label as `preprocess`
      gives it; None: the data set's labels have no names.
    config_problems: config.dataset -> one line per problem of the data
      set's own settings, checked with the config before anything is
      written (e.g. a folder that holds no class folder).
    num_classes: config.dataset -> how many classes the data has, where the
      data says (a model's num_classes 0 means this number).
    read_keys: config.dataset -> the features `preprocess` reads (others
      are not read); None: every feature.
    deterministic_train: training preprocessing draws nothing at random
      (no augmentation): an example's training image is a function of the
      example alone, so that what a frozen network makes of it can be
      computed once (`saccader_jax.representation_cache`).
  """
  build: Callable[[ml_collections.ConfigDict], tfds.core.DatasetBuilder]
  preprocess: Callable[..., dict]
  skip_decoding: bool = False
  config_keys: tuple[str, ...] = ()
  eval_image: Optional[Callable[..., tf.Tensor]] = None
  class_names: Optional[Callable[[ml_collections.ConfigDict],
                                 Sequence[str]]] = None
  config_problems: Optional[Callable[[ml_collections.ConfigDict],
                                     list[str]]] = None
  num_classes: Optional[Callable[[ml_collections.ConfigDict], int]] = None
  read_keys: Optional[Callable[[ml_collections.ConfigDict],
                               Sequence[str]]] = None
  deterministic_train: bool = False


def normalize(image: tf.Tensor, config: ml_collections.ConfigDict):
  """uint8-range pixels -> (x / 255 - config.mean) / config.std, float32."""
  mean = tf.constant(config.mean, tf.float32)
  std = tf.constant(config.std, tf.float32)
  return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Pixels in [0, 255] -> uint8, rounded to the nearest level (a quarter of
  the bytes of float32; what crosses to the devices)."""
  if image.dtype == tf.uint8:
    return image
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def normalizes_on_device(config: ml_collections.ConfigDict) -> bool:
  """Whether config.dataset's images cross to the devices as uint8 pixels
  and are normalised there (normalize_on_device, default True)."""
  return bool(config.get("normalize_on_device", True))


def finish(example: dict, config: ml_collections.ConfigDict,
           pixels: bool) -> dict:
  """A preprocessed example as the pipeline yields it: its "image" uint8
  pixels (pixels=True, normalised on the devices by `normalize_on_device`)
  or normalised float32."""
  image = to_uint8(example["image"]) if pixels else normalize(
      example["image"], config)
  return dict(example, image=image)


def normalize_on_device(pixels, mean: Sequence[float], std: Sequence[float]):
  """uint8 pixels [..., C] (a jax.Array) -> float32 normalised as
  `normalize` does on the host: (x / 255 - mean) / std."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (pixels.astype(jnp.float32) / 255.0 - mean) / std


def data_dir(config: ml_collections.ConfigDict) -> Optional[epath.Path]:
  """config.data_dir as an absolute path (~ expanded), or None for TFDS's
  default."""
  path = config.get("data_dir")
  return paths.absolute_path(path) if path else None
