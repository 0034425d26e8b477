"""Opens a writing `Run` on every process of a two-process job, first on a
workdir another job holds, then on a free one; each process writes what it
saw. Run by tests/test_workdir_lease.py:

  python -m tests.run_lease_on_two_hosts --data_dir=DIR --held=WORKDIR
      --free=WORKDIR --out=PREFIX --coordinator_address=localhost:PORT
      --num_processes=2 --process_id=I

Every process must be refused the held workdir (not only process 0, which
takes the lease), and on the free one process 1 must find the lease naming
the job process 0 opened.
"""

import json

from absl import app
from absl import flags

from tests import process_flags


import jax  # pylint: disable=g-import-not-at-top
from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("data_dir", None, "The tiny config's data directory.")
flags.DEFINE_string("held", None, "A workdir whose lease another job holds.")
flags.DEFINE_string("free", None, "A workdir nobody holds.")
flags.DEFINE_string("out", None, "Each process writes <out>_<index>.json.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  process_flags.initialize()
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  import saccader_jax  # pylint: disable=g-import-not-at-top
  from saccader_jax import workdir_lease  # pylint: disable=g-import-not-at-top
  config = tiny_train_config(FLAGS.data_dir)
  seen = {"processes": jax.process_count()}
  try:
    saccader_jax.Run(config, FLAGS.held).close()
    seen["held"] = "opened"
  except workdir_lease.WorkdirBusy as e:
    seen["held"] = f"refused: {e}"
  run = saccader_jax.Run(config, FLAGS.free)
  seen["free_lease_job"] = json.loads(
      (run.workdir / workdir_lease.LEASE_FILE).read_text())["job_id"]
  # Process 0 releases the lease only after every process has read it.
  multihost_utils.sync_global_devices("lease read")
  run.close()
  with open(f"{FLAGS.out}_{jax.process_index()}.json", "w") as f:
    json.dump(seen, f)


if __name__ == "__main__":
  flags.mark_flags_as_required(["data_dir", "held", "free", "out"])
  app.run(main)
