"""The tests' tiny training config as a config file, for subprocess jobs:

  python -m saccader_jax.main --config=tests/tiny_config.py:DIR --workdir=...

DIR holds the fake Fashion-MNIST files and the generated TFDS data.
"""

from tests.helpers import tiny_train_config


def get_config(data_dir):
  return tiny_train_config(data_dir)
