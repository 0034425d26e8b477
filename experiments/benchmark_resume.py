"""Time to the first training batch when a job resumes late.

The input order is a pure function of (seed, epoch, position), so resuming
at step N costs one permutation of N's epoch, not a pass over the N x batch
examples before it. Prints a Markdown table: time to the first batch when
resuming 0, 1 and 100 epochs into the embedded data set, and the ratio of
the 100-epoch time to the 1-epoch time. A new process pays once more for
starting TensorFlow and, with `dataset.cache`, for reading the split into
memory; the first line says how long.

    python -m experiments.benchmark_resume [--repeats=5]
"""

import time

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry.restart_before_libraries()   # as a job: tcmalloc, before JAX loads

from absl import app
from absl import flags


import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Timed restarts per row (median).")
flags.DEFINE_list("epochs", ["0", "1", "100"], "Epochs into the data.")
flags.DEFINE_string("data_dir", "~/tensorflow_datasets",
                    "TFDS data_dir of the embedded data set.")
flags.DEFINE_string("source_dir", None,
                    "Fashion-MNIST IDX files; default: the config's.")
flags.DEFINE_integer("dev_size", None, "Embedded dev split size override.")
flags.DEFINE_integer("image_size", None, "Embedded canvas size override.")


def main(argv):
  del argv
  from configs import fashion_mnist_whole_items_saccader
  from saccader_jax import library_setup
  from saccader_jax.data import input_pipeline
  library_setup.hide_accelerators_from_tensorflow()
  config = fashion_mnist_whole_items_saccader.get_config()
  config.dataset.data_dir = FLAGS.data_dir
  for field in ("source_dir", "dev_size", "image_size"):
    if FLAGS[field].value is not None:
      config.dataset[field] = FLAGS[field].value
  builder = input_pipeline.get_builder(config.dataset)
  examples = input_pipeline.num_examples(builder, config.dataset.train_split)
  steps_per_epoch = examples // config.batch_size

  def first_batch_seconds(start_step):
    start = time.perf_counter()
    batch = next(input_pipeline.train_batches(
        config.dataset, builder, config.batch_size, seed=config.seed,
        start_step=start_step))
    seconds = time.perf_counter() - start
    assert batch["image"].shape[0] == config.batch_size
    return seconds

  # The process's first pipeline also starts TensorFlow's and reads the
  # split into memory when config.dataset.cache is set.
  startup = first_batch_seconds(0)
  print(f"Resuming the embedded input pipeline ({examples} training examples, "
        f"batch {config.batch_size}, {steps_per_epoch} steps per epoch, "
        f"cache={config.dataset.get('cache', False)}), median of "
        f"{FLAGS.repeats}; the process's first pipeline took "
        f"{1e3 * startup:.0f} ms:\n")
  print("| resume at epoch | step | time to first batch (ms) |")
  print("|---:|---:|---:|")
  times = {}
  for epoch in map(int, FLAGS.epochs):
    step = epoch * steps_per_epoch
    times[epoch] = float(np.median([first_batch_seconds(step)
                                    for _ in range(FLAGS.repeats)]))
    print(f"| {epoch} | {step} | {1e3 * times[epoch]:.1f} |", flush=True)
  if 1 in times and 100 in times:
    print(f"\nEpoch 100 / epoch 1: {times[100] / times[1]:.2f}x")


if __name__ == "__main__":
  app.run(main)
