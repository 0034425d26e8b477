"""Entry point: python -m saccader_jax.main --config=configs/X.py --workdir=DIR

Config fields can be overridden on the command line, e.g.
  --config.optimizer.name=adamw --config.stages.policy.num_steps=100
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from saccader_jax import runtime

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and results go here.")
flags.DEFINE_bool("distributed", False,
                  "Call jax.distributed.initialize() (multi-host jobs; on TPU "
                  "pods and SLURM the arguments below are detected).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Processes in the job.")
flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Both must precede the first computation.
  runtime.use_cpu_ynn_fusions(FLAGS.config.get("cpu_ynn_fusions", ""))
  if FLAGS.distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  runtime.hide_accelerators_from_tensorflow()
  runtime.quiet_library_logs()
  logging.info("JAX process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
