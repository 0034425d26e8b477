"""Entry point: python -m saccader_jax.main --config=configs/X.py --workdir=DIR

Config fields can be overridden on the command line, e.g.
  --config.optimizer.name=adamw --config.stages.policy.num_steps=100

Exit codes: 0 done; 1 an error (one line on stderr); 2 a config error;
75 stopped on a preemption notice (SIGTERM) after saving a checkpoint of
the step it reached: run the same command again to resume.
"""

import gc
import os
import sys

# TensorFlow (tf.data) logs its start-up at INFO from C++; keep warnings.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from saccader_jax import errors
from saccader_jax import preemption
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
  try:
    run(FLAGS.config, FLAGS.workdir)
    return
  except errors.JobError as e:
    # The message says it all; a traceback would bury it.
    kind = ("Config error" if isinstance(e, errors.ConfigError)
            else "Preempted" if isinstance(e, preemption.Preempted)
            else "Error")
    for line in str(e).splitlines():
      print(f"{kind}: {line}", file=sys.stderr, flush=True)
    exit_code = e.exit_code
  # Release the failed stage's input pipeline (its Python generator) while
  # the interpreter is still whole.
  gc.collect()
  sys.exit(exit_code)


def run(config, workdir: str) -> None:
  # Both must precede the first computation. A bad cpu_ynn_fusions is left
  # to the config check, which reports it with every other problem.
  fusions = config.get("cpu_ynn_fusions", "")
  if isinstance(fusions, str) and not runtime.unknown_ynn_fusion_kinds(fusions):
    fusions = runtime.use_cpu_ynn_fusions(fusions)
  if FLAGS.distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  # After jax.distributed.initialize: with several processes, JAX's own
  # SIGTERM handler spreads the notice to every host and stays in place.
  preemption.install()
  runtime.hide_accelerators_from_tensorflow()
  runtime.quiet_library_logs()
  logging.info("JAX process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  if jax.default_backend() == "cpu":
    allocator = runtime.loaded_allocator()
    logging.info("CPU settings: YNNPACK fusions %r (config %r); host memory "
                 "allocator %s%s.", fusions, config.get("cpu_ynn_fusions"),
                 allocator, "" if allocator == "tcmalloc" else
                 " (install libtcmalloc-minimal4: the train steps run faster)")
  # The trainer checks the whole config before it builds data or a model.
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  runtime.reexec_with_tcmalloc()
  app.run(main)
