"""The flags and start-up of the test scripts run as several processes of
one JAX job (tests/*_on_two_hosts.py, tests/one_train_step.py):

  --coordinator_address=localhost:PORT --num_processes=2 --process_id=I
"""

from absl import flags
import jax

flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
flags.DEFINE_integer("num_processes", 1, "Processes in the job.")
flags.DEFINE_integer("process_id", 0, "This process's index.")


def initialize() -> None:
  """Joins the job the flags name (nothing to join for one process)."""
  if flags.FLAGS.num_processes > 1:
    jax.distributed.initialize(flags.FLAGS.coordinator_address,
                               flags.FLAGS.num_processes,
                               flags.FLAGS.process_id)
