"""Images per second that the input pipeline feeds from a folder, per core.

    python -m experiments.benchmark_input [--path=~/photos] [--image_size=224]

Without --path, writes a folder of synthetic photographs first (smooth
random colour fields, 500x375 JPEGs at quality 90, the size of a typical
ImageNet image, 3 classes). Reads the train split through
`input_pipeline.train_batches` of configs/image_folder_saccader.py with
tf.data held to --threads threads, and prints a Markdown table of
images/s for each preprocessing (the first batches, the warm-up, not
counted), so that one can tell how many cores a step needs to be fed.
"""

from __future__ import annotations

import os
import time

from absl import app
from absl import flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("path", None, "A folder of class folders (default: "
                    "synthetic photographs written under --workdir).")
flags.DEFINE_string("workdir", "/tmp/benchmark_input", "Scratch folder.")
flags.DEFINE_integer("image_size", 224, "The side the model reads.")
flags.DEFINE_integer("threads", 1, "tf.data's threads (cores used).")
flags.DEFINE_integer("batch", 64, "Images per batch.")
flags.DEFINE_integer("batches", 20, "Timed batches per row.")
flags.DEFINE_integer("num_images", 600, "Synthetic photographs written.")


def write_photographs(root: str, count: int) -> str:
  """count 500x375 JPEGs of smooth random colour fields, in 3 classes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for i in range(count):
    folder = os.path.join(root, f"class_{i % 3}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{i}.jpg")
    if os.path.exists(path):
      continue
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
    image = tf.image.resize(coarse[None], (375, 500), method="bicubic")[0]
    image += rng.normal(0, 12, image.shape)
    data = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255),
                                     tf.uint8), quality=90)
    with open(path, "wb") as f:
      f.write(data.numpy())
  return root


def images_per_second(config, builder) -> float:
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  batches = input_pipeline.train_batches(config.dataset, builder,
                                         FLAGS.batch, seed=0)
  for _ in range(3):
    next(batches)
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    next(batches)
  return FLAGS.batches * FLAGS.batch / (time.perf_counter() - start)


def main(argv):
  del argv
  from configs import image_folder_saccader  # pylint: disable=g-import-not-at-top
  from experiments import timing  # pylint: disable=g-import-not-at-top
  from saccader_jax import library_setup  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  library_setup.hide_accelerators_from_tensorflow()
  path = FLAGS.path or write_photographs(
      os.path.join(FLAGS.workdir, "photos"), FLAGS.num_images)
  config = image_folder_saccader.get_config()
  config.dataset.path = path
  config.dataset.data_dir = os.path.join(FLAGS.workdir, "tfds")
  config.dataset.image_size = FLAGS.image_size
  config.dataset.num_threads = FLAGS.threads
  builder = input_pipeline.get_builder(config.dataset)
  print(f"{path}: {input_pipeline.num_examples(builder, 'train')} training "
        f"images; {FLAGS.image_size} px, batch {FLAGS.batch}, "
        f"{FLAGS.threads} tf.data thread(s); {timing.machine()}\n")
  print("| preprocessing | images/s |\n|---|---:|")
  for preprocessing in ("inception_crop", "resize"):
    config.dataset.preprocessing = preprocessing
    print(f"| {preprocessing} | {images_per_second(config, builder):,.0f} |",
          flush=True)


if __name__ == "__main__":
  app.run(main)
