"""The tests' tiny training config as a config file, for subprocess jobs:

  python -m saccader_jax.main --config=tests/tiny_config.py:DIR --workdir=...

DIR holds the fake Fashion-MNIST files and the generated TFDS data.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import tiny_train_config  # pylint: disable=g-import-not-at-top


def get_config(data_dir):
  return tiny_train_config(data_dir)
