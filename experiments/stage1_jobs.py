"""Stage-1 jobs that the job-level benchmarks time: the main job's config on
the embedded data, and the ImageNet config on TFDS's mock ImageNet (random
224 px JPEGs, nothing downloaded)."""

from __future__ import annotations

import ml_collections

JOBS = ("main", "imagenet")
# The mock ImageNet's examples per split.
MOCK_EXAMPLES = 24


def job_config(name: str, steps: int, batch: int,
               data_dir: str) -> ml_collections.ConfigDict:
  """Stage 1 alone for `steps` steps at global batch `batch`, logged every
  step, nothing evaluated at its end. data_dir: the embedded data's TFDS
  data_dir (main)."""
  if name == "main":
    from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
    config = fashion_mnist_whole_items_saccader.get_config()
    config.dataset.data_dir = data_dir
  elif name == "imagenet":
    from configs import imagenet_saccader  # pylint: disable=g-import-not-at-top
    config = imagenet_saccader.get_config()
    config.dataset.train_split = "train[8:]"
    config.dataset.dev_split = "train[:8]"
  else:
    raise ValueError(f"Unknown job {name!r}; valid: {JOBS}.")
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = steps
  config.batch_size = config.eval_batch_size = batch
  config.log_every_steps = 1
  config.eval_at_stage_end = False
  config.evals = {"accuracy": {}}
  return config


def run(name: str, config: ml_collections.ConfigDict, workdir: str) -> None:
  """`saccader_jax.main.run` of the job (the ImageNet one on mock data)."""
  from saccader_jax import main as main_lib  # pylint: disable=g-import-not-at-top
  if name == "imagenet":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES,
                                policy=tfds.testing.MockPolicy.USE_CODE):
      main_lib.run(config, workdir)
  else:
    main_lib.run(config, workdir)
