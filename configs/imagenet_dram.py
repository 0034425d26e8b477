"""DRAM, the paper's recurrent baseline, on ImageNet at 224x224
(config.dram of configs/imagenet_saccader.py: ResNet-v2-50 glimpse network
on 77x77 glimpses, LSTMs of 1024, 45,610,219 variables):

    python -m saccader_jax.main --config=configs/imagenet_dram.py \
        --workdir=gs://bucket/dram --config.dataset.data_dir=gs://bucket/tfds
"""

import ml_collections

from configs import imagenet_saccader


def get_config() -> ml_collections.ConfigDict:
  config = imagenet_saccader.get_config()
  config.run_stages = ("dram",)
  return config
