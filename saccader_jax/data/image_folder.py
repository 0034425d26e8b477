"""A folder of images, one subfolder per class: Saccader on anyone's images.

config.dataset.path is either
  - a folder with train/ and test/ (and optionally dev/), each holding one
    folder per class (the layout of torchvision's and TFDS's ImageFolder);
    without dev/, dev is carved from train;
  - or the class folders themselves: dev and test are carved from them.
Carving draws a seeded permutation of the files (dataset.split_seed) and
takes test_fraction of them for test, dev_fraction for dev, the rest for
train; the numbers go into the prepared data's name, so another choice
prepares another copy. Classes are the class folders' names, sorted (the
label of a class is its index).

Files: JPEG and PNG (by extension, any case), RGB or greyscale, any sizes.
The first run prepares the folder as TFDS array_record files under
dataset.data_dir (each file's bytes as they are, checked to decode once): a
file that does not decode is skipped and counted in the log, or with
on_corrupt="error" stops the job naming it; a greyscale file in an RGB set
(or the reverse) stops the job naming it unless mixed_channels="convert"
(then it is converted when read). Later runs read the prepared copy.

Preprocessing (dataset.preprocessing): "inception_crop", ImageNet's random
crop (8-100 % of the area) and flip for training, its central crop for
evaluation (`imagenet.py`); or "resize", the whole image resized to
image_size for both. `python -m saccader_jax.data.statistics` measures the
normalisation's mean and std on the train split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Optional

from absl import logging
from etils import epath
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax import errors
from saccader_jax.data import common
from saccader_jax.data import imagenet

EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "dev", "test")
PREPROCESSING = ("inception_crop", "resize")
ON_CORRUPT = ("skip", "error")
MIXED_CHANNELS = ("error", "convert")


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each split's files are: {split: [(path, class name), ...]}."""
  root: str
  classes: tuple[str, ...]
  files: dict[str, list[tuple[str, str]]]


def _images_in(folder: str) -> list[str]:
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.lower().endswith(EXTENSIONS)
                and os.path.isfile(os.path.join(folder, f)))


def _class_folders(folder: str) -> list[str]:
  return sorted(d for d in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, d))
                and not d.startswith("."))


def _by_class(folder: str) -> dict[str, list[str]]:
  return {name: _images_in(os.path.join(folder, name))
          for name in _class_folders(folder)}


def find_layout(config: ml_collections.ConfigDict) -> Layout:
  """The files of each split, or a DataError saying what is wrong."""
  path = config.get("path")
  if not path:
    raise errors.DataError("config.dataset.path is not set: give the folder "
                           "of class folders (or of train/ and test/), e.g. "
                           "--config.dataset.path=~/photos.")
  root = os.fspath(common.data_dir(ml_collections.ConfigDict(
      {"data_dir": path})))
  if not os.path.isdir(root):
    raise errors.DataError(f"config.dataset.path {root!r} is not a folder.")
  if os.path.isdir(os.path.join(root, "train")):
    split_folders = {s: os.path.join(root, s) for s in SPLITS
                     if os.path.isdir(os.path.join(root, s))}
    if "test" not in split_folders:
      raise errors.DataError(f"{root} has train/ but no test/: give both "
                             "(dev/ is optional), or point "
                             "config.dataset.path at the class folders.")
    found = {s: _by_class(f) for s, f in split_folders.items()}
  else:
    found = {"all": _by_class(root)}
  classes = tuple(sorted(set().union(*found.values())))
  if not classes:
    raise errors.DataError(f"{root} holds no class folder: put each class's "
                           "images in a folder of its own (ROOT/<class>/*.jpg, "
                           "or ROOT/train/<class>/... and ROOT/test/...).")
  for split, by_class in found.items():
    where = root if split == "all" else os.path.join(root, split)
    for name in classes:
      if not by_class.get(name):
        raise errors.DataError(
            f"{os.path.join(where, name)} holds no JPEG or PNG file: every "
            "class needs images in every split folder (remove the folder, or "
            "add images).")
  files = {split: [(f, name) for name, paths in sorted(by_class.items())
                   for f in paths] for split, by_class in found.items()}
  if "all" in files:
    files = _carve(files.pop("all"), config, ("test", "dev"))
  elif "dev" not in files:
    files.update(_carve(files.pop("train"), config, ("dev",)))
  return Layout(root, classes, files)


def _carve(files, config, carved: tuple[str, ...]):
  """Seeded fractions of files for the carved splits; the rest is train."""
  order = np.random.default_rng(config.get("split_seed", 0)).permutation(
      len(files))
  out, start = {}, 0
  for split in carved:
    count = max(1, round(config.get(f"{split}_fraction", 0.1) * len(files)))
    out[split] = sorted(files[i] for i in order[start:start + count])
    start += count
  out["train"] = sorted(files[i] for i in order[start:])
  if not out["train"]:
    raise errors.DataError(
        f"{len(files)} images leave none for train after "
        f"{', '.join(carved)}; add images or lower the fractions.")
  return out


class FolderConfig(tfds.core.BuilderConfig):
  """A folder and how it is read."""

  def __init__(self, *, layout: Layout, num_channels: int, on_corrupt: str,
               mixed_channels: str, **kwargs):
    super().__init__(**kwargs)
    self.layout = layout
    self.num_channels = num_channels
    self.on_corrupt = on_corrupt
    self.mixed_channels = mixed_channels


class ImageFolder(tfds.core.GeneratorBasedBuilder):
  """The images of a folder, their file bytes as they are; splits train,
  dev, test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "array_record files of a folder's images."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "label": tfds.features.ClassLabel(
                names=list(self.builder_config.layout.classes)),
            "file": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split)
            for split in self.builder_config.layout.files}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    skipped, kept = [], {}
    for path, name in cfg.layout.files[split]:
      data = epath.Path(path).read_bytes()
      channels = _channels(data)
      if channels is None:
        if cfg.on_corrupt == "error":
          raise errors.DataError(
              f"{path} is not a readable JPEG or PNG: remove or replace it, "
              "or set config.dataset.on_corrupt='skip' to leave such files "
              "out.")
        skipped.append(path)
        continue
      grey = channels in (1, 2)
      if grey != (cfg.num_channels == 1) and cfg.mixed_channels == "error":
        kind = "greyscale" if grey else "colour"
        raise errors.DataError(
            f"{path} is {kind} in a data set of {cfg.num_channels}-channel "
            "images: convert it, or set config.dataset.mixed_channels="
            "'convert' to convert such files when they are read.")
      kept[name] = kept.get(name, 0) + 1
      yield path, {"image": data, "label": name, "file": path}
    # A class carved out of a small split may have no file there; one whose
    # files all failed has none to read.
    empty = sorted({name for _, name in cfg.layout.files[split]} - set(kept))
    if empty:
      folder = os.path.dirname(next(p for p, n in cfg.layout.files[split]
                                    if n == empty[0]))
      raise errors.DataError(
          f"{folder} holds no readable image for the {split} split (its "
          "files do not decode): replace them, or remove the class.")
    if skipped:
      logging.warning("%s: skipped %d file(s) that do not decode, e.g. %s.",
                      split, len(skipped), skipped[0])


def _channels(data: bytes) -> Optional[int]:
  """The channels of an encoded image, or None if it does not decode."""
  try:
    image = tf.io.decode_image(data, expand_animations=False)
    return int(image.shape[-1])
  except (tf.errors.InvalidArgumentError, ValueError):
    return None


def _settings_name(config, layout: Layout) -> str:
  """The prepared copy's name: the folder and every setting that changes
  what is prepared."""
  key = repr((layout.root, config.get("split_seed", 0),
              config.get("dev_fraction", 0.1),
              config.get("test_fraction", 0.1), config.num_channels,
              config.get("on_corrupt", "skip"),
              config.get("mixed_channels", "error"),
              {s: len(f) for s, f in sorted(layout.files.items())}))
  base = "".join(c if c.isalnum() else "_"
                 for c in os.path.basename(layout.root.rstrip("/")))[:40]
  return f"{base or 'folder'}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def build(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The folder prepared as array_record files (once; later calls reuse
  them)."""
  layout = find_layout(config)
  builder = ImageFolder(
      config=FolderConfig(
          name=_settings_name(config, layout), layout=layout,
          num_channels=config.num_channels,
          on_corrupt=config.get("on_corrupt", "skip"),
          mixed_channels=config.get("mixed_channels", "error")),
      data_dir=common.data_dir(config), file_format="array_record")
  builder.download_and_prepare()
  return builder


def _decode(example, config):
  image = tf.io.decode_image(example["image"], channels=config.num_channels,
                             expand_animations=False)
  image.set_shape([None, None, config.num_channels])
  return image


def eval_image(image, config):
  """A decoded [H, W, C] uint8 image -> [image_size, image_size, C] pixels,
  as evaluation preprocesses it."""
  if config.get("preprocessing", "inception_crop") == "inception_crop":
    return imagenet.eval_image(image, config)
  return tf.image.resize(tf.cast(image, tf.float32),
                         [config.image_size] * 2, method="bilinear")


def preprocess(example, config, train):
  image = _decode(example, config)
  label = tf.cast(example["label"], tf.int32)
  if train and config.get("preprocessing",
                          "inception_crop") == "inception_crop":
    seed = example["seed"]
    image = imagenet.inception_crop_image(image, config.image_size, seed)
    image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    return {"image": tf.clip_by_value(image, 0.0, 255.0), "label": label}
  return {"image": eval_image(image, config), "label": label}


def class_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return find_layout(config).classes


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
  """The folder's layout, checked before anything is written (reading the
  folder listing only)."""
  problems = []
  for field, valid in (("preprocessing", PREPROCESSING),
                       ("on_corrupt", ON_CORRUPT),
                       ("mixed_channels", MIXED_CHANNELS)):
    value = config.get(field)
    if value not in valid:
      problems.append(f"config.dataset.{field}={value!r}: must be one of "
                      f"{list(valid)}.")
  for field in ("train_split", "dev_split", "test_split"):
    split = str(config.get(field)).split("[")[0]
    if split not in SPLITS:
      problems.append(f"config.dataset.{field}={config.get(field)!r}: the "
                      f"split does not exist; a folder's splits are "
                      f"{list(SPLITS)}.")
  try:
    find_layout(config)
  except errors.DataError as e:
    problems.append(str(e))
  return problems


def num_classes(config: ml_collections.ConfigDict) -> int:
  return len(find_layout(config).classes)


SPEC = common.DatasetSpec(
    build, preprocess, skip_decoding=True,
    config_keys=("path", "split_seed", "dev_fraction", "test_fraction",
                 "preprocessing", "on_corrupt", "mixed_channels"),
    eval_image=eval_image, class_names=class_names,
    config_problems=config_problems, num_classes=num_classes)
