"""configs/image_folder_saccader.py with the tests' tiny model and lengths,
for subprocess jobs on a generated folder:

  python -m saccader_jax.main --config=tests/tiny_folder_config.py:DIR \
      --workdir=...

DIR holds the images (class folders, or train/ and test/ of them) and gets
the prepared copy in DIR_tfds beside it.
"""

from configs import image_folder_saccader


def get_config(path):
  config = image_folder_saccader.get_config()
  config.cpu_ynn_fusions = ""
  config.dataset.path = path
  config.dataset.data_dir = path.rstrip("/") + "_tfds"
  config.dataset.image_size = 45        # a 5x5 grid of 29 px patches
  rep = config.model.representation
  rep.blocks, rep.planes = (1, 1, 1), (4, 8, 8)
  rep.stem_channels, rep.what_channels = 8, 16
  config.model.attention.widths = (16, 8)
  config.model.mixed_channels = 8
  config.batch_size = 16
  config.eval_batch_size = 32
  for stage in config.stages.values():
    stage.num_steps = 3
  config.stages.location.num_glimpses = 4
  config.stages.policy.num_glimpses = 3
  config.eval_glimpses = 5
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.async_checkpoints = False
  return config
