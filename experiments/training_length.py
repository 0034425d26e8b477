"""Dev-split curves of stages 2 and 3 against their training length.

Stage 2 (location pretraining) at several lengths, each a run of its own
whose schedule fits its length, all from one finished stage 1:

    python -m experiments.training_length --arm=stage2 --setting=code \
        --lengths=2,4,8,16 --base_workdir=DIR/seed_0 \
        --workdir=/tmp/lengths/seed_0 \
        [--config.stages.location.reading=code_teacher_forced ...]

Stage 3 for --epochs epochs from one of those stage-2 runs, checkpointed and
evaluated at every epoch (epoch 0: the stage-2 policy it starts from):

    python -m experiments.training_length --arm=stage3_frozen \
        --setting=rate100 --epochs=12 \
        --stage2_workdir=/tmp/lengths/seed_0/stage2_code_16ep \
        --workdir=/tmp/lengths/seed_0 \
        --config.stages.policy.location_learning_rate_factor=100

  stage3_frozen  the BagNet as stages 1-2 left it, REINFORCE trains the
                 location network (stages.policy.train_representation False);
  stage3_full    everything trained, as eq. 6 says; each epoch also
                 evaluates ordered logits read from that epoch's BagNet and
                 the swap (that BagNet with the stage-2 location network), so
                 that a gain of the representation is not read as one of the
                 policy.

--config is the parts config (seed and every setting as given); the frozen
BagNet's outputs are cached (config.cache_frozen_representation) unless
--nocache. Rows go to OUT_accuracy.csv (seed, arm, setting, stage_epochs,
epoch, policy, glimpses, top1, coverage) and OUT_stage2_training.csv or
OUT_stage3_training.csv (the stage's logged loss and diagnostics over the
epoch's logging intervals, its steps, minutes and the CPU), each
written as soon as its run is evaluated. A row already in OUT is not
measured again: after a stop, the same command resumes (the stage from its
last checkpoint).
"""

from __future__ import annotations

import math
import time

from saccader_jax import allocator  # pylint: disable=g-import-not-at-top
from saccader_jax import cpu_kernels  # pylint: disable=g-import-not-at-top
from saccader_jax import library_setup  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  allocator.reexec_with_tcmalloc()

from absl import app
from absl import flags
from etils import epath
import numpy as np
from ml_collections import config_flags

from experiments import timing
from experiments.logged_scalars import logged_scalars
from experiments.results_csv import read_csv
from experiments.results_csv import write_csv
from saccader_jax import paths

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/fashion_mnist_parts_saccader.py", "Training config.",
    lock_config=False)
flags.DEFINE_enum("arm", None, ["stage2", "stage3_frozen", "stage3_full"],
                  "Which stage, and for stage 3 which parameters train.")
flags.DEFINE_string("setting", None,
                    "Name of the stage's settings in the CSVs (e.g. the "
                    "reading, or the rate factor).")
flags.DEFINE_list("lengths", ["2", "4", "8", "16"],
                  "stage2: the lengths trained, in epochs.")
flags.DEFINE_integer("epochs", 12, "stage3: epochs trained.")
flags.DEFINE_string("base_workdir", None,
                    "stage2: a run whose finished stage 1 is reused.")
flags.DEFINE_string("stage2_workdir", None,
                    "stage3: a run whose finished stages 1 and 2 are reused.")
flags.DEFINE_string("workdir", None, "Where the runs train (a folder each).")
flags.DEFINE_string("out", "experiments/results/parts/lengths",
                    "Prefix of the CSVs the rows are added to.")
flags.DEFINE_integer("eval_max_examples", 0, "Dev examples; 0: all.")
flags.DEFINE_bool("cache", True,
                  "Cache the frozen BagNet's outputs (same results, a "
                  "3.5x cheaper step).")
flags.mark_flags_as_required(["arm", "setting", "workdir"])

DIAGNOSTICS = {
    "location": ("loss", "location_nll", "first_target_accuracy"),
    "policy": ("loss", "reward", "entropy_first", "entropy",
               "cross_entropy", "reinforce"),
}


def key_of(row: dict) -> tuple:
  return (row["seed"], row["arm"], row["setting"], row["stage_epochs"],
          row["epoch"])


class Results:
  """OUT's two CSVs, with the rows already measured."""

  def __init__(self, prefix: str, stage: str):
    self.paths = {"accuracy": epath.Path(f"{prefix}_accuracy.csv"),
                  "training": epath.Path(f"{prefix}_{stage}_training.csv")}
    self.rows = {name: (read_csv(path) if path.exists() else [])
                 for name, path in self.paths.items()}

  def done(self, key: tuple) -> bool:
    return any(key_of(row) == key for row in self.rows["training"])

  def add(self, accuracy: list[dict], training: dict) -> None:
    self.rows["accuracy"] += accuracy
    self.rows["training"].append(training)
    for name, path in self.paths.items():
      path.parent.mkdir(parents=True, exist_ok=True)
      write_csv(path, self.rows[name])


def interval_means(logged: dict[str, list], stage: str, first: int,
                   last: int) -> dict[str, float]:
  """The mean of each logged training scalar of `stage` over steps
  (first, last] (the logging intervals ending there)."""
  means = {}
  for name in DIAGNOSTICS[stage]:
    values = [v for step, v in logged.get(f"{stage}/train/{name}", [])
              if first < step <= last]
    means[name] = float(np.mean(values)) if values else float("nan")
  return means


def accuracy_rows(base: dict, policy: str, results: dict) -> list[dict]:
  return [dict(base, policy=policy, glimpses=t + 1,
               top1=float(results["top1"][t]),
               coverage=float(results["coverage"][t]))
          for t in range(len(results["top1"]))]


def report(base: dict, results: dict[str, dict]) -> None:
  print(f"seed {base['seed']} {base['arm']} {base['setting']} "
        f"{base['stage_epochs']:g} epochs, at epoch {base['epoch']}: "
        + "; ".join(f"{policy} top-1 at t=1/6/12 " + "/".join(
            f"{100 * r['top1'][t - 1]:.1f}" for t in (1, 6, 12)
            if t <= len(r["top1"])) for policy, r in results.items()),
        flush=True)


def stage2_curve(config, results: Results, machine: str) -> None:
  """One run per length; each evaluated on dev once trained."""
  import saccader_jax  # pylint: disable=g-import-not-at-top
  for length in (float(x) for x in FLAGS.lengths):
    base = {"seed": int(config.seed), "arm": FLAGS.arm,
            "setting": FLAGS.setting, "stage_epochs": length,
            "epoch": int(np.ceil(length))}
    if results.done(key_of(base)):
      print(f"{key_of(base)}: in {FLAGS.out}, skipped.")
      continue
    run_config = config.copy_and_resolve_references()
    run_config.run_stages = ("representation", "location")
    run_config.stages.location.num_epochs = length
    run_config.stages.location.num_steps = 0
    run_config.eval_at_stage_end = False   # evaluated below, once
    workdir = (paths.absolute_path(FLAGS.workdir)
               / f"stage2_{FLAGS.setting}_{length:g}ep")
    started = time.time()
    with saccader_jax.Run(run_config, workdir) as run:
      run.reuse(FLAGS.base_workdir, ["representation"])
      trained = run.train()
      minutes = (time.time() - started) / 60
      out = run.evaluate(run.learned_policy(), "dev",
                         trained["location"].variables,
                         max_examples=FLAGS.eval_max_examples or None)
    steps = int(max(s for s, _ in logged_scalars(
        workdir, "location/train/loss")["location/train/loss"]))
    logged = logged_scalars(workdir, "location/train/")
    last_interval = steps - run_config.log_every_steps
    report(base, {"saccader": out})
    results.add(accuracy_rows(base, "saccader", out), dict(
        base, steps=steps, minutes=minutes, cpu=machine,
        **interval_means(logged, "location", last_interval, steps)))


def stage3_curve(config, results: Results, machine: str) -> None:
  """One run of --epochs epochs, its checkpoint of each epoch evaluated."""
  import saccader_jax  # pylint: disable=g-import-not-at-top
  from saccader_jax import policies  # pylint: disable=g-import-not-at-top
  from saccader_jax.objectives import saccader as objectives  # pylint: disable=g-import-not-at-top
  full = FLAGS.arm == "stage3_full"
  run_config = config.copy_and_resolve_references()
  run_config.run_stages = ("representation", "location", "policy")
  run_config.stages.policy.train_representation = full
  workdir = paths.absolute_path(FLAGS.workdir) / (
      f"{FLAGS.arm}_{FLAGS.setting}_{FLAGS.epochs}ep")
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  steps_per_epoch = math.ceil(input_pipeline.num_examples(
      input_pipeline.get_builder(config.dataset),
      config.dataset.train_split) / config.batch_size)
  run_config.stages.policy.num_steps = FLAGS.epochs * steps_per_epoch
  run_config.checkpoint_every_steps = steps_per_epoch
  run_config.keep_checkpoints = FLAGS.epochs + 1
  run_config.eval_at_stage_end = False
  run_config.eval_every_steps = 0
  started = time.time()
  with saccader_jax.Run(run_config, workdir) as run:
    run.reuse(FLAGS.stage2_workdir, ["representation", "location"])
    trained = run.train()
    minutes = (time.time() - started) / 60
    stage2 = trained["location"].variables
    logged = logged_scalars(workdir, "policy/train/")
    policy = run.learned_policy()
    for epoch in range(FLAGS.epochs + 1):
      base = {"seed": int(config.seed), "arm": FLAGS.arm,
              "setting": FLAGS.setting, "stage_epochs": float(FLAGS.epochs),
              "epoch": epoch}
      if results.done(key_of(base)):
        continue
      step = epoch * steps_per_epoch
      variables = (stage2 if epoch == 0 else saccader_jax.load_variables(
          workdir, run_config, stage="policy", step=step))
      candidates = {"saccader": (policy, variables)}
      if full:
        candidates["ordered_logits"] = (policies.make_baseline_policy(
            "ordered_logits", run_config, variables), None)
        candidates["swap"] = (policy, objectives.with_location_network(
            variables, stage2))
      measured = {name: run.evaluate(
          candidate, "dev", candidate_variables,
          max_examples=FLAGS.eval_max_examples or None)
                  for name, (candidate, candidate_variables)
                  in candidates.items()}
      report(base, measured)
      rows = [row for name, out in measured.items()
              for row in accuracy_rows(base, name, out)]
      results.add(rows, dict(
          base, steps=step, minutes=minutes if epoch == FLAGS.epochs
          else float("nan"), cpu=machine,
          **interval_means(logged, "policy", step - steps_per_epoch, step)))


def main(argv):
  del argv
  config = FLAGS.config
  cpu_kernels.use_cpu_ynn_fusions(config.get("cpu_ynn_fusions", ""))
  library_setup.hide_accelerators_from_tensorflow()
  library_setup.quiet_library_logs()
  config.cache_frozen_representation = FLAGS.cache
  results = Results(FLAGS.out, "stage2" if FLAGS.arm == "stage2"
                    else "stage3")
  if FLAGS.arm == "stage2":
    if not FLAGS.base_workdir:
      raise app.UsageError("--arm=stage2 needs --base_workdir.")
    stage2_curve(config, results, timing.machine())
  else:
    if not FLAGS.stage2_workdir:
      raise app.UsageError(f"--arm={FLAGS.arm} needs --stage2_workdir.")
    stage3_curve(config, results, timing.machine())


if __name__ == "__main__":
  app.run(main)
