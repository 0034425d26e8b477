"""What every data set defines, and the preprocessing they share."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from etils import epath
import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds


# The keys of config.dataset every data set has.
DATASET_KEYS = ("name", "data_dir", "source_dir", "image_size",
                "num_channels", "mean", "std", "train_split", "dev_split",
                "test_split", "cache", "prefetch", "num_threads")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to build a data set and preprocess one example.

  Attributes:
    build: config.dataset -> the prepared TFDS builder.
    preprocess: (example, config.dataset, train) -> {"image" float32
      [H, W, C] normalised, "label" int32}; a train example carries "seed"
      ([2] int64) for its augmentation.
    skip_decoding: images arrive encoded and `preprocess` decodes them
      (so that it can crop first).
    config_keys: the keys of config.dataset this data set reads beyond
      DATASET_KEYS, which every data set has.
  """
  build: Callable[[ml_collections.ConfigDict], tfds.core.DatasetBuilder]
  preprocess: Callable[..., dict]
  skip_decoding: bool = False
  config_keys: tuple[str, ...] = ()


def normalize(image: tf.Tensor, config: ml_collections.ConfigDict):
  """uint8-range pixels -> (x / 255 - config.mean) / config.std, float32."""
  mean = tf.constant(config.mean, tf.float32)
  std = tf.constant(config.std, tf.float32)
  return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def data_dir(config: ml_collections.ConfigDict) -> Optional[epath.Path]:
  """config.data_dir as a path (~ expanded), or None for TFDS's default."""
  path = config.get("data_dir")
  return epath.Path(path).expanduser() if path else None
