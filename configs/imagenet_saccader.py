"""Saccader on ImageNet at 224x224: the paper's model (BagNet-77-lowD).

    python -m saccader_jax.main --config=configs/imagenet_saccader.py \
        --workdir=gs://bucket/saccader --config.dataset.data_dir=gs://bucket/tfds
"""

import ml_collections

from configs import default


def get_model_config() -> ml_collections.ConfigDict:
  """The paper's Saccader: 35,583,913 variables with 1001 classes."""
  return ml_collections.ConfigDict({
      "name": "saccader",
      # The TF-slim ImageNet label set: 1000 classes plus background at 0.
      "num_classes": 1001,
      # Compute dtype; parameters, the cell and the per-location logits
      # always stay float32.
      "dtype": "float32",
      # Precision of the other convolutions: "default" (the backend's: one
      # bf16 pass on TPU, TF32 on recent GPUs), "high" or "highest".
      "matmul_precision": "default",
      # Batch-norm statistics of a training step over the "global" batch,
      # or each device's share ("per_device", as the original code on
      # TPUs: no cross-device reduction in any batch norm).
      "batch_norm_statistics": "global",
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
      "representation": {
          "blocks": (3, 4, 6, 3),
          "planes": (64, 128, 256, 512),
          "strides": (2, 2, 2, 1),
          "kernel3": (2, 2, 2, 2),
          "stem_channels": 64,
          "expansion": 4,
          "what_channels": 512,
      },
      "attention": {"widths": (1024, 512), "dilation": 2},
      "mixed_channels": 512,
  })


def get_classifier_config() -> ml_collections.ConfigDict:
  """The full-image classifier of the occlusion analysis: ResNet-v2-50
  (the layout of tf.keras.applications.ResNet50V2)."""
  return ml_collections.ConfigDict({
      "name": "resnet_v2",
      "num_classes": 1001,
      "dtype": "float32",
      "matmul_precision": "default",
      "batch_norm_statistics": "global",
      "units": (3, 4, 6, 3),
      "widths": (64, 128, 256, 512),
      "strides": (2, 2, 2, 1),
      "root_channels": 64,
      "root_kernel": 7,
      "root_stride": 2,
      "root_pool": True,
      "bn_momentum": 0.9,
      "bn_epsilon": 1.001e-5,
  })


def get_dram_config() -> ml_collections.ConfigDict:
  """DRAM as the paper's baseline: 45,610,219 variables with 1001 classes
  (glimpse network 23,556,992 + 45,440 batch-norm statistics, LSTM0
  12,587,008, classifier 1,026,025, LSTM1 8,392,704, emission 2,050)."""
  glimpse_network = get_classifier_config()
  for field in ("name", "num_classes", "dtype", "matmul_precision",
                "batch_norm_statistics", "bn_momentum", "bn_epsilon"):
    del glimpse_network[field]
  return ml_collections.ConfigDict({
      "name": "dram",
      "num_classes": 1001,
      "dtype": "float32",
      "matmul_precision": "default",
      "batch_norm_statistics": "global",
      "bn_momentum": 0.9,
      "bn_epsilon": 1.001e-5,
      # Fields of view 77, 150 and 224 px, each resized to 77x77; with two
      # position channels the glimpse network sees 77x77x15.
      "glimpse_size": 77,
      "num_resolutions": 3,
      # ResNet-v2-50 without logits (TF-slim layout): features of 2048.
      "glimpse_network": glimpse_network,
      "classification_units": 1024,
      "location_units": 1024,
      "location_stddev": 0.1,
  })


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = ml_collections.ConfigDict({
      "name": "imagenet2012",
      "data_dir": None,          # TFDS data_dir; None: ~/tensorflow_datasets
      "source_dir": None,        # the manually downloaded ImageNet tars
      "image_size": 224,
      "num_channels": 3,
      "label_offset": 1,         # TFDS labels 0..999 -> 1..1000
      # The paper divides the training set into train and development.
      "train_split": "train[50000:]",
      "dev_split": "train[:50000]",
      "test_split": "validation",
      "mean": (0.485, 0.456, 0.406),
      "std": (0.229, 0.224, 0.225),
      "cache": False,            # read records from disk as they are needed
      "num_threads": 0,
      "prefetch": 4,
  })
  config.model = get_model_config()
  # Trained by the "classifier" stage when run_stages includes it.
  config.classifier = get_classifier_config()
  # Trained by the "dram" stage when run_stages includes it
  # (configs/imagenet_dram.py).
  config.dram = get_dram_config()
  # The Saccader + high-resolution classifier (the paper's Saccader-NASNet,
  # ResNet-v2-50 standing in for NASNet), trained by the "classnet" stage
  # after the Saccader's stages and "classifier": the Saccader sees the
  # 331-px image downsized to 224, the classifier 113x113 crops of it.
  config.classnet = ml_collections.ConfigDict({
      "name": "saccader_classnet",
      "saccader": config.model,            # the same config, not a copy
      "classifier": config.classifier,
      "saccader_image_size": config.dataset.get_ref("image_size"),
      # Its input pipeline: 331-px central crops (inception crops in
      # training) beside the 224-px one.
      "input_size": 331,
  })
  # As the original code's stage 2: the frozen BagNet normalises with the
  # batch's statistics.
  config.stages.location.frozen_representation_bn = "batch"
  # Eq. 5 sums the NLL of T = 12 steps over unnormalised policy logits: at
  # learning rate 0.1 location pretraining blew up on the embedded data (NLL
  # ~1e7, location weights x20-200) once stage 1 had trained; clipping the
  # gradient's global norm to 1 kept it stable at the same rate
  # (tests/test_stability.py).
  config.stages.location.grad_clip_norm = 1.0
  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.log_every_steps = 200
  config.eval_every_steps = 5000
  config.eval_max_examples = 10000
  config.checkpoint_every_steps = 2000
  config.profile_steps = 5
  return config
