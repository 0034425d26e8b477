"""Any TFDS image classification data set, by name, already prepared.

    config.dataset.name = "tfds"
    config.dataset.tfds_name = "oxford_flowers102"     # or "name/config:1.2.0"
    config.dataset.data_dir = "~/tensorflow_datasets"  # where it is prepared
    config.dataset.image_key, label_key = "image", "label"
    config.dataset.train_split = "train[:90%]"         # TFDS split strings

The data set must be prepared in data_dir as array_record files (the input
pipeline reads examples by index); nothing is downloaded at run time. Once,
where the network is: `tfds build NAME --data_dir=DIR
--file_format=array_record` (a copy prepared as TFRecord converts in place
with `tfds convert_format`). Only the image and label features are read;
images decode as `num_channels` channels (greyscale and colour alike), and
are preprocessed as a folder's are (`image_folder.py`: Inception crop or
resize). Class names come from the label feature.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax import errors
from saccader_jax.data import common
from saccader_jax.data import image_folder


def build(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared builder of config.tfds_name in config.data_dir, or a
  DataError saying why there is none (nothing is downloaded)."""
  name = config.get("tfds_name")
  if not name:
    raise errors.DataError("config.dataset.tfds_name is not set: give the "
                           "TFDS name of a prepared data set, e.g. "
                           "--config.dataset.tfds_name=oxford_flowers102.")
  data_dir = common.data_dir(config)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.DataError(f"config.dataset.tfds_name={name!r}: TFDS has no "
                           f"such data set ({type(e).__name__}).") from e
  if not builder.is_prepared():
    raise errors.DataError(
        f"{name} is not prepared in {builder.data_dir_root}: prepare it once "
        f"where the network is (`tfds build {name} --data_dir="
        f"{builder.data_dir_root} --file_format=array_record`), or set "
        "config.dataset.data_dir to where it is; nothing is downloaded at "
        "run time.")
  return builder


def _keys(config) -> tuple[str, str]:
  return config.get("image_key", "image"), config.get("label_key", "label")


def preprocess(example, config, train):
  image_key, label_key = _keys(config)
  renamed = {"image": example[image_key], "label": example[label_key]}
  if "seed" in example:
    renamed["seed"] = example["seed"]
  return image_folder.preprocess(renamed, config, train)


def class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(build(config).info.features[_keys(config)[1]].names)


def num_classes(config: ml_collections.ConfigDict) -> int:
  return build(config).info.features[_keys(config)[1]].num_classes


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
  """The name, the features and the splits, read from the prepared data's
  metadata."""
  problems = []
  value = config.get("preprocessing")
  if value not in image_folder.PREPROCESSING:
    problems.append(f"config.dataset.preprocessing={value!r}: must be one of "
                    f"{list(image_folder.PREPROCESSING)}.")
  try:
    builder = build(config)
  except errors.DataError as e:
    return problems + [str(e)]
  features = builder.info.features
  image_key, label_key = _keys(config)
  image = features[image_key] if image_key in features.keys() else None
  encoded = isinstance(image, tfds.features.Tensor) and image.dtype in (
      tf.string, object)
  if not (isinstance(image, tfds.features.Image) or encoded):
    problems.append(f"config.dataset.image_key={image_key!r}: "
                    f"{config.tfds_name} has no image feature of that name; "
                    f"its features: {sorted(features.keys())}.")
  label = features[label_key] if label_key in features.keys() else None
  if not isinstance(label, tfds.features.ClassLabel):
    problems.append(f"config.dataset.label_key={label_key!r}: "
                    f"{config.tfds_name} has no class label of that name; "
                    f"its features: {sorted(features.keys())}.")
  for field in ("train_split", "dev_split", "test_split"):
    split = config.get(field)
    try:
      builder.info.splits[split]
    except Exception:  # pylint: disable=broad-except
      problems.append(f"config.dataset.{field}={split!r}: not a split of "
                      f"{config.tfds_name}; its splits: "
                      f"{sorted(builder.info.splits.keys())} (slices such "
                      "as 'train[:90%]' allowed).")
  return problems


def eval_image(image, config):
  return image_folder.eval_image(tf.convert_to_tensor(image), config)


SPEC = common.DatasetSpec(
    build, preprocess, skip_decoding=True,
    config_keys=("tfds_name", "image_key", "label_key", "preprocessing"),
    eval_image=eval_image, class_names=class_names,
    config_problems=config_problems, num_classes=num_classes,
    read_keys=_keys)
