"""DRAM, the paper's recurrent baseline, on the embedded cluttered
Fashion-MNIST (config.dram of configs/fashion_mnist_whole_items_saccader.py):

    python -m saccader_jax.main --config=configs/fashion_mnist_dram.py \
        --workdir=/tmp/dram
"""

import ml_collections

from configs import fashion_mnist_whole_items_saccader


def get_config() -> ml_collections.ConfigDict:
  config = fashion_mnist_whole_items_saccader.get_config()
  config.run_stages = ("dram",)
  return config
