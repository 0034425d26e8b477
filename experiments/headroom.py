"""Headroom over ordered logits, measured on finished runs (dev split).

    python -m experiments.headroom --workdirs=DIR/seed_0,DIR/seed_1,DIR/seed_2 \
        [--eval_split=dev] [--out=experiments/results/parts_headroom]

For each finished Saccader run (its three stages; the config recorded in
the workdir; nothing is written there):
  1. how often the Saccader's first glimpse is ordered logits' first glimpse,
     and the overlap of their first 6 locations, after stage 2 (location
     pretraining) and after stage 3;
  2. top-1 and coverage at t = 1..T_max of greedy rules over the same frozen
     stage-1 BagNet: ordered logits (the paper's), the predicted class's
     probability, its margin over the runner-up, and ordered logits with the
     8 neighbours of each glimpse demoted (`saccader_jax/policies/`), beside
     the Saccader after stages 2 and 3.
Writes OUT_accuracy.csv (seed, policy, glimpses, top1, coverage) and
OUT_agreement.csv (seed, stage, first_glimpse_equal, first6_overlap), and
prints the tables (--replot: the tables of OUT's CSVs alone): mean +- SD over the runs, and each rule's paired
difference from ordered logits.
"""

from __future__ import annotations

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

from absl import app
from absl import flags
from etils import epath
import jax
import numpy as np

from experiments.results_csv import read_csv
from experiments.results_csv import write_csv

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", [], "Finished runs (one per seed).")
flags.DEFINE_string("eval_split", "dev", "Split to measure (choose on dev).")
flags.DEFINE_string("out", None, "Prefix of the CSVs written (optional).")
flags.DEFINE_integer("eval_max_examples", 0, "Examples per split; 0: all.")
flags.DEFINE_bool("replot", False,
                  "Measure nothing: print the tables of OUT's CSVs (e.g. "
                  "runs measured apart, their rows joined).")

RULES = ("ordered_logits", "predicted_probability", "predicted_margin",
         "ordered_logits_diverse")
SACCADER = {"saccader_stage2": "location", "saccader": "policy"}
SHOWN = (1, 2, 3, 6, 12)
OVERLAP_GLIMPSES = 6
BAGNET = "bagnet_all_locations"


def flat_locations(out, grid_width: int) -> np.ndarray:
  """PolicyOutput -> [batch, T] flat location indices."""
  locations = np.asarray(out.locations)
  return locations[..., 0] * grid_width + locations[..., 1]


def agreement(run, policies_by_stage: dict, reference: tuple, split: str,
              max_examples) -> dict[str, tuple[float, float]]:
  """{stage: (fraction of images whose first glimpse is the reference's,
  mean overlap of the first 6 locations)}; each policy a (Policy,
  variables) pair (variables None: the policy's own)."""
  def locate(policy, variables):
    variables = policy.variables if variables is None else variables
    fn = jax.jit(lambda v, x: policy.apply(v, x, OVERLAP_GLIMPSES, None))
    return lambda images: flat_locations(fn(variables, images), width)

  size = run.config.dataset.image_size
  width = reference[0].geometry(size, size).grid_width
  reference_fn = locate(*reference)
  stage_fns = {name: locate(*pair) for name, pair in policies_by_stage.items()}
  equal = {name: 0.0 for name in stage_fns}
  overlap = {name: 0.0 for name in stage_fns}
  count = 0
  for batch in run.eval_batches(split, max_examples):
    keep = np.asarray(batch["mask"]) > 0
    ref = reference_fn(batch["image"])[keep]
    for name, fn in stage_fns.items():
      mine = fn(batch["image"])[keep]
      equal[name] += float(np.sum(mine[:, 0] == ref[:, 0]))
      overlap[name] += sum(len(set(a) & set(b)) / OVERLAP_GLIMPSES
                           for a, b in zip(mine, ref))
    count += int(keep.sum())
  return {name: (equal[name] / count, overlap[name] / count)
          for name in stage_fns}


def reference_rows(run, seed: int, split: str, max_examples) -> list[dict]:
  """The stage-1 BagNet on all locations (every glimpse rule's ceiling when
  its glimpses all predict the whole-image class), as rows like a policy's
  at every t."""
  reference = run.evaluate_references(split, max_examples)["representation"]
  return [{"seed": seed, "policy": BAGNET, "glimpses": t,
           "top1": float(reference["top1"]), "coverage": 1.0}
          for t in range(1, run.config.eval_glimpses + 1)]


def measure_run(workdir: str, split: str, max_examples
                ) -> tuple[list[dict], list[dict]]:
  """Accuracy rows and agreement rows of one finished run."""
  import saccader_jax  # pylint: disable=g-import-not-at-top
  from saccader_jax import policies  # pylint: disable=g-import-not-at-top
  config = saccader_jax.load_config(workdir)
  seed = int(config.seed)
  rows, agreed = [], []
  with saccader_jax.Run(config, workdir, read_only=True) as run:
    trained = run.train()
    bagnet = trained["representation"].variables
    candidates = {name: (run.learned_policy(), trained[stage].variables)
                  for name, stage in SACCADER.items()}
    for rule in RULES:
      candidates[rule] = (policies.make_baseline_policy(rule, config, bagnet),
                          None)
    for name, (policy, variables) in candidates.items():
      results = run.evaluate(policy, split, variables,
                             max_examples=max_examples)
      rows += [{"seed": seed, "policy": name, "glimpses": t + 1,
                "top1": float(results["top1"][t]),
                "coverage": float(results["coverage"][t])}
               for t in range(len(results["top1"]))]
      print(f"seed {seed} {name}: top-1 at t=1/6/12 "
            + "/".join(f"{100 * results['top1'][t - 1]:.1f}"
                       for t in (1, 6, 12) if t <= len(results["top1"])),
            flush=True)
    rows += reference_rows(run, seed, split, max_examples)
    stages = {name: candidates[name] for name in SACCADER}
    for name, (first, overlap) in agreement(
        run, stages, candidates["ordered_logits"], split,
        max_examples).items():
      agreed.append({"seed": seed, "stage": name,
                     "first_glimpse_equal": first,
                     "first6_overlap": overlap})
  return rows, agreed


def mean_sd(values) -> str:
  values = 100 * np.asarray(values, np.float64)
  sd = values.std(ddof=1) if len(values) > 1 else 0.0
  return f"{values.mean():.1f} +- {sd:.1f}"


def tables(rows: list[dict], agreed: list[dict], split: str) -> str:
  seeds = sorted({r["seed"] for r in rows})
  num_glimpses = max(r["glimpses"] for r in rows)
  shown = [t for t in SHOWN if t <= num_glimpses]

  def value(policy, seed, t, column="top1"):
    return next(r[column] for r in rows if r["policy"] == policy
                and r["seed"] == seed and r["glimpses"] == t)

  names = list(SACCADER) + list(RULES)
  if any(r["policy"] == BAGNET for r in rows):
    names.append(BAGNET)
  lines = [f"{split} top-1 (%), mean +- SD over seeds {seeds}", "",
           "| policy | " + " | ".join(f"t={t}" for t in shown) + " |",
           "|---|" + "---:|" * len(shown)]
  for name in names:
    lines.append(f"| {name} | " + " | ".join(
        mean_sd([value(name, s, t) for s in seeds]) for t in shown) + " |")
  lines += ["", "Paired difference from ordered logits (points), mean +- SD",
            "", "| policy | " + " | ".join(f"t={t}" for t in shown) + " |",
            "|---|" + "---:|" * len(shown)]
  for name in names[:2] + names[3:]:
    lines.append(f"| {name} | " + " | ".join(mean_sd(
        [value(name, s, t) - value("ordered_logits", s, t) for s in seeds])
                                               for t in shown) + " |")
  lines += ["", "Coverage (%), mean over seeds", "",
            "| policy | " + " | ".join(f"t={t}" for t in shown) + " |",
            "|---|" + "---:|" * len(shown)]
  for name in names:
    lines.append(f"| {name} | " + " | ".join(
        f"{100 * np.mean([value(name, s, t, 'coverage') for s in seeds]):.1f}"
        for t in shown) + " |")
  lines += ["", "Agreement with ordered logits (%), per seed", "",
            "| seed | stage | first glimpse the same | first-6 overlap |",
            "|---:|---|---:|---:|"]
  for a in agreed:
    lines.append(f"| {a['seed']} | {a['stage']} | "
                 f"{100 * a['first_glimpse_equal']:.1f} | "
                 f"{100 * a['first6_overlap']:.1f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  entry.prepare_process()
  if FLAGS.replot:
    print(tables(read_csv(f"{FLAGS.out}_accuracy.csv"),
                 read_csv(f"{FLAGS.out}_agreement.csv"), FLAGS.eval_split))
    return
  if not FLAGS.workdirs:
    raise app.UsageError("--workdirs: give the finished runs to measure.")
  rows, agreed = [], []
  for workdir in FLAGS.workdirs:
    run_rows, run_agreed = measure_run(workdir, FLAGS.eval_split,
                                       FLAGS.eval_max_examples or None)
    rows += run_rows
    agreed += run_agreed
    if FLAGS.out:   # after every run, so that a long measurement keeps them
      write_csv(epath.Path(f"{FLAGS.out}_accuracy.csv"), rows)
      write_csv(epath.Path(f"{FLAGS.out}_agreement.csv"), agreed)
  print(tables(rows, agreed, FLAGS.eval_split))


if __name__ == "__main__":
  app.run(main)
