"""What stage 3 does to the policy, on the dev split: for choosing its
settings without the test split.

    python -m experiments.stage3_dev --config=configs/fashion_mnist_parts_saccader.py \
        --base_workdir=DIR/seed_0 --workdir=/tmp/stage3/NAME \
        [--config.stages.policy.location_learning_rate_factor=30 ...]

Takes the finished stage 1 (and, unless --retrain_location, stage 2) from
--base_workdir's checkpoints, trains the rest of config.run_stages in
--workdir, then evaluates on the dev split, for t = 1..T_max:
  stage2       the policy after location pretraining;
  stage3       the policy after stage 3;
  swap         the stage-3 model with the stage-2 location network put back
               (what the stage-3 BagNet alone changed);
and prints top-1 at t = 1, 2, 3, 6, 12 with stage 3's diagnostics: the
sampled reward and the policy's entropy at the first and last logging
interval, and each part's relative change (from the job's TensorBoard log).
Writes DIR/stage3_dev.json.
"""

from __future__ import annotations

import json
import sys

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

from absl import app
from absl import flags
from etils import epath
from ml_collections import config_flags

from experiments.logged_scalars import logged_scalars
from saccader_jax import errors
from saccader_jax import paths


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/fashion_mnist_parts_saccader.py", "Training config.",
    lock_config=False)
flags.DEFINE_string("base_workdir", None,
                    "A job whose finished stages 1 (and 2) are reused.")
flags.DEFINE_string("workdir", None, "Where the rest trains.")
flags.DEFINE_bool("retrain_location", False,
                  "Train stage 2 again (its settings being compared) "
                  "instead of reusing the base's.")
flags.DEFINE_integer("max_examples", 0, "Dev images; 0: the whole split.")
flags.mark_flags_as_required(["base_workdir", "workdir"])

GLIMPSES = (1, 2, 3, 6, 12)
DIAGNOSTICS = ("reward", "entropy_first", "entropy", "accuracy")


def evaluate_candidates(run, split: str, max_examples) -> dict[str, list]:
  """Dev top-1 [T] of the policy after stage 2, after stage 3, and the
  swap (stage-3 model, stage-2 location network); prints the table."""
  from saccader_jax.objectives import saccader  # pylint: disable=g-import-not-at-top
  stage2, stage3 = (run.stage("location").variables,
                    run.stage("policy").variables)
  candidates = {"stage2": stage2, "stage3": stage3,
                "swap": saccader.with_location_network(stage3, stage2)}
  policy = run.learned_policy()
  shown = [t for t in GLIMPSES if t <= run.config.eval_glimpses]
  results = {}
  print(f"\n| dev top-1 (%) | {' | '.join(f't={t}' for t in shown)} |")
  print(f"|---|{'---:|' * len(shown)}")
  for name, variables in candidates.items():
    out = run.evaluate(policy, split, variables, max_examples=max_examples)
    results[name] = [float(x) for x in out["top1"]]
    print(f"| {name} | " + " | ".join(
        f"{100 * results[name][t - 1]:.1f}" for t in shown) + " |",
          flush=True)
  return results


def stage3_diagnostics(workdir: epath.Path) -> dict:
  """Stage 3's reward, entropy and accuracy at its first and last logging
  interval and each part's relative change, from the TensorBoard log;
  printed as a table."""
  logged = logged_scalars(workdir, "policy/")
  diagnostics = {}
  for key in DIAGNOSTICS:
    values = logged.get(f"policy/train/{key}")
    if values:
      diagnostics[key] = {"first": values[0], "last": values[-1]}
  diagnostics["relative_change"] = {
      tag.rsplit("/", 1)[-1]: values[-1][1]
      for tag, values in logged.items() if "/relative_change/" in tag}
  print("\n| stage 3 | first interval | last interval |\n|---|---:|---:|")
  for key in DIAGNOSTICS:
    if key in diagnostics:
      (s0, v0), (s1, v1) = diagnostics[key]["first"], diagnostics[key]["last"]
      print(f"| {key} | {v0:.3f} (step {s0}) | {v1:.3f} (step {s1}) |")
  print("\nrelative change over stage 3: " + ", ".join(
      f"{k} {v:.2e}" for k, v in diagnostics["relative_change"].items()))
  return diagnostics


def main(argv):
  del argv
  config = FLAGS.config
  entry.prepare_process(config.get("cpu_ynn_fusions", ""))
  from saccader_jax.research import Run  # pylint: disable=g-import-not-at-top
  config.eval_at_stage_end = False
  try:
    run = Run(config, paths.absolute_path(FLAGS.workdir))
  except errors.JobError as e:   # e.g. another job holds the workdir
    sys.exit(errors.report(e))
  reused = ["representation"] + ([] if FLAGS.retrain_location
                                 else ["location"])
  run.reuse(FLAGS.base_workdir, reused)
  run.train()
  results = evaluate_candidates(run, "dev", FLAGS.max_examples or None)
  diagnostics = stage3_diagnostics(run.workdir)
  (run.workdir / "stage3_dev.json").write_text(json.dumps(
      {"settings": config.stages.policy.to_dict(),
       "location_settings": config.stages.location.to_dict(),
       "dev_top1": results, "diagnostics": diagnostics}, indent=1))
  run.close()


if __name__ == "__main__":
  app.run(main)
