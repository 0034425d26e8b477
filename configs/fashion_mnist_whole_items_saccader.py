"""Saccader on cluttered, translated Fashion-MNIST, whole items per glimpse.

The base of every embedded config (the parts data, DRAM, one's own images)
and the data set of most tests. Sized for a 2-core CPU: all three stages
finish in about ten minutes. Each 28x28 item sits at a random position on a
64x64 canvas with 6 clutter fragments; the small BagNet sees 29x29 patches
every 4 pixels (a 9x9 grid), so one glimpse covers a whole item, and one
good location is nearly as good as all of them: here ordered logits beat the
learned policy (experiments/README.md, sections 4.1-4.3). The paper's regime,
where an object spans several glimpses, is the parts data
(configs/fashion_mnist_parts_saccader.py); the main job is
configs/fashion_mnist_parts_quick_saccader.py.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = ml_collections.ConfigDict({
      "name": "cluttered_fashion_mnist",
      "data_dir": "~/tensorflow_datasets",
      # The Fashion-MNIST IDX files (Debian: dataset-fashion-mnist). When
      # absent here and in /usr/share/datasets/fashion-mnist, the builder
      # downloads them if the network allows.
      "source_dir": "/usr/share/datasets/fashion-mnist",
      "image_size": 64,
      "num_channels": 1,
      "num_clutter": 6,
      "clutter_size": 9,
      "dev_size": 5000,
      "seed": 0,
      "train_split": "train",
      "dev_split": "dev",
      "test_split": "test",
      "mean": (0.096,),
      "std": (0.247,),
      # Read each split into memory once (55,000 PNGs, ~60 MB).
      "cache": True,
      "num_threads": 1,
      "prefetch": 2,
  })
  config.model = ml_collections.ConfigDict({
      "name": "saccader",
      "num_classes": 10,
      "dtype": "float32",
      "matmul_precision": "default",
      "batch_norm_statistics": "global",
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
      "representation": {
          "blocks": (2, 2, 2),
          "planes": (16, 32, 64),
          "strides": (2, 2, 1),
          "kernel3": (2, 2, 1),
          "stem_channels": 16,
          "expansion": 4,
          "what_channels": 64,
      },
      "attention": {"widths": (64, 32), "dilation": 2},
      "mixed_channels": 32,
  })
  # The full-image classifier of the occlusion analysis, trained by the
  # "classifier" stage when run_stages includes it (experiments.paper_figures
  # does): a small ResNet-v2 whose root convolution and max-pool bring the
  # 64x64 canvas to 16x16 (the occlusion analysis runs it T_max times per
  # image and policy).
  config.classifier = ml_collections.ConfigDict({
      "name": "resnet_v2",
      "num_classes": 10,
      "dtype": "float32",
      "matmul_precision": "default",
      "batch_norm_statistics": "global",
      "units": (2, 2, 2),
      "widths": (16, 32, 64),
      "strides": (2, 2, 1),
      "root_channels": 32,
      "root_kernel": 5,
      "root_stride": 2,
      "root_pool": True,
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
  })
  # DRAM, the recurrent baseline, trained by the "dram" stage when
  # run_stages includes it (configs/fashion_mnist_dram.py): glimpses of
  # 29x29 (the BagNet's receptive field) at fields of view 29, 46 and 64,
  # a small ResNet-v2 glimpse network and LSTMs of 256.
  config.dram = ml_collections.ConfigDict({
      "name": "dram",
      "num_classes": 10,
      "dtype": "float32",
      "matmul_precision": "default",
      "batch_norm_statistics": "global",
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
      "glimpse_size": 29,
      "num_resolutions": 3,
      "glimpse_network": {
          "units": (2, 2, 2),
          "widths": (16, 32, 64),
          "strides": (2, 2, 1),
          "root_channels": 32,
          "root_kernel": 3,
          "root_stride": 2,
          "root_pool": False,
      },
      "classification_units": 256,
      "location_units": 256,
      "location_stddev": 0.1,
  })
  # The Saccader + high-resolution classifier: the Saccader reads the 64x64
  # canvas, the classifier 58x58 crops of the canvas upscaled 2x to 128.
  config.classnet = ml_collections.ConfigDict({
      "name": "saccader_classnet",
      "saccader": config.model,            # the same config, not a copy
      "classifier": config.classifier,
      "saccader_image_size": config.dataset.get_ref("image_size"),
      "input_size": 128,
  })
  config.batch_size = 128
  config.eval_batch_size = 500
  # About 10 minutes on 2 CPU cores at batch 128: stage 1 ~0.45 s/step,
  # stage 2 ~0.13 s/step, stage 3 ~0.5 s/step, evaluations ~1.5 minutes.
  config.stages.representation.num_epochs = 2.0
  config.stages.representation.learning_rate = 0.1
  config.stages.location.num_epochs = 0.5
  # Eq. 5 sums the NLL of T = 12 steps, and the policy logits are the
  # unnormalised mixed features: at 0.1 the location network's weights blow
  # up (NLL ~1e7 within 50 steps) and stage 3 starts from a broken policy.
  config.stages.location.learning_rate = 0.03
  config.stages.policy.num_epochs = 0.3
  config.stages.classifier.num_epochs = 1.0
  config.stages.policy.learning_rate = 0.002
  config.stages.dram.num_epochs = 2.0
  config.stages.classnet.num_epochs = 0.25
  config.log_every_steps = 50
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 200
  return config
