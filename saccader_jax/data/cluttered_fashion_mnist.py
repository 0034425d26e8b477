"""Cluttered, translated Fashion-MNIST as a TFDS dataset.

The classic hard-attention setting (Mnih et al., 2014; Ba et al., 2014), with
Fashion-MNIST items: each 28x28 item (or the item upscaled, `item_size`) is
placed at a random position on a larger black canvas strewn with fragments
cut from other items. Only a small part of the canvas tells the class, so
where the model looks matters.

Everything is a deterministic function of the Fashion-MNIST IDX files and a
seed. The files are read from a directory (Debian: `apt-get install
dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist) and,
failing that, downloaded from the official site.
"""

from __future__ import annotations

import dataclasses
import gzip

from etils import epath
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax.data import common

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot")
ITEM_SIZE = 28
INSTALL_HINT = (
    "Fashion-MNIST IDX files not found in {dir!r} and not downloadable. On "
    "Debian/Ubuntu: `apt-get install -y dataset-fashion-mnist` (files in "
    f"{DEBIAN_DIR}); or put {sorted(FILES.values())} in a directory and set "
    "config.dataset.source_dir to it.")


def read_idx(path: epath.PathLike) -> np.ndarray:
  """Reads a (gzipped) IDX file of unsigned bytes into an array."""
  data = epath.Path(path).read_bytes()
  if str(path).endswith(".gz"):
    data = gzip.decompress(data)
  if data[:2] != b"\x00\x00" or data[2] != 0x08:
    raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
  num_dims = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
                for i in range(num_dims))
  offset = 4 + 4 * num_dims
  array = np.frombuffer(data, np.uint8, offset=offset)
  if array.size != int(np.prod(shape)):
    raise ValueError(f"{path}: header says {shape}, found {array.size} bytes.")
  return array.reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array as a gzipped IDX file (for tests and tools)."""
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  epath.Path(path).write_bytes(gzip.compress(
      header + np.ascontiguousarray(array, np.uint8).tobytes()))


def find_source_files(
    source_dir: epath.PathLike | None) -> dict[str, epath.Path] | None:
  """Paths of the four IDX files in source_dir (or Debian's), or None."""
  for directory in (source_dir, DEBIAN_DIR):
    if directory and all((epath.Path(directory) / f).exists()
                         for f in FILES.values()):
      return {k: epath.Path(directory) / f for k, f in FILES.items()}
  return None


def upscale_items(items: np.ndarray, item_size: int) -> np.ndarray:
  """[N, 28, 28] uint8 items -> [N, item_size, item_size] uint8, bilinear
  (half-pixel centres), rounded; item_size == 28 returns the items."""
  if item_size == items.shape[1]:
    return items
  if item_size < items.shape[1]:
    raise ValueError(f"item_size must be at least {items.shape[1]}; "
                     f"got {item_size}.")
  resized = tf.image.resize(tf.constant(items[..., None], tf.float32),
                            [item_size, item_size], method="bilinear")
  return np.clip(np.round(resized.numpy()[..., 0]), 0, 255).astype(np.uint8)


def clutter_canvases(items: np.ndarray, seed: int, canvas_size: int,
                     num_clutter: int, clutter_size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Places each item on a cluttered canvas.

  Args:
    items: [N, s, s] uint8 items (s = 28, or larger once upscaled).
    seed: the canvases are a function of (items, seed, sizes) only.
    canvas_size: side of the square canvas (> s).
    num_clutter: fragments per canvas, each cut from another random item.
    clutter_size: side of each square fragment (<= s).

  Returns:
    canvases [N, canvas_size, canvas_size] uint8, and the items' top-left
    corners [N, 2] int32 (row, col).
  """
  item_size = items.shape[1]
  if not item_size < canvas_size:
    raise ValueError(f"canvas_size must exceed the item size {item_size}; "
                     f"got {canvas_size}.")
  if not 0 < clutter_size <= item_size:
    raise ValueError(f"clutter_size must be in [1, {item_size}]; "
                     f"got {clutter_size}.")
  rng = np.random.default_rng(seed)
  n = len(items)
  positions = rng.integers(0, canvas_size - item_size + 1, size=(n, 2))
  sources = rng.integers(0, n, size=(n, num_clutter))
  crops = rng.integers(0, item_size - clutter_size + 1, size=(n, num_clutter, 2))
  places = rng.integers(0, canvas_size - clutter_size + 1,
                        size=(n, num_clutter, 2))
  canvases = np.zeros((n, canvas_size, canvas_size), np.uint8)
  for i in range(n):
    canvas = canvases[i]
    for k in range(num_clutter):
      (cy, cx), (py, px) = crops[i, k], places[i, k]
      fragment = items[sources[i, k], cy:cy + clutter_size,
                       cx:cx + clutter_size]
      region = canvas[py:py + clutter_size, px:px + clutter_size]
      np.maximum(region, fragment, out=region)
    y, x = positions[i]
    region = canvas[y:y + item_size, x:x + item_size]
    np.maximum(region, items[i], out=region)
  return canvases, positions.astype(np.int32)


@dataclasses.dataclass
class ClutteredConfig(tfds.core.BuilderConfig):
  """Canvas, item and clutter settings; the name encodes them all."""
  canvas_size: int = 64
  num_clutter: int = 6
  clutter_size: int = 9
  dev_size: int = 5000
  seed: int = 0
  item_size: int = ITEM_SIZE


def make_builder_config(canvas_size: int = 64, num_clutter: int = 6,
                        clutter_size: int = 9, dev_size: int = 5000,
                        seed: int = 0,
                        item_size: int = ITEM_SIZE) -> ClutteredConfig:
  # Items at their own 28 px keep the name (and the data) they always had.
  item = "" if item_size == ITEM_SIZE else f"item{item_size}_"
  name = (f"canvas{canvas_size}_{item}clutter{num_clutter}x{clutter_size}_"
          f"dev{dev_size}_seed{seed}")
  return ClutteredConfig(name=name, canvas_size=canvas_size,
                         num_clutter=num_clutter, clutter_size=clutter_size,
                         dev_size=dev_size, seed=seed, item_size=item_size)


class ClutteredFashionMnist(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST items on cluttered canvases; splits train/dev/test.

  dev is carved from the official training set (a seeded random subset of
  dev_size items); test is the official test set.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "TFRecord files.",
      "1.1.0": "array_record files, for reading examples by index; "
               "item_size (upscaled items) in the config.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Optional: a directory holding the four Fashion-MNIST IDX files "
      f"{sorted(FILES.values())}; {DEBIAN_DIR} is searched too.")
  BUILDER_CONFIGS = [
      make_builder_config(),
      # configs/fashion_mnist_parts_saccader.py: items larger than a glimpse.
      make_builder_config(item_size=44, clutter_size=14),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.canvas_size
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 1)),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "item_position": tfds.features.Tensor(shape=(2,), dtype=np.int32),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist")

  def _source_files(self, dl_manager) -> dict[str, epath.Path]:
    manual_dir = None
    try:
      manual_dir = dl_manager.manual_dir
    except (AssertionError, ValueError):  # none given, or it does not exist
      pass
    files = find_source_files(manual_dir)
    if files is not None:
      return files
    try:
      downloaded = dl_manager.download(
          {k: OFFICIAL_URL + f for k, f in FILES.items()})
    except Exception as e:  # no network, or the site is unreachable
      raise FileNotFoundError(INSTALL_HINT.format(dir=manual_dir)) from e
    return {k: epath.Path(v) for k, v in downloaded.items()}

  def _split_generators(self, dl_manager):
    files = self._source_files(dl_manager)
    cfg = self.builder_config
    train_items = read_idx(files["train_images"])
    train_labels = read_idx(files["train_labels"])
    if not 0 < cfg.dev_size < len(train_items):
      raise ValueError(f"dev_size must be in [1, {len(train_items) - 1}]; "
                       f"got {cfg.dev_size}.")
    order = np.random.default_rng(cfg.seed).permutation(len(train_items))
    dev, train = np.sort(order[:cfg.dev_size]), np.sort(order[cfg.dev_size:])
    test_items = read_idx(files["test_images"])
    test_labels = read_idx(files["test_labels"])
    # Each split gets its own seed so that growing one leaves the others.
    return {
        "train": self._generate_examples(train_items[train],
                                         train_labels[train], cfg.seed + 1),
        "dev": self._generate_examples(train_items[dev], train_labels[dev],
                                       cfg.seed + 2),
        "test": self._generate_examples(test_items, test_labels,
                                        cfg.seed + 3),
    }

  def _generate_examples(self, items, labels, seed):
    cfg = self.builder_config
    items = upscale_items(items, cfg.item_size)
    canvases, positions = clutter_canvases(items, seed, cfg.canvas_size,
                                           cfg.num_clutter, cfg.clutter_size)
    for i, (canvas, label, position) in enumerate(
        zip(canvases, labels, positions)):
      yield i, {"image": canvas[..., None], "label": int(label),
                "item_position": position}


def build(data_dir: epath.PathLike, source_dir: epath.PathLike | None = None,
          **config_fields) -> ClutteredFashionMnist:
  """Generates the dataset into data_dir once, as array_record files (random
  access); later calls reuse it."""
  config = make_builder_config(**config_fields)
  predefined = {c.name: c for c in ClutteredFashionMnist.BUILDER_CONFIGS}
  # TFDS takes a predefined config by name and refuses an equal copy of it.
  builder = ClutteredFashionMnist(
      config=config.name if config == predefined.get(config.name) else config,
      data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=source_dir, try_download_gcs=False))
  return builder


# The input pipeline's view of the data set: the canvases are already
# translated and cluttered, so there is no further augmentation.


def canvas_size(config) -> int:
  """The generated canvases' side: config.canvas_size if set, else
  config.image_size (the side the model reads)."""
  return config.get("canvas_size") or config.image_size


def build_from_config(config) -> tfds.core.DatasetBuilder:
  """The prepared builder of config.dataset (generated on first use)."""
  return build(common.data_dir(config), config.get("source_dir"),
               canvas_size=canvas_size(config),
               num_clutter=config.num_clutter,
               clutter_size=config.clutter_size, dev_size=config.dev_size,
               seed=config.seed, item_size=config.get("item_size", ITEM_SIZE))


def preprocess(example, config, train):
  """Decodes a canvas; an image_size other than the canvas's resizes it
  (bilinear: e.g. the 2x canvas of the high-resolution classifier)."""
  del train
  image = tf.io.decode_png(example["image"], channels=config.num_channels)
  size = canvas_size(config)
  image.set_shape([size, size, config.num_channels])
  return {"image": eval_image(image, config),
          "label": tf.cast(example["label"], tf.int32)}


def eval_image(image, config):
  """A decoded [H, W, C] uint8 canvas -> [image_size, image_size, C] pixels
  (resized bilinearly if its side is not image_size)."""
  if image.shape[0] != config.image_size or image.shape[1] != config.image_size:
    image = tf.image.resize(tf.cast(image, tf.float32),
                            [config.image_size, config.image_size],
                            method="bilinear")
  return image


SPEC = common.DatasetSpec(
    build_from_config, preprocess, skip_decoding=True,
    config_keys=("seed", "num_clutter", "clutter_size", "item_size",
                 "dev_size", "canvas_size"),
    eval_image=eval_image, class_names=lambda config: CLASS_NAMES,
    deterministic_train=True)
