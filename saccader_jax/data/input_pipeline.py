"""tf.data input pipelines from TFDS, one host's share of each global batch.

Each dataset is registered by the name in `config.dataset.name` with how to
build it and how to preprocess its examples. Batches are NumPy dicts:
  image [local_batch, height, width, channels] float32,
  label [local_batch] int32,
  mask  [local_batch] float32 (eval only: 0 marks padding).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterator, Optional

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax.data import cluttered_fashion_mnist

Batch = dict[str, np.ndarray]


def _normalize(image: tf.Tensor, config: ml_collections.ConfigDict):
  mean = tf.constant(config.mean, tf.float32)
  std = tf.constant(config.std, tf.float32)
  return (tf.cast(image, tf.float32) / 255.0 - mean) / std


# Cluttered Fashion-MNIST: the canvases are already translated and cluttered;
# no further augmentation.


def _cluttered_builder(config: ml_collections.ConfigDict):
  return cluttered_fashion_mnist.build(
      os.path.expanduser(config.data_dir), config.get("source_dir"),
      canvas_size=config.image_size, num_clutter=config.num_clutter,
      clutter_size=config.clutter_size, dev_size=config.dev_size,
      seed=config.seed)


def _cluttered_preprocess(example, config, train):
  del train
  return {"image": _normalize(example["image"], config),
          "label": tf.cast(example["label"], tf.int32)}


# ImageNet (imagenet2012, manual download): Inception-style crops for training,
# a central crop for evaluation.


def _imagenet_builder(config: ml_collections.ConfigDict):
  data_dir = config.get("data_dir")
  builder = tfds.builder("imagenet2012", data_dir=data_dir and
                         os.path.expanduser(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=config.get("source_dir")))
  return builder


def _decode_crop_resize(image_bytes, window, size):
  """Decodes only the [y, x, height, width] window and resizes it."""
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return tf.image.resize(image, [size, size], method="bicubic")


def _inception_crop(image_bytes, size, seed):
  shape = tf.image.extract_jpeg_shape(image_bytes)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
  return _decode_crop_resize(image_bytes, window, size)


def _central_crop(image_bytes, size, crop_padding=32):
  shape = tf.image.extract_jpeg_shape(image_bytes)
  height, width = shape[0], shape[1]
  side = tf.cast(size / (size + crop_padding) *
                 tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
  side = tf.maximum(side, 1)
  window = tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side,
                     side])
  return _decode_crop_resize(image_bytes, window, size)


def _imagenet_preprocess(example, config, train):
  if train:
    seed = example["seed"]
    image = _inception_crop(example["image"], config.image_size, seed)
    image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
  else:
    image = _central_crop(example["image"], config.image_size)
  image = tf.clip_by_value(image, 0.0, 255.0)
  # The TF-slim label set puts a background class at 0.
  label = tf.cast(example["label"], tf.int32) + config.get("label_offset", 0)
  return {"image": _normalize(image, config), "label": label}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  build: Callable[[ml_collections.ConfigDict], tfds.core.DatasetBuilder]
  preprocess: Callable[..., dict]
  # Images arrive encoded and are decoded by `preprocess` (crop first).
  skip_decoding: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "cluttered_fashion_mnist": DatasetSpec(_cluttered_builder,
                                           _cluttered_preprocess),
    "imagenet2012": DatasetSpec(_imagenet_builder, _imagenet_preprocess,
                                skip_decoding=True),
}


def _spec(config: ml_collections.ConfigDict) -> DatasetSpec:
  if config.name not in DATASETS:
    raise ValueError(f"Unknown dataset {config.name!r}; valid: "
                     f"{sorted(DATASETS)}.")
  return DATASETS[config.name]


def get_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of config.dataset (prepares it if needed)."""
  return _spec(config).build(config)


def local_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise ValueError(f"Global batch size {global_batch_size} is not divisible "
                     f"by the {jax.process_count()} processes.")
  return global_batch_size // jax.process_count()


def _thread_options(config: ml_collections.ConfigDict) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  # tf.data and XLA share the host's cores; bound tf.data's share.
  if config.get("num_threads"):
    options.threading.private_threadpool_size = config.num_threads
    options.threading.max_intra_op_parallelism = 1
  return options


def _read(builder, split: str, spec: DatasetSpec, shuffle_seed=None):
  decoders = ({"image": tfds.decode.SkipDecoding()} if spec.skip_decoding
              else None)
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed)
  return builder.as_dataset(split=split, decoders=decoders,
                            shuffle_files=shuffle_seed is not None,
                            read_config=read_config)


def train_batches(config: ml_collections.ConfigDict,
                  builder: tfds.core.DatasetBuilder, global_batch_size: int,
                  seed: int, start_step: int = 0) -> Iterator[Batch]:
  """An endless iterator over this host's share of the training batches.

  The sequence is a function of (seed, process index): a job that restarts at
  start_step sees the batches an uninterrupted job would have seen.
  """
  spec = _spec(config)
  split = tfds.split_for_jax_process(config.train_split)
  seed = seed + 1000 * jax.process_index()
  ds = _read(builder, split, spec, shuffle_seed=seed)
  if config.get("cache", False):
    ds = ds.cache()
  ds = ds.repeat().shuffle(config.shuffle_buffer, seed=seed)
  # One independent augmentation seed per example, as a function of its
  # position in the stream.
  ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
  # Resuming skips the consumed examples before they are decoded or
  # augmented: batches are fixed-size, so this equals skipping batches.
  local_batch = local_batch_size(global_batch_size)
  ds = ds.skip(start_step * local_batch)
  ds = ds.map(lambda ex, s: spec.preprocess(
      dict(ex, seed=tf.cast(s, tf.int32)), config, train=True),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True)
  ds = ds.prefetch(config.get("prefetch", 2))
  return iter(tfds.as_numpy(ds.with_options(_thread_options(config))))


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Examples in a split (or split spec such as "train[:50000]")."""
  return builder.info.splits[split].num_examples


def eval_batches(config: ml_collections.ConfigDict,
                 builder: tfds.core.DatasetBuilder, split: str,
                 global_batch_size: int,
                 max_examples: Optional[int] = None) -> Iterator[Batch]:
  """This host's share of a split, once, in fixed-size padded batches.

  Every host yields the same number of batches (padding with mask 0), so
  that the collective eval step runs in lockstep; with several hosts this
  needs the split sizes from the dataset info.
  """
  spec = _spec(config)
  local = local_batch_size(global_batch_size)
  # max_examples caps the split (a spec such as "train[:50000]" included);
  # each host reads its share of the cap.
  host_limit = (math.ceil(max_examples / jax.process_count())
                if max_examples else None)
  host_splits = [tfds.split_for_jax_process(split, process_index=i,
                                            process_count=jax.process_count(),
                                            drop_remainder=False)
                 for i in range(jax.process_count())]
  num_batches = None  # one host: until the data runs out
  if jax.process_count() > 1:
    largest = max(num_examples(builder, s) for s in host_splits)
    num_batches = math.ceil(min(largest, host_limit or largest) / local)
  ds = _read(builder, host_splits[jax.process_index()], spec)
  if host_limit:
    ds = ds.take(host_limit)
  ds = ds.map(lambda ex: spec.preprocess(ex, config, train=False),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local).prefetch(config.get("prefetch", 2))
  iterator = iter(tfds.as_numpy(ds.with_options(_thread_options(config))))
  template = None
  index = 0
  while num_batches is None or index < num_batches:
    batch = next(iterator, None)
    if batch is None:
      if num_batches is None or template is None:
        return
      batch = jax.tree_util.tree_map(lambda x: x[:0], template)
    template = batch
    index += 1
    yield pad_batch(batch, local)


def pad_batch(batch: Batch, size: int) -> Batch:
  """Pads a short batch to `size` with zeros and adds its mask."""
  count = len(batch["label"])
  padded = {k: np.concatenate(
      [v, np.zeros((size - count,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}
  padded["mask"] = (np.arange(size) < count).astype(np.float32)
  return padded
