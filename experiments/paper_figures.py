"""Sections 4.1-4.3 on the embedded data: Saccader against the baselines.

    python -m experiments.paper_figures --workdir=DIR [--seeds=0,1,2] [--smoke]

For each seed, trains what DIR/seed_<s> lacks (Saccader's three stages, the
full-image classifier, DRAM, and the Saccader + high-resolution classifier;
checkpoints are reused), then evaluates on the test split the learned
policy (after stage 3; with --with_stage2 also after stage 2, as
"saccader_stage2", and the final model with the stage-2 location network put
back, as "saccader_swap"), the four baselines of section 4.1 (ordered logits,
Sobel mean, Sobel variance, random; they read the stage-1 BagNet), DRAM
(section 4.1's recurrent baseline), and Saccader + classifier (section 4.3)
with the classifier's crops from the 2x canvas ("saccader_classnet_2x") and
from the canvas itself ("saccader_classnet_1x", fine-tuned apart in
DIR/seed_<s>/classnet_1x), for t = 1..T_max glimpses: top-1/top-5,
coverage, and the full-image classifier's accuracy with the glimpsed pixels
occluded. Writes into DIR:
  accuracy_vs_glimpses.csv   policy, seed, glimpses, top1, top5, coverage,
                             occluded_top1, occluded_top5
  references.csv             seed, reference classifier, top1, top5
  summary.md                 mean +- SD over seeds at t = 1, 2, 3, 6, 12,
                             and paired differences between policies
                             (experiments.paired_differences)
  paired_differences.csv     per pair, measure and t: each seed's
                             difference, mean, SD, 95 % interval
  paired_differences.png     the top-1 differences against glimpses
  figure3.png                (a) accuracy vs glimpses, (b) coverage
  figure5.png                (a) accuracy vs coverage, (b) occluded accuracy
  figure6.png                Saccader + classifier at S_hr = S and 2 S
  glimpses_<policy>.png      glimpse pictures of the table's first seed
--smoke: a narrow model, a few steps per stage and 256 test images (CI).

Seeds whose rows are in DIR's CSV already are not evaluated again: the same
command resumes a stopped run, and seeds run apart (--seeds=3, then
--seeds=4) add up in one table. --reuse_from=DIR2 takes each seed's
finished stage 1 (--reuse_stages) from DIR2/seed_<s> where the recorded
runs agree; --noocclusion --nodram --noclassnet trains only the Saccader.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

from saccader_jax import cpu_kernels  # pylint: disable=g-import-not-at-top

from absl import app
from absl import flags
from absl import logging
from etils import epath
import jax
import numpy as np
from ml_collections import config_flags

from experiments import paired_differences
from experiments.results_csv import read_csv
from experiments.results_csv import write_csv
from saccader_jax import errors
from saccader_jax import paths
from saccader_jax import workdir_lease

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/fashion_mnist_whole_items_saccader.py",
    "Base training config.",
    lock_config=False)
flags.DEFINE_string("workdir", None, "Where seeds train and results go.")
flags.DEFINE_list("seeds", ["0"], "Training seeds.")
flags.DEFINE_bool("smoke", False, "Tiny settings, for CI.")
flags.DEFINE_integer("max_test_examples", 0,
                     "Test images per evaluation; 0: the whole split.")
flags.DEFINE_enum("baseline_bagnet", "representation",
                  ["representation", "final"],
                  "Baselines read the stage-1 BagNet or the final Saccader's "
                  "representation network.")
flags.DEFINE_bool("with_stage2", False,
                  "Also evaluate the policy after location pretraining "
                  "(saccader_stage2) and the final model with the stage-2 "
                  "location network (saccader_swap): what stage 3 adds "
                  "(~2 min per seed).")
flags.DEFINE_string("occlusion_fill", "mean",
                    "What occluded pixels become: 'mean' (0 after "
                    "normalisation, the paper's), 'background' (a black "
                    "pixel: -mean / std of a one-channel data set) or a "
                    "value in preprocessed units.")
flags.DEFINE_bool("occlusion", True,
                  "Measure the full-image classifier's accuracy with each "
                  "policy's glimpses occluded. With --noclassnet too, the "
                  "classifier is not trained (~10 min per seed on the "
                  "parts data, 2 CPU cores).")
flags.DEFINE_bool("dram", True, "Train and evaluate DRAM (config.dram).")
flags.DEFINE_bool("classnet", True,
                  "Train and evaluate Saccader + high-resolution classifier "
                  "(config.classnet) at S_hr = 2 S and S.")
flags.DEFINE_list("policies", [],
                  "Evaluate only these (names as in the CSV); default all. "
                  "The models are trained either way.")
flags.DEFINE_string("reuse_from", None,
                    "A folder of earlier seeds (its seed_<s>) whose finished "
                    "--reuse_stages each seed takes over instead of training "
                    "them, e.g. stage 1 of a config that differs only in "
                    "later stages (a seed it lacks trains them). Refused "
                    "where the recorded run differs in model, data, seed, "
                    "batch size or those stages' settings.")
flags.DEFINE_list("reuse_stages", ["representation"],
                  "--reuse_from: the stages taken over.")
flags.DEFINE_bool("replot", False,
                  "Train and evaluate nothing: write summary.md and the "
                  "figures from DIR's accuracy_vs_glimpses.csv and "
                  "references.csv (e.g. CSVs of seeds run apart, joined).")
flags.mark_flag_as_required("workdir")

BASELINES = ("ordered_logits", "sobel_mean", "sobel_variance", "random")
CLASSNETS = ("saccader_classnet_1x", "saccader_classnet_2x")
POLICY_NAMES = ("saccader", "saccader_stage2", "saccader_swap") + BASELINES + (
    "dram",) + CLASSNETS
TABLE_GLIMPSES = (1, 2, 3, 6, 12)
COLUMNS = ("top1", "top5", "coverage", "occluded_top1", "occluded_top5")
STYLES = {"saccader": ("C3", "o"), "saccader_stage2": ("C1", "D"),
          "saccader_swap": ("C9", "d"),
          "ordered_logits": ("C0", "s"),
          "sobel_mean": ("C2", "^"), "sobel_variance": ("C4", "v"),
          "random": ("C7", "x"), "dram": ("C5", "P"),
          "saccader_classnet_1x": ("C6", "*"),
          "saccader_classnet_2x": ("C8", "h")}


def occlusion_fill(dataset, fill: str) -> str:
  """--occlusion_fill as config.evals.occlusion.fill reads it."""
  if fill != "background":
    return fill
  if len(dataset.mean) != 1:
    raise app.UsageError("--occlusion_fill=background needs a one-channel "
                         "data set; give a value instead.")
  return f"{-dataset.mean[0] / dataset.std[0]:.4f}"


def experiment_config(base, seed: int, smoke: bool):
  """The base config with the classifier (and DRAM, classnet) stages, every
  evaluator and the seed."""
  config = base.copy_and_resolve_references()
  config.seed = seed
  # After the Saccader's: its stages keep their seeds and data order, so
  # seed 0's Saccader is the main job's.
  # The classnet starts from the full-image classifier.
  extra = (("classifier",) if FLAGS.occlusion or FLAGS.classnet else ()) + (
      ("dram",) if FLAGS.dram else ()) + (
          ("classnet",) if FLAGS.classnet else ())
  config.run_stages = tuple(config.run_stages) + tuple(
      s for s in extra if s not in config.run_stages)
  if FLAGS.occlusion:
    config.evals.occlusion = {"classifier": "classifier",
                              "fill": occlusion_fill(config.dataset,
                                                     FLAGS.occlusion_fill)}
  # The test split is evaluated here; the trainer's dev evaluations after
  # each stage would add minutes per seed.
  config.eval_at_stage_end = False
  if smoke:
    rep = config.model.representation
    rep.planes, rep.stem_channels, rep.what_channels = (4, 8, 8), 8, 16
    config.model.attention.widths = (16, 8)
    config.model.mixed_channels = 8
    config.classifier.widths, config.classifier.root_channels = (4, 8, 8), 8
    net = config.dram.glimpse_network
    net.widths, net.root_channels = (4, 8, 8), 8
    config.dram.classification_units = config.dram.location_units = 16
    for stage in config.stages.values():
      stage.num_steps = 2
    config.batch_size, config.eval_batch_size = 32, 128
    config.eval_max_examples = 128
    config.checkpoint_every_steps = 2
    config.async_checkpoints = False
  return config


class Progress:
  """Prints what is running, time so far and the expected time left."""

  def __init__(self, total_units: float):
    self.start = time.time()
    self.total = total_units
    self.done = 0.0

  def __call__(self, message: str, units: float = 0.0):
    self.done += units
    elapsed = time.time() - self.start
    eta = (elapsed / self.done * (self.total - self.done)
           if self.done else float("nan"))
    print(f"[{elapsed / 60:5.1f} min, ETA {eta / 60:5.1f} min] {message}",
          flush=True)


def policy_candidates(run, seed: int) -> dict[str, tuple]:
  """The policies of one seed's run: name -> (policy, variables, key,
  field): the Saccader (after stage 3; with --with_stage2 also after stage 2
  and the swap), the four baselines, DRAM and the 2x classnet."""
  from saccader_jax import policies  # pylint: disable=g-import-not-at-top
  from saccader_jax.objectives import saccader as saccader_objectives  # pylint: disable=g-import-not-at-top
  final = run.final("model")   # the Saccader (DRAM and classnet have their own)
  saccader = run.learned_policy("model")
  candidates = {"saccader": (saccader, final.variables, None, "model")}
  if FLAGS.with_stage2 and "location" in run.stage_names:
    location = run.stage("location").variables
    # What stage 3 adds: the same policy after location pretraining.
    candidates["saccader_stage2"] = (saccader, location, None, "model")
    # The swap test: the final model with the stage-2 location network put
    # back; its gap to "saccader" is what stage 3 did to the policy.
    candidates["saccader_swap"] = (saccader, saccader_objectives.
                                   with_location_network(final.variables,
                                                         location),
                                   None, "model")
  bagnet = (run.stage("representation") if FLAGS.baseline_bagnet ==
            "representation" else final).variables
  for name in BASELINES:
    key = jax.random.key(seed) if name == "random" else None
    candidates[name] = (policies.make_baseline_policy(name, run.config,
                                                      bagnet),
                        None, key, "model")
  if "dram" in run.stage_names:
    candidates["dram"] = (run.learned_policy("dram"),
                          run.stage("dram").variables, None, "dram")
  if "classnet" in run.stage_names:
    candidates["saccader_classnet_2x"] = (run.learned_policy("classnet"),
                                          run.stage("classnet").variables,
                                          None, "classnet")
  return candidates


def selected(candidates: dict) -> dict:
  """candidates, less those --policies leaves out."""
  if not FLAGS.policies:
    return candidates
  unknown = set(FLAGS.policies) - set(POLICY_NAMES)
  if unknown:
    raise app.UsageError(f"--policies: unknown {sorted(unknown)}; valid: "
                         f"{list(POLICY_NAMES)}")
  return {n: c for n, c in candidates.items() if n in FLAGS.policies}


def evaluate_policy(run, name: str, candidate: tuple, seed: int,
                    max_examples, draw: bool
                    ) -> tuple[list[dict], Optional[Any], dict]:
  """One policy on the test split: its CSV rows for t = 1..T_max, if draw
  its glimpse picture (None if the config draws none), and its results."""
  policy, variables, key, field = candidate
  split = "test"
  results = run.evaluate(policy, split, variables, key=key,
                         max_examples=max_examples, field=field)
  rows = [{"policy": name, "seed": seed, "glimpses": t + 1,
           **{c: float(results[c][t]) if c in results else float("nan")
              for c in COLUMNS}}
          for t in range(run.config.eval_glimpses)]
  picture = None
  if draw:
    picture = run.pictures(policy, split, variables, key,
                           title=f"{name}, test split, seed {seed}",
                           field=field).get("glimpses")
  return rows, picture, results


def evaluate_seed(config, workdir: epath.Path, seed: int, max_examples,
                  progress: Progress, draw: bool = False):
  """Trains what is missing, evaluates every policy; returns (rows,
  references, pictures)."""
  from saccader_jax.research import Run  # pylint: disable=g-import-not-at-top
  run = Run(config, workdir)
  source = (paths.absolute_path(FLAGS.reuse_from) / f"seed_{seed}"
            if FLAGS.reuse_from else None)
  if source and source.exists():   # else the seed trains every stage
    copied = run.reuse(source, FLAGS.reuse_stages)
    if copied:
      progress(f"seed {seed}: took over {', '.join(copied)} from {source}")
  progress(f"seed {seed}: training {', '.join(config.run_stages)} "
           f"in {workdir} (finished stages are restored)")
  run.train()
  progress(f"seed {seed}: trained", units=0.65)
  runs = {name: run for name in POLICY_NAMES}
  candidates = policy_candidates(run, seed)
  if "classnet" in run.stage_names:
    same = same_resolution_run(config, workdir, run, progress)
    candidates["saccader_classnet_1x"] = (
        same.learned_policy("classnet"), same.stage("classnet").variables,
        None, "classnet")
    runs["saccader_classnet_1x"] = same
  candidates = selected(candidates)
  rows, pictures = [], {}
  for name, candidate in candidates.items():
    policy_rows, picture, results = evaluate_policy(
        runs[name], name, candidate, seed, max_examples, draw)
    rows += policy_rows
    if picture is not None:
      pictures[name] = picture
    progress(f"seed {seed}: evaluated {name} ({results['count']} images): "
             f"top-1 at 1/6/12 glimpses {100 * results['top1'][0]:.1f}/"
             f"{100 * results['top1'][5]:.1f}/{100 * results['top1'][-1]:.1f}",
             units=0.35 / len(candidates))
  references = [{"seed": seed, "reference": ref["label"], "top1": ref["top1"],
                 "top5": ref["top5"]}
                for ref in run.evaluate_references("test",
                                                   max_examples).values()]
  for owner in set(runs.values()):
    owner.close()
  return rows, references, pictures


def same_resolution_run(config, workdir: epath.Path, run, progress: Progress):
  """The classnet stage alone with S_hr = S, in workdir/classnet_1x,
  starting from this seed's Saccader and classifier, trained. No occlusion:
  its boxes are the Saccader's, and so would its occluded accuracy be."""
  from saccader_jax.research import Run  # pylint: disable=g-import-not-at-top
  same = config.copy_and_resolve_references()
  same.classnet.input_size = config.dataset.image_size
  same.run_stages = ("classnet",)
  del same.evals["occlusion"]
  saccader_stage = [n for n in config.run_stages
                    if n in ("representation", "location", "policy")][-1]
  other = Run(same, workdir / "classnet_1x", pretrained={
      "model": run.stage(saccader_stage).variables,
      "classifier": run.stage("classifier").variables})
  progress(f"training classnet at S_hr = S in {workdir / 'classnet_1x'}")
  other.train()
  return other


def aggregate(rows: list[dict]) -> dict:
  """{policy: {column: (mean [T], sd [T])}} over seeds (SD 0 for one)."""
  out = {}
  for name in POLICY_NAMES:
    mine = [r for r in rows if r["policy"] == name]
    if not mine:
      continue
    seeds = sorted({r["seed"] for r in mine})
    out[name] = {}
    for column in COLUMNS:
      values = np.array([[r[column] for r in mine if r["seed"] == s]
                         for s in seeds])
      out[name][column] = (values.mean(0), values.std(0, ddof=1)
                           if len(seeds) > 1 else np.zeros(values.shape[1]))
  return out


def summary_table(stats: dict, references: list[dict], num_seeds: int,
                  num_glimpses: int) -> str:
  shown = [t for t in TABLE_GLIMPSES if t <= num_glimpses]
  lines = [f"Test accuracy (%), mean +- SD over {num_seeds} seed(s)", "",
           "| policy | measure | " + " | ".join(f"t={t}" for t in shown) +
           " |", "|---|---|" + "---:|" * len(shown)]
  for name, columns in stats.items():
    for column in COLUMNS:
      mean, sd = columns[column]
      lines.append(f"| {name} | {column} | " + " | ".join(
          f"{100 * mean[t - 1]:.1f} +- {100 * sd[t - 1]:.1f}"
          for t in shown) + " |")
  lines += ["", "| reference, whole images | top-1 | top-5 |",
            "|---|---:|---:|"]
  for label in sorted({r["reference"] for r in references}):
    mine = [r for r in references if r["reference"] == label]
    top1 = np.array([r["top1"] for r in mine])
    top5 = np.array([r["top5"] for r in mine])
    sd = lambda x: x.std(ddof=1) if len(x) > 1 else 0.0
    lines.append(f"| {label} | {100 * top1.mean():.1f} +- "
                 f"{100 * sd(top1):.1f} | {100 * top5.mean():.1f} +- "
                 f"{100 * sd(top5):.1f} |")
  return "\n".join(lines)


def _curve(ax, x, y, sd, name, xerr=None):
  color, marker = STYLES.get(name, ("k", "."))
  ax.errorbar(x, 100 * y, yerr=100 * sd, xerr=xerr, color=color,
              marker=marker, ms=4, lw=1.2, capsize=2, label=name)


def _save(fig, path: epath.Path) -> epath.Path:
  from saccader_jax import evaluation  # pylint: disable=g-import-not-at-top
  path.write_bytes(evaluation.figure_png(fig))
  return path


def figure3(plt, stats: dict, references: list[dict], trained_glimpses: int,
            subtitle: str):
  """(a) accuracy and (b) coverage against glimpses."""
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
  for name, columns in stats.items():
    glimpses = np.arange(1, len(columns["top1"][0]) + 1)
    _curve(a, glimpses, *columns["top1"], name)
    _curve(b, glimpses, *columns["coverage"], name)
  for i, label in enumerate(sorted({r["reference"] for r in references})):
    top1 = np.mean([r["top1"] for r in references if r["reference"] == label])
    a.axhline(100 * top1, color="k", ls=(":", "--")[i % 2], lw=1,
              label=f"{label} (whole image)")
  for ax in (a, b):
    ax.axvline(trained_glimpses, color="gray", ls=":", lw=1)
    ax.set_xlabel("glimpses")
    ax.grid(alpha=0.3)
  a.set_ylabel("top-1 accuracy (%)")
  a.set_title("(a) accuracy; dotted: trained T", fontsize=9)
  b.set_ylabel("image covered (%)")
  b.set_title("(b) coverage", fontsize=9)
  a.legend(fontsize=7)
  fig.suptitle(f"Figure 3, {subtitle}", fontsize=9)
  fig.tight_layout()
  return fig


def figure5(plt, stats: dict, subtitle: str):
  """(a) accuracy against coverage, (b) the full-image classifier's
  accuracy with the glimpses occluded."""
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
  for name, columns in stats.items():
    glimpses = np.arange(1, len(columns["top1"][0]) + 1)
    cover = 100 * columns["coverage"][0]
    color, marker = STYLES.get(name, ("k", "."))
    a.plot(cover, 100 * columns["top1"][0], color=color, marker=marker,
           ms=4, lw=1.2, label=name)
    _curve(b, glimpses, *columns["occluded_top1"], name)
  a.set_xlabel("image covered (%)")
  a.set_ylabel("top-1 accuracy (%)")
  a.set_title("(a) accuracy vs coverage", fontsize=9)
  b.set_xlabel("glimpses occluded")
  b.set_ylabel("full-image classifier top-1 (%)")
  b.set_title("(b) occluded accuracy (lower: the glimpses mattered more)",
              fontsize=9)
  for ax in (a, b):
    ax.grid(alpha=0.3)
  a.legend(fontsize=7)
  fig.suptitle(f"Figure 5, {subtitle}", fontsize=9)
  fig.tight_layout()
  return fig


def figure6(plt, shown: dict, trained_glimpses: int, subtitle: str):
  """Top-1 and top-5 of the Saccader + classifier models beside the
  Saccader's."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, column in zip(axes, ("top1", "top5")):
    for name, columns in shown.items():
      glimpses = np.arange(1, len(columns[column][0]) + 1)
      _curve(ax, glimpses, *columns[column], name)
    ax.axvline(trained_glimpses, color="gray", ls=":", lw=1)
    ax.set_xlabel("glimpses")
    ax.set_ylabel(f"{column[:3]}-{column[3:]} accuracy (%)")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  axes[0].set_title("Saccader's glimpses read by a separate classifier: "
                    "crops of the canvas (1x) or of it upscaled 2x",
                    fontsize=8)
  fig.suptitle(f"Figure 6, {subtitle}", fontsize=9)
  fig.tight_layout()
  return fig


def plot_figures(stats: dict, references: list[dict], trained_glimpses: int,
                 workdir: epath.Path, subtitle: str) -> list[epath.Path]:
  """figure3.png, figure5.png and (with classnets) figure6.png in
  workdir."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  classnets = {n: c for n, c in stats.items() if n in CLASSNETS}
  stats = {n: c for n, c in stats.items() if n not in CLASSNETS}
  paths = [
      _save(figure3(plt, stats, references, trained_glimpses, subtitle),
            workdir / "figure3.png"),
      _save(figure5(plt, stats, subtitle), workdir / "figure5.png")]
  if classnets:
    shown = {**{n: stats[n] for n in ("saccader",) if n in stats},
             **classnets}
    paths.append(_save(figure6(plt, shown, trained_glimpses, subtitle),
                       workdir / "figure6.png"))
  return paths


def write_summary(workdir: epath.Path, rows: list[dict],
                  references: list[dict], num_glimpses: int,
                  trained_glimpses: int, subtitle: str) -> str:
  """summary.md and the figures from the rows so far; returns the table."""
  stats = aggregate(rows)
  num_seeds = len({r["seed"] for r in rows})
  table = summary_table(stats, references, num_seeds, num_glimpses)
  paired = paired_differences.table_rows(rows)
  if paired:
    write_csv(workdir / "paired_differences.csv", paired)
    paired_differences.plot(rows, workdir / "paired_differences.png")
    table += "\n\n" + paired_differences.markdown(rows)
  (workdir / "summary.md").write_text(table + "\n")
  plot_figures(stats, references, trained_glimpses, workdir,
               f"{subtitle}, test split, {num_seeds} seed(s)"
               + (" (smoke settings)" if FLAGS.smoke else ""))
  return table


def run_seeds(base, workdir: epath.Path, seeds: list[int]) -> str:
  """Trains and evaluates each seed, writing the CSVs, summary and figures
  after every seed (a long run shows results early); returns the table."""
  from saccader_jax import evaluation  # pylint: disable=g-import-not-at-top
  from saccader_jax import run_record  # pylint: disable=g-import-not-at-top
  max_examples = FLAGS.max_test_examples or (256 if FLAGS.smoke else None)
  csv_path = workdir / "accuracy_vs_glimpses.csv"
  # Seeds evaluated before (a stopped or an earlier run) keep their rows.
  rows = read_csv(csv_path) if csv_path.exists() else []
  references = (read_csv(workdir / "references.csv")
                if rows and (workdir / "references.csv").exists() else [])
  evaluated = {r["seed"] for r in rows}
  progress = Progress(max(1, len(set(seeds) - evaluated)))

  def summarise(config) -> str:
    return write_summary(workdir, rows, references, config.eval_glimpses,
                         config.stages.policy.num_glimpses,
                         config.dataset.name)

  table = ""
  for seed in seeds:
    config = experiment_config(base, seed, FLAGS.smoke)
    if seed in evaluated:
      # Refuses a seed trained with another model or data set.
      run_record.check_rerun(workdir / f"seed_{seed}", config)
      progress(f"seed {seed}: its rows are in {csv_path}; not evaluated "
               "again (remove them to re-evaluate)")
      continue
    seed_rows, seed_refs, pictures = evaluate_seed(
        config, workdir / f"seed_{seed}", seed, max_examples, progress,
        draw=not rows)   # the first seed of the table
    rows += seed_rows
    references += seed_refs
    for name, picture in pictures.items():
      (workdir / f"glimpses_{name}.png").write_bytes(
          evaluation.picture_png(picture))
    write_csv(workdir / "accuracy_vs_glimpses.csv", rows)
    write_csv(workdir / "references.csv", references)
    table = summarise(config)
  if not table and rows:     # every seed evaluated before
    table = summarise(config)
  return table


def main(argv):
  del argv
  base = FLAGS.config
  fusions = base.get("cpu_ynn_fusions", "")
  # A bad value is left to the config check, which names it.
  entry.prepare_process(
      "" if cpu_kernels.unknown_ynn_fusion_kinds(fusions) else fusions)
  # The trainer's INFO lines are the progress within a seed (stage starts,
  # steps/s and the stage's ETA from clu's ReportProgress).
  logging.set_verbosity(logging.INFO)
  workdir = paths.absolute_path(FLAGS.workdir)
  try:
    # It writes its tables and figures there: not into a live job's workdir.
    with workdir_lease.hold(workdir):
      write_results(base, workdir)
  except errors.JobError as e:
    sys.exit(errors.report(e))


def write_results(base, workdir: epath.Path) -> None:
  """Trains and evaluates --seeds into workdir (or, --replot, redraws its
  tables and figures from its CSVs)."""
  if FLAGS.replot:
    rows = read_csv(workdir / "accuracy_vs_glimpses.csv")
    print(write_summary(workdir, rows, read_csv(workdir / "references.csv"),
                        max(r["glimpses"] for r in rows),
                        base.stages.policy.num_glimpses, base.dataset.name))
    return
  print(run_seeds(base, workdir, [int(s) for s in FLAGS.seeds]))
  print(f"\nResults in {workdir}: accuracy_vs_glimpses.csv, references.csv, "
        "summary.md, figure3.png, figure5.png, figure6.png, "
        "glimpses_<policy>.png",
        flush=True)


if __name__ == "__main__":
  app.run(main)
