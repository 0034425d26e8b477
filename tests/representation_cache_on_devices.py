"""The frozen representation's cache built on this process's devices; writes
its arrays. Run by tests/test_representation_cache.py in fresh processes, so
that each sets its own device count (XLA_FLAGS):

  python -m tests.representation_cache_on_devices --data_dir=DIR --out=FILE
"""

from absl import app
from absl import flags
import jax
import numpy as np

flags.DEFINE_string("data_dir", None, "The tiny config's data.")
flags.DEFINE_string("out", None, "Where the arrays go (.npz).")
flags.DEFINE_integer("batch_size", 10, "Images per forward pass.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  from saccader_jax import models, representation_cache  # pylint: disable=g-import-not-at-top,g-multiple-import
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  config = tiny_train_config(FLAGS.data_dir)
  model = models.create_model(config.model)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  builder = input_pipeline.get_builder(config.dataset)
  cache = representation_cache.compute(model, variables, config.dataset,
                                       builder, FLAGS.batch_size)
  np.savez(FLAGS.out, devices=jax.local_device_count(), **cache.arrays)


if __name__ == "__main__":
  app.run(main)
