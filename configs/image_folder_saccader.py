"""Saccader on a folder of your own images: set the folder, nothing else.

    python -m saccader_jax.main --config=configs/image_folder_saccader.py \
        --config.dataset.path=~/photos --workdir=/tmp/saccader_photos

~/photos holds one folder per class (dev and test are carved from them), or
train/ and test/ (and optionally dev/) with the class folders inside
(saccader_jax/data/image_folder.py). The number of classes comes from the
folders. Sized for a small data set on a CPU: 96 px images, the embedded
config's small BagNet (29 px receptive field, stride 4: a 17x17 grid) on
RGB, Inception crops and flips for training. For photos at ImageNet's
scale start from configs/imagenet_saccader.py with this config's dataset
section. Measure the normalisation on your train split with

    python -m saccader_jax.data.statistics \
        --config=configs/image_folder_saccader.py --config.dataset.path=~/photos

and set the printed mean and std.
"""

import ml_collections

from configs import fashion_mnist_whole_items_saccader


def get_config() -> ml_collections.ConfigDict:
  config = fashion_mnist_whole_items_saccader.get_config()
  config.dataset = ml_collections.ConfigDict({
      "name": "image_folder",
      # The folder: class folders, or train/ and test/ (and dev/) of them.
      "path": "",
      # Where the prepared copy goes (array_record files of the images).
      "data_dir": "~/tensorflow_datasets",
      "source_dir": "",
      "image_size": 96,
      "num_channels": 3,
      # "inception_crop": ImageNet's random crop and flip for training, its
      # central crop for evaluation; "resize": the whole image, resized.
      "preprocessing": "inception_crop",
      # Splits carved from a folder without them (fractions of its files).
      "split_seed": 0,
      "dev_fraction": 0.1,
      "test_fraction": 0.1,
      # A file that does not decode: "skip" (counted in the log) or "error".
      "on_corrupt": "skip",
      # A greyscale file in an RGB set (or the reverse): "error" or
      # "convert" (converted when read).
      "mixed_channels": "error",
      "train_split": "train",
      "dev_split": "dev",
      "test_split": "test",
      # ImageNet's statistics; measure yours (module docstring).
      "mean": (0.485, 0.456, 0.406),
      "std": (0.229, 0.224, 0.225),
      "cache": False,
      "num_threads": 0,
      "prefetch": 2,
  })
  # The Saccader + high-resolution classifier reads this data set's images
  # (and 2x crops of them).
  config.classnet.saccader_image_size = config.dataset.get_ref("image_size")
  config.classnet.input_size = 192
  # 0: the number of class folders.
  for field in ("model", "classifier", "dram"):
    config[field].num_classes = 0
  config.batch_size = 32
  config.eval_batch_size = 64
  config.stages.representation.num_epochs = 30.0
  config.stages.location.num_epochs = 10.0
  config.stages.policy.num_epochs = 10.0
  config.stages.classifier.num_epochs = 30.0
  config.stages.dram.num_epochs = 30.0
  config.stages.classnet.num_epochs = 5.0
  config.log_every_steps = 20
  config.checkpoint_every_steps = 200
  config.evals.glimpses.num_images = 8
  return config
