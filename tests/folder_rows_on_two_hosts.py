"""Reads a folder's train split on every process of a job and writes the
rows this host read. Run by tests/test_image_folder.py as two processes:

  python -m tests.folder_rows_on_two_hosts --path=DIR --out=PREFIX
      --coordinator_address=localhost:PORT --num_processes=2 --process_id=I

Process 0 prepares the folder, the others read its copy (`job.prepare_data`);
each writes PREFIX_<process>.json: a digest of every image of its share of
the train split as evaluation reads it, and of one epoch of its training
batches, read by 1 thread (the serial reader) and by 8 threads.
"""

import hashlib
import json

from absl import app
from absl import flags

from tests import process_flags

import jax  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("path", None, "The folder of class folders.")
flags.DEFINE_string("out", None, "Prefix of the files written.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  process_flags.initialize()
  from saccader_jax import job  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tests.tiny_folder_config import get_config  # pylint: disable=g-import-not-at-top
  config = get_config(FLAGS.path).dataset
  config.preprocessing = "resize"
  builder = job.prepare_data(config)
  digest = lambda image: hashlib.sha256(image.tobytes()).hexdigest()
  evaluated = []
  for batch in input_pipeline.eval_batches(config, builder,
                                           config.train_split, 8):
    evaluated += [digest(image) for image, keep
                  in zip(batch["image"], batch["mask"]) if keep]
  share = input_pipeline.host_split_size(config, builder, config.train_split)
  trained = {}
  for threads in (1, 8):
    config.read_threads = threads
    rows = []
    batches = input_pipeline.train_batches(config, builder, 8, seed=0)
    while len(rows) < share // 4 * 4:
      rows += [digest(image) for image in next(batches)["image"]]
    trained[threads] = rows[:share // 4 * 4]
  with open(f"{FLAGS.out}_{jax.process_index()}.json", "w") as f:
    json.dump({"share": share, "evaluated": evaluated,
               "trained": trained[1], "trained_by_8_threads": trained[8]}, f)


if __name__ == "__main__":
  flags.mark_flags_as_required(["path", "out"])
  app.run(main)
