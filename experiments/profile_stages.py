"""Where a stage-2 and a stage-3 step's time goes: the frozen BagNet's
forward pass against the whole step.

    python -m experiments.profile_stages \
        [--config=configs/fashion_mnist_parts_saccader.py] [--batch=128]

With the BagNet frozen (stage 2 always; stage 3 with
stages.policy.train_representation False) its per-location outputs depend on
the image alone: the share of the step they take bounds what computing them
once per image could save. Prints a Markdown table of median times: each
stage's jitted train step, the same step reading the BagNet's outputs as
config.cache_frozen_representation gives them (where the stage freezes it),
and the BagNet's forward pass alone (inference mode, the stages' frozen
path) at the same batch.
"""

from __future__ import annotations

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from experiments import timing

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/fashion_mnist_parts_saccader.py", "Training config.",
    lock_config=False)
flags.DEFINE_integer("batch", 128, "Images per step.")
flags.DEFINE_integer("repeats", 5, "Timed steps per row (median).")
flags.DEFINE_list("stages", ["location", "policy"], "Stages to time.")


def main(argv):
  del argv
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from saccader_jax import stages  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  fusions = entry.prepare_process(timing.CPU_YNN_FUSIONS.value)
  batch = jax.tree_util.tree_map(jnp.asarray,
                                 timing.random_batch(config, FLAGS.batch))
  model = models.create_model(config.model)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  represent = jax.jit(lambda v, x: jax.tree_util.tree_map(
      jax.lax.stop_gradient, model.apply(
          v, x, False, method=models.Saccader.represent)))
  rep = represent(variables, batch["image"])
  # What a step reads where the frozen representation is cached
  # (config.cache_frozen_representation).
  cached = {"label": batch["label"], "representation": {
      name: getattr(rep, name)
      for name in ("features2d", "what_features", "logits2d")}}
  rows = []
  for name in FLAGS.stages:
    resolved = stages.resolve_stage(config, name)
    setup = resolved.create(variables, 1000)
    step = jax.jit(setup.train_step)
    key = jax.random.key(1)
    seconds = timing.median_seconds(
        lambda: step(setup.state, batch, key)[1], FLAGS.repeats)
    rows.append((f"stage {name}: train step", seconds))
    if resolved.stage.freezes_representation(resolved.config):
      seconds = timing.median_seconds(
          lambda: step(setup.state, cached, key)[1], FLAGS.repeats)
      rows.append((f"stage {name}: train step, representation cached",
                   seconds))
  seconds = timing.median_seconds(
      lambda: represent(variables, batch["image"]), FLAGS.repeats)
  rows.append(("frozen BagNet forward alone", seconds))
  print(f"{config.dataset.name} (image {config.dataset.image_size} px), "
        f"batch {FLAGS.batch}, median of {FLAGS.repeats}; {timing.machine()}"
        f", cpu_ynn_fusions {fusions!r}\n")
  print("| what | ms | the frozen BagNet's share |\n|---|---:|---:|")
  forward = rows[-1][1]
  for what, seconds in rows:
    share = ("" if what.startswith("frozen") or what.endswith("cached")
             else f"{100 * forward / seconds:.0f} %")
    print(f"| {what} | {1000 * seconds:,.1f} | {share} |")


if __name__ == "__main__":
  app.run(main)
