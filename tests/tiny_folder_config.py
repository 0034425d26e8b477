"""configs/image_folder_saccader.py with the tests' tiny model and lengths,
for subprocess jobs on a generated folder:

  python -m saccader_jax.main --config=tests/tiny_folder_config.py:DIR \
      --workdir=...

DIR holds the images (class folders, or train/ and test/ of them) and gets
the prepared copy in DIR_tfds beside it.
"""

from configs import image_folder_saccader
from tests.helpers import make_tiny


def get_config(path):
  config = image_folder_saccader.get_config()
  config.dataset.path = path
  config.dataset.data_dir = path.rstrip("/") + "_tfds"
  config.dataset.image_size = 45        # an 8x8 grid of 17 px patches
  return make_tiny(config)
