"""Seconds from a restarted job's start to its first step, with and without
the persistent compilation cache.

    python -m experiments.benchmark_restart [--configs=main,imagenet]

For each config, twice (config.compilation_cache_dir "none", then the
default <workdir>/compilation_cache): a job of --steps steps of stage 1 gets
a preemption notice (SIGTERM) at its first logged step, saves and stops (the
cache filled), and the same command restarts it, as a preempted pod job
restarts; the table gives the restarted process's seconds from its start to
the log line of its first step, and whether the two jobs' last checkpoints
are bit for bit equal.

The jobs (`experiments.stage1_jobs`), at batch --batch:
  main: configs/fashion_mnist_whole_items_saccader.py on the embedded data
    (built on first use under --data_dir).
  imagenet: configs/imagenet_saccader.py on TFDS's mock ImageNet.
"""

from __future__ import annotations

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry.restart_before_libraries()   # before any library loads, as a job

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from experiments import stage1_jobs

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["main", "imagenet"], "Which jobs to time.")
flags.DEFINE_integer("batch", 8, "Global batch of the timed step.")
flags.DEFINE_integer("steps", 3, "Steps of the job (the notice comes at the "
                     "first).")
flags.DEFINE_string("data_dir", os.path.expanduser("~/tensorflow_datasets"),
                    "TFDS data_dir of the embedded data set.")
flags.DEFINE_string("scratch_dir", None, "Scratch folder (default: a temporary "
                    "one).")
# Internal: the job itself, run in a child process.
flags.DEFINE_string("child_config", None, "(internal) main or imagenet.")
flags.DEFINE_string("child_workdir", None, "(internal)")
flags.DEFINE_integer("child_steps", 1, "(internal)")
flags.DEFINE_string("child_cache", "", "(internal)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child() -> None:
  from saccader_jax import preemption  # pylint: disable=g-import-not-at-top
  config = stage1_jobs.job_config(FLAGS.child_config, FLAGS.child_steps,
                                  FLAGS.batch, FLAGS.data_dir)
  config.compilation_cache_dir = FLAGS.child_cache
  try:
    stage1_jobs.run(FLAGS.child_config, config, FLAGS.child_workdir)
  except preemption.Preempted:
    sys.exit(preemption.EXIT_CODE)


def run_job(name: str, workdir: str, steps: int, cache: str,
            preempt: bool) -> float:
  """Runs the job in a new process; seconds from its start to the log line
  of its first step. preempt: SIGTERM then, and expect the preempted exit."""
  started = time.perf_counter()
  process = subprocess.Popen(
      [sys.executable, "-m", "experiments.benchmark_restart",
       f"--child_config={name}", f"--child_workdir={workdir}",
       f"--child_steps={steps}", f"--child_cache={cache}",
       f"--batch={FLAGS.batch}", f"--data_dir={FLAGS.data_dir}"],
      cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
  step_line = re.compile(r"\[\d+\] representation/train/")
  reached, tail = None, []
  for line in process.stderr:
    tail = (tail + [line])[-40:]
    if reached is None and step_line.search(line):
      reached = time.perf_counter() - started
      if preempt:
        process.send_signal(signal.SIGTERM)
  expected = 75 if preempt else 0   # 75: saccader_jax.preemption.EXIT_CODE
  if process.wait() != expected or reached is None:
    raise RuntimeError(f"The {name} job failed:\n{''.join(tail)}")
  return reached


def last_params(workdir: str, name: str):
  from saccader_jax import run_record  # pylint: disable=g-import-not-at-top
  return run_record.load_variables(workdir, stage1_jobs.job_config(
      name, FLAGS.steps, FLAGS.batch, FLAGS.data_dir),
                                   stage="representation")


def main(argv):
  del argv
  if FLAGS.child_config:
    child()
    return
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments import timing  # pylint: disable=g-import-not-at-top
  scratch = FLAGS.scratch_dir or tempfile.mkdtemp(prefix="benchmark_restart_")
  print(f"Restart to the first step, batch {FLAGS.batch}; "
        f"{timing.machine()}\n")
  print("| job | restart, no cache: s to its first step | restart, with "
        "cache: s | first start, filling the cache: s | cache entries | "
        f"step {FLAGS.steps} identical |\n|---|---:|---:|---:|---:|---|",
        flush=True)
  for name in FLAGS.configs:
    seconds, params = {}, {}
    for cache in ("none", ""):
      workdir = os.path.join(scratch, f"{name}_{cache or 'cache'}")
      first = run_job(name, workdir, FLAGS.steps, cache, preempt=True)
      seconds[cache] = run_job(name, workdir, FLAGS.steps, cache,
                               preempt=False)
      params[cache] = last_params(workdir, name)
      if cache == "":
        entries = len(os.listdir(os.path.join(workdir, "compilation_cache")))
        filling = first
    same = all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        np.array_equal, params["none"], params[""])))
    print(f"| {name} | {seconds['none']:.1f} | {seconds['']:.1f} | "
          f"{filling:.1f} | {entries} | {'yes' if same else 'NO'} |",
          flush=True)


if __name__ == "__main__":
  app.run(main)
