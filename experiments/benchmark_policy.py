"""Latency of the jitted Saccader policy on the ImageNet configuration.

Prints a Markdown table: the greedy policy (224x224, T=6) at batch 1 and 64
after compilation, beside the representation network's forward pass alone at
the same batch size, and the compile time of the policy and of the rollout
alone at T = 1, 6, 12, 24. Weights are random: latency does not depend on them.

    python -m experiments.benchmark_policy [--batch_sizes=1,64] [--repeats=5]
"""

import os
import time

from absl import app
from absl import flags


import jax
import jax.numpy as jnp

from configs import imagenet_saccader
import saccader_jax
from saccader_jax import runtime
from experiments import timing
from saccader_jax.models import cell

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "64"], "Batch sizes to time.")
flags.DEFINE_integer("num_glimpses", 6, "T for the latency rows.")
flags.DEFINE_list("compile_glimpses", ["1", "6", "12", "24"],
                  "T values for the compile-time rows.")
flags.DEFINE_integer("repeats", 5, "Timed calls per row (median reported).")
flags.DEFINE_string("dtype", "float32", "Compute dtype: float32 or bfloat16.")


def compile_seconds(traced):
  """Seconds to lower and compile a traced function, and the executable."""
  start = time.perf_counter()
  compiled = traced.lower().compile()
  return time.perf_counter() - start, compiled


def main(argv):
  del argv
  runtime.use_cpu_ynn_fusions(timing.CPU_YNN_FUSIONS.value)
  config = imagenet_saccader.get_config()
  config.model.dtype = FLAGS.dtype
  model = saccader_jax.create_model(config.model)
  size = config.dataset.image_size
  variables = jax.jit(lambda k: model.init(
      k, jnp.zeros((1, size, size, 3)), num_glimpses=1))(jax.random.key(0))
  policy = saccader_jax.make_policy(config, variables)
  represent = jax.jit(lambda v, x: model.apply(
      v, x, method=model.represent).logits2d)
  print(f"# Saccader policy benchmark ({jax.devices()[0].device_kind}, "
        f"{jax.device_count()} device(s), dtype {FLAGS.dtype}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})\n")

  print("| batch | greedy policy T=%d (ms) | representation alone (ms) | "
        "ratio | policy GFLOP | representation GFLOP |" % FLAGS.num_glimpses)
  print("|---:|---:|---:|---:|---:|---:|")
  for batch in map(int, FLAGS.batch_sizes):
    images = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
    policy_s = timing.median_seconds(
        lambda: policy(images, num_glimpses=FLAGS.num_glimpses),
        FLAGS.repeats)
    rep_s = timing.median_seconds(lambda: represent(variables, images),
                           FLAGS.repeats)
    policy_flops = policy.lower(
        images, FLAGS.num_glimpses).compile().cost_analysis()["flops"]
    rep_flops = represent.lower(variables,
                                images).compile().cost_analysis()["flops"]
    print(f"| {batch} | {1e3 * policy_s:.1f} | {1e3 * rep_s:.1f} | "
          f"{policy_s / rep_s:.2f} | {policy_flops / 1e9:.1f} | "
          f"{rep_flops / 1e9:.1f} |", flush=True)

  print("\n| T | policy compile (s) | rollout-only compile (s) | "
        "rollout-only run, batch 64 (ms) |")
  print("|---:|---:|---:|---:|")
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
