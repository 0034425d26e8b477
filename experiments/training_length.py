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
                 evaluates ordered logits read from that epoch's BagNet, the
                 swap (that BagNet with the stage-2 location network) and
                 that BagNet on every location, so that a gain of the
                 representation is not read as one of the policy.

The paper's ablations (Figure Supp.3) are variants of the long parts config
(configs/fashion_mnist_parts_long_saccader.py:no_location_pretraining and
:no_attention_network): a stage-3 run reuses the stages its config runs
before the policy's, and a stage-2 run without --base_workdir trains its
own stage 1 (the ablated model's).

--config is the parts config (seed and every setting as given); the frozen
BagNet's outputs are cached (config.cache_frozen_representation) unless
--nocache. Rows go to OUT_accuracy.csv (seed, arm, setting, stage_epochs,
epoch, policy, glimpses, top1, coverage) and OUT_stage2_training.csv or
OUT_stage3_training.csv (the stage's logged loss and diagnostics over the
epoch's logging intervals, its steps, minutes and the CPU), each
written as soon as its run is evaluated. A row already in OUT is not
measured again: after a stop, the same command resumes (the stage from its
last checkpoint), and a readout added to an arm later is measured for the
epochs already done.
"""

from __future__ import annotations

import math
import time

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

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
                    "stage2: a run whose finished stage 1 is reused (none: "
                    "each run trains its own).")
flags.DEFINE_string("stage2_workdir", None,
                    "stage3: a run whose finished earlier stages (those of "
                    "config.run_stages before the policy's) are reused.")
flags.DEFINE_string("workdir", None, "Where the runs train (a folder each).")
flags.DEFINE_string("out", "experiments/results/parts/lengths",
                    "Prefix of the CSVs the rows are added to.")
flags.DEFINE_integer("eval_max_examples", 0, "Dev examples; 0: all.")
flags.DEFINE_bool("cache", True,
                  "Cache the frozen BagNet's outputs (same results, a "
                  "3.5x cheaper step).")
flags.DEFINE_bool("plot", False,
                  "Train nothing: draw OUT_curves.png and print the tables "
                  "from OUT's CSVs.")
flags.DEFINE_string("references",
                    "experiments/results/parts/headroom_accuracy.csv",
                    "--plot: greedy rules' dev rows (experiments.headroom) "
                    "drawn as reference lines.")

SHOWN = (1, 6, 12)
REFERENCE_RULES = {"ordered_logits": "ordered logits",
                   "predicted_probability": "predicted class's probability"}

BAGNET_ALL_LOCATIONS = "bagnet_all_locations"
# Beside the Saccader, for stage 3 with everything trained: its BagNet read
# by ordered logits, by the stage-2 location network (the swap) and on every
# location.
FULL_ARM_READOUTS = {"ordered_logits", "swap", BAGNET_ALL_LOCATIONS}

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

  def policies(self, key: tuple) -> set[str]:
    """The policies with accuracy rows at key."""
    return {row["policy"] for row in self.rows["accuracy"]
            if key_of(row) == key}

  def add(self, accuracy: list[dict], training: dict) -> None:
    """training: the key's row, kept as first written if it is there (a
    policy measured later for an epoch already done adds only its rows)."""
    self.rows["accuracy"] += accuracy
    if not self.done(key_of(training)):
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
      if FLAGS.base_workdir:
        run.reuse(FLAGS.base_workdir, ["representation"])
      trained = run.train()
      minutes = (time.time() - started) / 60
      out = run.evaluate(run.learned_policy(), "dev",
                         trained["location"].variables,
                         max_examples=FLAGS.eval_max_examples or None)
    logged = logged_scalars(workdir, "location/train/")
    steps = int(max(step for step, _ in logged["location/train/loss"]))
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
  # The Saccader's stages of the config, e.g. without "location" for the
  # no-pretraining ablation: those before the policy are reused.
  run_config.run_stages = tuple(s for s in config.run_stages if s in (
      "representation", "location", "policy"))
  reused = [s for s in run_config.run_stages if s != "policy"]
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
    # Its stage 2 ran for its own length, not the config's.
    run.reuse(FLAGS.stage2_workdir, reused, same_settings=False)
    trained = run.train()
    minutes = (time.time() - started) / 60
    stage2 = trained[reused[-1]].variables
    logged = logged_scalars(workdir, "policy/train/")
    policy = run.learned_policy()
    for epoch in range(FLAGS.epochs + 1):
      base = {"seed": int(config.seed), "arm": FLAGS.arm,
              "setting": FLAGS.setting, "stage_epochs": float(FLAGS.epochs),
              "epoch": epoch}
      # Rows of an epoch are written together: one with every readout is
      # done.
      missing = ({"saccader"} | (FULL_ARM_READOUTS if full else set())
                 ) - results.policies(key_of(base))
      if not missing:
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
      max_examples = FLAGS.eval_max_examples or None
      measured = {name: run.evaluate(
          candidate, "dev", candidate_variables, max_examples=max_examples)
                  for name, (candidate, candidate_variables)
                  in candidates.items() if name in missing}
      if BAGNET_ALL_LOCATIONS in missing:
        # What stage 3 made of the representation for any policy: that
        # epoch's BagNet on every location (stage 1's whole-image readout).
        whole = run.evaluate_references(
            "dev", max_examples, variables={"representation": variables}
        )["representation"]
        measured[BAGNET_ALL_LOCATIONS] = {
            "top1": np.full(run_config.eval_glimpses, whole["top1"]),
            "coverage": np.ones(run_config.eval_glimpses)}
      report(base, measured)
      rows = [row for name, out in measured.items()
              for row in accuracy_rows(base, name, out)]
      results.add(rows, dict(
          base, steps=step, minutes=minutes if epoch == FLAGS.epochs
          else float("nan"), cpu=machine,
          **interval_means(logged, "policy", step - steps_per_epoch, step)))


def top1_by(rows: list[dict]) -> dict[tuple, float]:
  """{(seed, arm, setting, stage_epochs, epoch, policy, glimpses): top1}."""
  return {key_of(r) + (r["policy"], r["glimpses"]): r["top1"] for r in rows}


def curve_tables(accuracy: list[dict]) -> str:
  """Markdown tables of dev top-1 (%) at t = 1 / 6 / 12: stage 2 against its
  length, stage 3 against its epoch."""
  by = top1_by(accuracy)
  runs = sorted({key_of(r) + (r["policy"],) for r in accuracy})
  lines = ["| seed | arm | setting | stage epochs | epoch | policy | "
           + " | ".join(f"t={t}" for t in SHOWN) + " |",
           "|---:|---|---|---:|---:|---|" + "---:|" * len(SHOWN)]
  for run in runs:
    seed, arm, setting, stage_epochs, epoch, policy = run
    values = [by.get(run + (t,)) for t in SHOWN]
    lines.append(f"| {seed} | {arm} | {setting} | {stage_epochs:g} | {epoch} "
                 f"| {policy} | " + " | ".join(
                     "" if v is None else f"{100 * v:.1f}" for v in values)
                 + " |")
  return "\n".join(lines)


def plot_curves(accuracy: list[dict], training: dict[str, list[dict]],
                references: list[dict], path: epath.Path) -> None:
  """Four panels: stage 2's dev top-1 against its length; stage 3's against
  its epoch with the BagNet frozen, and with everything trained (its BagNet
  read by ordered logits, the swap and on all locations beside it); stage 3's
  reward and first-step entropy. The
  greedy rules of the lowest seed shown are horizontal lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from saccader_jax import evaluation  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(2, 2, figsize=(15, 10))
  (stage2_ax, frozen_ax), (full_ax, training_ax) = axes
  styles = dict(zip(SHOWN, ("-", "--", ":")))
  by = top1_by(accuracy)
  seeds = sorted({r["seed"] for r in accuracy})
  arm_axes = ((stage2_ax, "stage2"), (frozen_ax, "stage3_frozen"),
              (full_ax, "stage3_full"))
  for ax, _ in arm_axes:
    for rule, label in REFERENCE_RULES.items():
      for t in SHOWN:
        values = [r["top1"] for r in references if r["policy"] == rule
                  and r["glimpses"] == t and seeds and r["seed"] == seeds[0]]
        if values:
          ax.axhline(100 * values[0], color="grey" if rule ==
                     "ordered_logits" else "tab:green", ls=styles[t], lw=0.8,
                     label=(f"seed {seeds[0]}, greedy {label}, t={t}"
                            if ax is stage2_ax else None))
  # Green and grey are the reference lines'.
  palette = ["tab:blue", "tab:orange", "tab:red", "tab:purple",
             "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
  colour_of = {}   # (seed, arm, setting, policy): its colour in every panel
  for ax, arm in arm_axes:
    colours = iter(palette * 4)
    curves = sorted({(r["seed"], r["setting"], r["policy"])
                     for r in accuracy if r["arm"] == arm})
    for seed, setting, policy in curves:
      colour = colour_of[(seed, arm, setting, policy)] = next(colours)
      keys = sorted({key_of(r) for r in accuracy if (
          r["seed"], r["arm"], r["setting"], r["policy"]) == (
              seed, arm, setting, policy)}, key=lambda k: (k[3], k[4]))
      x = [k[3] if arm == "stage2" else k[4] for k in keys]
      for t in SHOWN:
        points = [(xi, 100 * by[k + (policy, t)]) for xi, k in zip(x, keys)
                  if k + (policy, t) in by]
        if points:
          ax.plot(*zip(*points), color=colour, ls=styles[t], marker=".",
                  label=(f"seed {seed} {setting} {policy}" if t == SHOWN[0]
                         else None))
  lengths = sorted({r["stage_epochs"] for r in accuracy
                    if r["arm"] == "stage2"})
  if lengths:
    stage2_ax.set_xscale("log", base=2)
    stage2_ax.set_xticks(lengths, [f"{x:g}" for x in lengths])
  shown = " / ".join(f"t = {t} {name}" for t, name in zip(
      SHOWN, ("solid", "dashed", "dotted")))
  stage2_ax.set(xlabel="stage-2 length (epochs)", ylabel="dev top-1 (%)",
                title=f"Stage 2 ({shown})")
  frozen_ax.set(xlabel="stage-3 epoch (0: the stage-2 policy)",
                ylabel="dev top-1 (%)", title="Stage 3, BagNet frozen")
  full_ax.set(xlabel="stage-3 epoch (0: the stage-2 policy)",
              ylabel="dev top-1 (%)",
              title="Stage 3, everything trained: ordered logits, swap and "
                    "all locations read that epoch's BagNet")
  for (seed, arm, setting) in sorted({(r["seed"], r["arm"], r["setting"])
                                      for r in training.get("stage3", [])}):
    rows = sorted((r for r in training["stage3"] if (
        r["seed"], r["arm"], r["setting"]) == (seed, arm, setting)
                   and r["epoch"] > 0), key=lambda r: r["epoch"])
    # The full arm's colours in its own panel are per policy: black here.
    colour = (colour_of.get((seed, arm, setting, "saccader"), "black")
              if arm == "stage3_frozen" else "black")
    training_ax.plot([r["epoch"] for r in rows], [r["reward"] for r in rows],
                     color=colour, marker=".",
                     label=f"seed {seed} {arm} {setting}")
    training_ax.plot([r["epoch"] for r in rows],
                     [r["entropy_first"] for r in rows], color=colour,
                     ls="--", marker=".")
  training_ax.set(xlabel="stage-3 epoch",
                  title="Stage 3: sampled reward (solid), first-step "
                        "entropy in nats (dashed)")
  for ax, arm in arm_axes:
    if not any(r["arm"] == arm for r in accuracy):
      ax.clear()
      ax.set_axis_off()
      ax.text(0.5, 0.5, f"no {arm} runs in these CSVs", ha="center",
              va="center", transform=ax.transAxes)
  for ax in axes.flat:
    if ax.axison:
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6)
  fig.tight_layout()
  path.write_bytes(evaluation.figure_png(fig))


def replot() -> None:
  prefix = FLAGS.out
  accuracy = read_csv(f"{prefix}_accuracy.csv")
  training = {stage: read_csv(path) for stage in ("stage2", "stage3")
              if (path := epath.Path(f"{prefix}_{stage}_training.csv"))
              .exists()}
  references = (read_csv(FLAGS.references)
                if FLAGS.references and epath.Path(FLAGS.references).exists()
                else [])
  path = epath.Path(f"{prefix}_curves.png")
  plot_curves(accuracy, training, references, path)
  print(curve_tables(accuracy))
  print(f"\n{path}")


def main(argv):
  del argv
  if FLAGS.plot:
    replot()
    return
  for name in ("arm", "setting", "workdir"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required (or --plot).")
  config = FLAGS.config
  entry.prepare_process(config.get("cpu_ynn_fusions", ""))
  config.cache_frozen_representation = FLAGS.cache
  results = Results(FLAGS.out, "stage2" if FLAGS.arm == "stage2"
                    else "stage3")
  if FLAGS.arm == "stage2":
    stage2_curve(config, results, timing.machine())
  else:
    if not FLAGS.stage2_workdir:
      raise app.UsageError(f"--arm={FLAGS.arm} needs --stage2_workdir.")
    stage3_curve(config, results, timing.machine())


if __name__ == "__main__":
  app.run(main)
