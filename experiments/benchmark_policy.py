"""Latency of the jitted Saccader policy on the ImageNet configuration.

Prints Markdown tables: the greedy policy (224x224, T=6) at batch 1 and 64
after compilation, whole and in chunks (`saccader_jax.chunking`), per image,
beside the trainer's policy eval step (T=12) and the representation network's
forward pass alone; and the compile time of the policy and of the rollout
alone at T = 1, 6, 12, 24. Weights are random: latency does not depend on them.

    python -m experiments.benchmark_policy [--batch_sizes=1,64] [--repeats=5]
"""

import os
import time

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from configs import imagenet_saccader
import saccader_jax
from saccader_jax import chunking
from saccader_jax import evaluation
from saccader_jax import evaluators as evaluators_lib
from experiments import timing
from saccader_jax.models import cell

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "64"], "Batch sizes to time.")
flags.DEFINE_list("chunk_sizes", ["auto", "0"],
                  "Chunk sizes (saccader_jax.chunking) of the batches larger "
                  "than 1: \"auto\", or images per chunk (0: whole batch).")
flags.DEFINE_integer("num_glimpses", 6, "T for the latency rows.")
flags.DEFINE_list("compile_glimpses", ["1", "6", "12", "24"],
                  "T values for the compile-time rows.")
flags.DEFINE_integer("repeats", 5, "Timed calls per row (median reported).")
flags.DEFINE_string("dtype", "float32", "Compute dtype: float32 or bfloat16.")
flags.DEFINE_bool("eval_step", True,
                  "Also time the trainer's policy eval step (config.evals "
                  "at config.eval_glimpses).")


def compile_seconds(traced):
  """Seconds to lower and compile a traced function, and the executable."""
  start = time.perf_counter()
  compiled = traced.lower().compile()
  return time.perf_counter() - start, compiled


def chunk_value(text):
  return text if text == chunking.AUTO else int(text)


def main(argv):
  del argv
  fusions = entry.prepare_process(timing.CPU_YNN_FUSIONS.value)
  config = imagenet_saccader.get_config()
  config.model.dtype = FLAGS.dtype
  model = saccader_jax.create_model(config.model)
  size = config.dataset.image_size
  variables = jax.jit(lambda k: model.init(
      k, jnp.zeros((1, size, size, 3)), num_glimpses=1))(jax.random.key(0))
  print(f"# Saccader policy benchmark ({timing.machine()}, "
        f"{jax.device_count()} device(s), dtype {FLAGS.dtype}; "
        f"--cpu_ynn_fusions={timing.CPU_YNN_FUSIONS.value!r} -> {fusions!r}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})\n")
  # The evaluators the trainer runs after each stage, less those that need
  # a trained reference classifier.
  evals = [e for e in evaluators_lib.create_evaluators(
      config.evals, config.eval_glimpses) if not e.references]

  print(f"| batch | chunk | greedy policy T={FLAGS.num_glimpses} (ms) | "
        f"per image (ms) | eval step T={config.eval_glimpses} per image (ms) "
        "| representation alone per image (ms) | policy GFLOP per image |")
  print("|---:|---:|---:|---:|---:|---:|---:|")
  # XLA's cost analysis counts a loop's body once: count one image, whole.
  one = jnp.zeros((1, size, size, 3))
  policy_flops = saccader_jax.make_policy(config, variables).lower(
      one, FLAGS.num_glimpses).compile().cost_analysis()["flops"]
  for batch in map(int, FLAGS.batch_sizes):
    images = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
    eval_batch = {"image": images, "label": jnp.zeros((batch,), jnp.int32),
                  "mask": jnp.ones((batch,), jnp.float32)}
    for chunk_size in (FLAGS.chunk_sizes if batch > 1 else ["0"]):
      chunk_size = chunk_value(chunk_size)
      policy = saccader_jax.make_policy(config, variables,
                                        chunk_size=chunk_size)
      chunk = chunking.resolve(chunk_size, size, size)
      represent = jax.jit(lambda v, x, chunk=chunk: chunking.map_batch(
          lambda y, _: model.apply(v, y, method=model.represent).logits2d,
          x, chunk))
      policy_s = timing.median_seconds(
          lambda: policy(images, num_glimpses=FLAGS.num_glimpses),
          FLAGS.repeats)
      eval_ms = "n/a"
      if FLAGS.eval_step:
        step = jax.jit(evaluation.make_policy_eval_step(
            policy, evals, config.eval_glimpses, {}, chunk_size))
        eval_s = timing.median_seconds(
            lambda: step(variables, {}, eval_batch, None), FLAGS.repeats)
        eval_ms = f"{1e3 * eval_s / batch:.1f}"
      rep_s = timing.median_seconds(lambda: represent(variables, images),
                                    FLAGS.repeats)
      shown = (f"{chunk_size} -> {chunk}" if chunk_size == chunking.AUTO
               else str(chunk or "whole"))
      print(f"| {batch} | {shown if batch > 1 else '-'} | "
            f"{1e3 * policy_s:.1f} | {1e3 * policy_s / batch:.1f} | "
            f"{eval_ms} | {1e3 * rep_s / batch:.1f} | "
            f"{policy_flops / 1e9:.1f} |", flush=True)

  print("\n| T | policy compile (s) | rollout-only compile (s) | "
        "rollout-only run, batch 64 (ms) |")
  print("|---:|---:|---:|---:|")
  policy = saccader_jax.make_policy(config, variables)
  images = jnp.zeros((1, size, size, 3))
  grid = model.grid_geometry(size, size)
  features = jax.random.normal(
      jax.random.key(2), (64, grid.num_locations, config.model.mixed_channels))
  scores = features[..., 0]
  for num_glimpses in map(int, FLAGS.compile_glimpses):
    # No compile cache may be shared with earlier rows.
    jax.clear_caches()
    policy_compile, _ = compile_seconds(policy.trace(images, num_glimpses))
    rollout_jit = jax.jit(cell.rollout, static_argnums=2)
    rollout_compile, compiled = compile_seconds(
        rollout_jit.trace(features, scores, num_glimpses))
    run_s = timing.median_seconds(lambda: compiled(features, scores),
                                  FLAGS.repeats)
    print(f"| {num_glimpses} | {policy_compile:.2f} | {rollout_compile:.3f} | "
          f"{1e3 * run_s:.2f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
