"""Entry point: python -m saccader_jax.main --config=configs/X.py --workdir=DIR

Config fields can be overridden on the command line, e.g.
  --config.optimizer.name=adamw --config.stages.policy.num_steps=100

Exit codes: 0 done; 1 an error (one line on stderr); 2 a config error;
75 stopped on a preemption notice (SIGTERM) after saving a checkpoint of
the step it reached: run the same command again to resume.
"""

import gc
import os
import re
import sys

# TensorFlow (tf.data) logs its start-up at INFO from C++; keep warnings.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # The restart replaces the process image: whatever is imported before it
  # is imported twice, so it comes before JAX and TensorFlow.
  entry.restart_before_libraries()

from saccader_jax import allocator  # pylint: disable=g-import-not-at-top
from saccader_jax import cpu_kernels  # pylint: disable=g-import-not-at-top
from saccader_jax import library_setup  # pylint: disable=g-import-not-at-top

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from saccader_jax import errors
from saccader_jax import opening
from saccader_jax import preemption
from saccader_jax import workdir_lease

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
flags.DEFINE_float("lease_timeout", workdir_lease.DEFAULT_TIMEOUT_S,
                   "Seconds without a refresh after which this job's lease "
                   "of --workdir is stale: a job started then takes the "
                   "workdir over (saccader_jax/workdir_lease.py).")
flags.DEFINE_bool("traceback", False,
                  "On an error, print the Python traceback too (normally one "
                  "line says what went wrong and what to do).")
flags.mark_flags_as_required(["config", "workdir"])


def config_load_error(error: Exception, argv: list[str]) -> errors.ConfigError:
  """The one line that says why --config (its file or an override) could
  not be loaded."""
  text = str(error).replace("\\'", "'")
  missing = re.search(r"\[Errno \d+\] [^\n]*", text)
  if missing:
    return errors.ConfigError([f"--config could not be loaded: "
                               f"{missing.group(0)}."])
  overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  unknown = next(((flag, key) for flag in overrides
                  for key in flag[len("--config."):].split(".")
                  if f"'{key}'" in text), None)
  if unknown:
    suggestion = re.search(r'Did you mean "(\w+)"', text)
    hint = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
    return errors.ConfigError([f"{unknown[0]}: the config has no key "
                               f"{unknown[1]!r}{hint}."])
  first = text.splitlines()[0] if text else ""
  return errors.ConfigError([f"--config could not be loaded: "
                             f"{type(error).__name__}: {first}"])


report = errors.report


def check_process_flags() -> None:
  """The multi-process flags act only with --distributed: without it they
  would be ignored, and each process would run the whole job alone."""
  given = [f"--{name}" for name in ("coordinator_address", "num_processes",
                                    "process_id")
           if FLAGS[name].present]
  if given and not FLAGS.distributed:
    raise errors.UsageError(
        f"{', '.join(given)} take effect only with --distributed; add "
        "--distributed to run one job over several processes, or drop them.")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a --config override that names no key of the
  config (read while the flags are parsed) as one line."""
  try:
    return app.parse_flags_with_usage(argv)
  except (KeyError, AttributeError, OSError) as e:
    if "--traceback" in argv:
      raise
    sys.exit(report(config_load_error(e, argv)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    check_process_flags()
    try:
      # The file and the overrides are read on first use of the config.
      config = FLAGS.config
      config.keys()
    except Exception as e:  # pylint: disable=broad-except
      raise config_load_error(e, sys.argv) from e
    run(config, FLAGS.workdir)
    return
  except errors.JobError as e:
    if FLAGS.traceback:
      raise
    # The message says it all; a traceback would bury it.
    exit_code = report(e)
  # Release the failed stage's input pipeline (its Python generator) while
  # the interpreter is still whole.
  gc.collect()
  sys.exit(exit_code)


def run(config, workdir: str) -> None:
  library_setup.quiet_library_logs()
  # Both must precede the first computation. A bad cpu_ynn_fusions is left
  # to the config check, which reports it with every other problem.
  fusions = config.get("cpu_ynn_fusions", "")
  if isinstance(fusions, str) and not cpu_kernels.unknown_ynn_fusion_kinds(fusions):
    fusions = cpu_kernels.use_cpu_ynn_fusions(fusions)
  if FLAGS.distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  # After jax.distributed.initialize: with several processes, JAX's own
  # SIGTERM handler spreads the notice to every host and stays in place.
  preemption.install()
  # Before TensorFlow runs anything (the config check reads the data set
  # registry, which imports it).
  library_setup.hide_accelerators_from_tensorflow()
  logging.info("JAX process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  if jax.default_backend() == "cpu":
    loaded = allocator.loaded_allocator()
    logging.info("CPU settings: YNNPACK fusions %r (config %r); host memory "
                 "allocator %s%s.", fusions, config.get("cpu_ynn_fusions"),
                 loaded, "" if loaded == "tcmalloc" else
                 " (install libtcmalloc-minimal4: the train steps run faster)")
  # The config is checked before the trainer's libraries load (seconds on a
  # small CPU), so that a mistake in it is reported at once; the data is
  # prepared (a folder's files checked) before the workdir is touched; one
  # job per workdir: the lease is held from before the first write to the
  # end.
  job = opening.open_job(config, workdir, lease_timeout=FLAGS.lease_timeout,
                         use_compilation_cache=True)
  try:
    from saccader_jax import train  # pylint: disable=g-import-not-at-top
    train.Trainer(job).run()
  finally:
    job.close()


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
