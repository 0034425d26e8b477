"""What the input pipeline feeds, per core and from storage with latency.

    python -m experiments.benchmark_input [--path=~/photos] [--image_size=224]

Without --path, writes a folder of synthetic photographs first (smooth
random colour fields, 500x375 JPEGs at quality 90, the size of a typical
ImageNet image, 3 classes). Reads the train split of
configs/image_folder_saccader.py (ImageNet's preprocessing: inception crop
at --image_size) and prints three Markdown tables (the first batches, the
warm-up, not counted; each row timed for --seconds):

  1. storage: records/s read alone (`input_pipeline.ordered_records`, as the
     pipeline reads) and images/s of the whole pipeline on both cores, at 0
     and --latency_ms per read request (`reading.DelayedSource`, a stand-in
     for a bucket), for each of --read_threads;
  2. decoding: images/s on 1 and 2 tf.data threads (cores), no latency;
  3. preprocessing: images/s of inception_crop and resize on --threads.

A host whose step consumes N images/s needs about N / (images/s per core)
cores decoding, and enough read threads that records/s at its storage's
latency exceeds N.
"""

from __future__ import annotations

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry.restart_before_libraries()   # before any library loads, as a job

import itertools
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
flags.DEFINE_integer("threads", 1, "tf.data's threads (cores) of table 3.")
flags.DEFINE_integer("batch", 64, "Images per batch.")
flags.DEFINE_float("seconds", 5.0, "Timed seconds per row (at least 2 "
                   "batches).")
flags.DEFINE_integer("num_images", 600, "Synthetic photographs written.")
flags.DEFINE_list("read_threads", ["1", "8", "64"], "Read threads of table 1.")
flags.DEFINE_float("latency_ms", 20.0, "Latency per read request of table 1.")
flags.DEFINE_list("tables", ["storage", "decode", "preprocessing"],
                  "Which tables to print.")


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


def _timed_rate(next_item, items_per_call: int) -> float:
  """Items per second of next_item() over --seconds (after 2 warm-up
  calls; at least 2 timed calls)."""
  for _ in range(2):
    next_item()
  calls, start = 0, time.perf_counter()
  while calls < 2 or time.perf_counter() - start < FLAGS.seconds:
    next_item()
    calls += 1
  return calls * items_per_call / (time.perf_counter() - start)


def images_per_second(config, builder) -> float:
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import common  # pylint: disable=g-import-not-at-top
  # As a job reads them: uint8 pixels, normalised later on the devices.
  batches = input_pipeline.train_batches(
      config.dataset, builder, FLAGS.batch, seed=0,
      pixels=common.normalizes_on_device(config.dataset))
  return _timed_rate(lambda: next(batches), FLAGS.batch)


def records_per_second(config, builder) -> float:
  """Records/s of the pipeline's reader alone (no decoding), in the
  training stream's order."""
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  source = input_pipeline.data_source(
      builder, "train", input_pipeline.DATASETS[config.dataset.name],
      config.dataset)
  keys = (key for _, key in input_pipeline.train_indices(0, len(source)))
  records = input_pipeline.ordered_records(source, keys, config.dataset)
  chunk = 128
  rate = _timed_rate(lambda: list(itertools.islice(records, chunk)), chunk)
  records.close()
  return rate


def storage_table(config, builder) -> None:
  print("| latency per request | read threads | records/s (reading alone) "
        "| images/s (2 cores) |\n|---:|---:|---:|---:|")
  config.dataset.num_threads = 2
  for latency in (0.0, FLAGS.latency_ms):
    for threads in map(int, FLAGS.read_threads):
      config.dataset.read_latency_ms = latency
      config.dataset.read_threads = threads
      print(f"| {latency:g} ms | {threads} | "
            f"{records_per_second(config, builder):,.0f} | "
            f"{images_per_second(config, builder):,.0f} |", flush=True)
  config.dataset.read_latency_ms = 0.0


def decode_table(config, builder) -> None:
  print("| tf.data threads (cores) | images/s | x one core |\n|---:|---:|---:|")
  rates = {}
  for cores in (1, 2):
    config.dataset.num_threads = cores
    rates[cores] = images_per_second(config, builder)
    print(f"| {cores} | {rates[cores]:,.0f} | {rates[cores] / rates[1]:.2f} |",
          flush=True)


def preprocessing_table(config, builder) -> None:
  config.dataset.num_threads = FLAGS.threads
  print(f"| preprocessing ({FLAGS.threads} tf.data thread(s)) | images/s |"
        "\n|---|---:|")
  for preprocessing in ("inception_crop", "resize"):
    config.dataset.preprocessing = preprocessing
    print(f"| {preprocessing} | {images_per_second(config, builder):,.0f} |",
          flush=True)
  config.dataset.preprocessing = "inception_crop"


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
  config.dataset.preprocessing = "inception_crop"
  builder = input_pipeline.get_builder(config.dataset)
  print(f"{path}: {input_pipeline.num_examples(builder, 'train')} training "
        f"images; {FLAGS.image_size} px, batch {FLAGS.batch}, "
        f"{FLAGS.seconds:g} s per row; {timing.machine()}\n")
  tables = {"storage": storage_table, "decode": decode_table,
            "preprocessing": preprocessing_table}
  for name in FLAGS.tables:
    tables[name](config, builder)
    print()


if __name__ == "__main__":
  app.run(main)
