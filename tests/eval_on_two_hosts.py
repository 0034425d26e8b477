"""Evaluates a split of one example on every process of a job; writes the
results. Run by tests/test_sharding.py as two processes:

  python -m tests.eval_on_two_hosts --data_dir=DIR --out=FILE
      --coordinator_address=localhost:PORT --num_processes=2 --process_id=I

With one example and two hosts, host 1's share is empty: it must still take
part in every collective eval step.
"""

import os

from absl import app
from absl import flags

from tests import process_flags


import jax  # pylint: disable=g-import-not-at-top
import numpy as np

flags.DEFINE_string("data_dir", None, "The tiny config's data directory.")
flags.DEFINE_string("out", None, "Where process 0 writes its .npz.")
flags.DEFINE_string("split", "test[:1]", "The split to evaluate.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  process_flags.initialize()
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny_train_config(FLAGS.data_dir)
  trainer = train.Trainer.open(config, os.path.join(FLAGS.data_dir, "workdir"))
  variables = trainer.job.init_variables(jax.random.key(0))
  results = trainer.evaluation.evaluate_stage("representation", variables,
                                              FLAGS.split)
  bagnet = results.pop("references")["representation"]
  if jax.process_index() == 0:
    np.savez(FLAGS.out, processes=jax.process_count(),
             bagnet_top1=bagnet["top1"], bagnet_count=bagnet["count"],
             **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
  flags.mark_flags_as_required(["data_dir", "out"])
  app.run(main)
