"""The share of a training job's wall time spent waiting for input.

    python -m experiments.benchmark_input_wait [--jobs=imagenet,main]

Runs stage 1 of each job (`experiments.stage1_jobs`) with its records read
through the latency stand-in (config.dataset.read_latency_ms, --latency_ms
per read request), batches staged on the devices ahead of the step
(config.device_prefetch) and uint8 pixels normalised on the devices, and
prints the loop's `<stage>/train/input_wait_fraction` of each logging
interval, read back from TensorBoard. The first interval holds the
pipeline's start and the step's compilation; the steady state is the rest.

  imagenet: configs/imagenet_saccader.py on the mock ImageNet, batch
    --imagenet_batch, --imagenet_steps steps logged every --imagenet_every.
  main: configs/fashion_mnist_whole_items_saccader.py on the embedded data
    (built on first use under --data_dir), its batch, --main_steps steps logged every
    --main_every.
"""

from __future__ import annotations

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry.restart_before_libraries()   # before any library loads, as a job

import os
import tempfile
import time

from absl import app
from absl import flags
from etils import epath

from experiments import stage1_jobs

FLAGS = flags.FLAGS
flags.DEFINE_list("jobs", list(stage1_jobs.JOBS), "Which jobs to run.")
flags.DEFINE_float("latency_ms", 20.0, "Latency per read request.")
flags.DEFINE_integer("imagenet_batch", 8, "The ImageNet job's global batch.")
flags.DEFINE_integer("imagenet_steps", 12, "The ImageNet job's steps.")
flags.DEFINE_integer("imagenet_every", 4, "Its logging interval, in steps.")
flags.DEFINE_integer("main_steps", 200, "The main job's steps.")
flags.DEFINE_integer("main_every", 50, "Its logging interval, in steps.")
flags.DEFINE_string("data_dir", os.path.expanduser("~/tensorflow_datasets"),
                    "TFDS data_dir of the embedded data set.")
flags.DEFINE_string("scratch_dir", None, "Scratch folder (default: a temporary "
                    "one).")

TAG = "representation/train/input_wait_fraction"


def job(name: str):
  """(config, description) of the job as this benchmark runs it."""
  if name == "imagenet":
    config = stage1_jobs.job_config(name, FLAGS.imagenet_steps,
                                    FLAGS.imagenet_batch, FLAGS.data_dir)
    config.log_every_steps = FLAGS.imagenet_every
  else:
    from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
    batch = fashion_mnist_whole_items_saccader.get_config().batch_size
    config = stage1_jobs.job_config(name, FLAGS.main_steps, batch,
                                    FLAGS.data_dir)
    config.log_every_steps = FLAGS.main_every
  config.checkpoint_every_steps = config.stages.representation.num_steps
  config.dataset.read_latency_ms = FLAGS.latency_ms
  return config


def main(argv):
  del argv
  from experiments import logged_scalars  # pylint: disable=g-import-not-at-top
  from experiments import timing  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  scratch = FLAGS.scratch_dir or tempfile.mkdtemp(
      prefix="benchmark_input_wait_")
  print(f"Input wait of stage 1, {FLAGS.latency_ms:g} ms per read request; "
        f"{timing.machine()}\n")
  print("| job | batch | steps | job wall s | read threads | device "
        "prefetch | first interval: input wait | later intervals: mean | "
        "max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
  for name in FLAGS.jobs:
    config = job(name)
    workdir = os.path.join(scratch, name)
    started = time.perf_counter()
    stage1_jobs.run(name, config, workdir)
    seconds = time.perf_counter() - started
    waits = [value for _, value in logged_scalars.logged_scalars(
        epath.Path(workdir), TAG)[TAG]]
    later = waits[1:] or [float("nan")]
    steps = config.stages.representation.num_steps
    print(f"| {name} | {config.batch_size} | {steps} | "
          f"{seconds:.0f} | "
          f"{input_pipeline.read_threads(config.dataset)} | "
          f"{config.device_prefetch} | {100 * waits[0]:.2f} % | "
          f"{100 * sum(later) / len(later):.3f} % | "
          f"{100 * max(later):.3f} % |", flush=True)


if __name__ == "__main__":
  app.run(main)
