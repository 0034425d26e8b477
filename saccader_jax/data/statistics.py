"""The normalisation statistics of a data set's train split, as config lines.

    python -m saccader_jax.data.statistics --config=configs/image_folder_saccader.py \
        --config.dataset.path=~/photos [--max_examples=20000]

Reads the train split as evaluation preprocesses it (crop or resize to
image_size, values in [0, 1], no normalisation) and prints each channel's
mean and standard deviation over all pixels, as the command-line overrides
and the config lines that set them.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.",
                                lock_config=False)
flags.DEFINE_integer("max_examples", 0,
                     "Train examples read (the first ones); 0: all.")
flags.mark_flags_as_required(["config"])


def channel_statistics(dataset_config, max_examples: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, int]:
  """(mean [C], std [C], images read) of the train split's pixels in [0, 1]
  as evaluation preprocesses them."""
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  config = dataset_config.copy_and_resolve_references()
  channels = config.num_channels
  config.mean, config.std = (0.0,) * channels, (1.0,) * channels
  builder = input_pipeline.get_builder(config)
  total = np.zeros(channels, np.float64)
  squares = np.zeros(channels, np.float64)
  count = pixels = 0
  for batch in input_pipeline.eval_batches(config, builder,
                                           config.train_split, 256,
                                           max_examples or None):
    images = batch["image"][batch["mask"] > 0].astype(np.float64)
    total += images.sum(axis=(0, 1, 2))
    squares += (images ** 2).sum(axis=(0, 1, 2))
    pixels += images.shape[0] * images.shape[1] * images.shape[2]
    count += images.shape[0]
  mean = total / pixels
  std = np.sqrt(np.maximum(squares / pixels - mean ** 2, 0.0))
  return mean, std, count


def config_lines(mean, std) -> str:
  as_tuple = lambda values: "(" + ", ".join(f"{v:.3f}" for v in values) + (
      ",)" if len(values) == 1 else ")")
  return (f'--config.dataset.mean="{as_tuple(mean)}" '
          f'--config.dataset.std="{as_tuple(std)}"\n'
          f"# or, in the config file:\n"
          f"config.dataset.mean = {as_tuple(mean)}\n"
          f"config.dataset.std = {as_tuple(std)}")


def main(argv):
  del argv
  from saccader_jax import library_setup  # pylint: disable=g-import-not-at-top
  library_setup.hide_accelerators_from_tensorflow()
  library_setup.quiet_library_logs()
  mean, std, count = channel_statistics(FLAGS.config.dataset,
                                        FLAGS.max_examples)
  print(f"{FLAGS.config.dataset.name}, train split "
        f"({FLAGS.config.dataset.train_split}), {count} images at "
        f"{FLAGS.config.dataset.image_size} px:")
  print(config_lines(mean, std))


if __name__ == "__main__":
  app.run(main)
