"""The three stages' train steps on the ImageNet config, as a pod runs them.

For each compute dtype and stage: the step jitted over every local device
(`steps.jit_train_step`, batch split along the mesh's `data` axis), and
  - compile time, step time (median) and images/s per device;
  - model FLOPs per step and per device (XLA's cost analysis of the compiled
    step: the figure `experiments.benchmark_train` prints for the same step);
  - utilisation: achieved FLOP/s per device over the device's peak for the
    dtype (`PEAK_TFLOPS`; on a CPU, a matmul measured here);
  - cross-device reductions per step (all-reduce ops in the compiled HLO:
    on a pod each is a latency-bound collective);
  - peak device memory (the allocator's peak where the backend reports one,
    else the compiled step's arguments + outputs + temporaries).

    python -m experiments.benchmark_accelerator [--batch_per_device=32] \
        [--dtypes=float32,bfloat16] [--stages=representation,location,policy] \
        [--profile=/tmp/trace]

Runs anywhere; on a CPU use a small --batch_per_device (the default).
"""

import itertools
import re
import time

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry.restart_before_libraries()

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_per_device", None,
                     "Images per device and step; default 64 on GPU/TPU, "
                     "4 on a CPU.")
flags.DEFINE_integer("image_size", 224, "Image side (the paper: 224).")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
flags.DEFINE_list("stages", ["representation", "location", "policy"],
                  "Stages of configs/imagenet_saccader.py to time.")
flags.DEFINE_string("matmul_precision", "default",
                    "config.model.matmul_precision.")
flags.DEFINE_list("batch_norm_statistics", ["global"],
                  "config.model.batch_norm_statistics values to time "
                  "(global, per_device).")
flags.DEFINE_integer("repeats", 5, "Timed steps per row (median).")
flags.DEFINE_string("profile", None,
                    "Write a trace of each row's timed steps under this "
                    "folder (TensorBoard's profile plugin, or Perfetto).")

# Dense peak TFLOP/s per device by `device_kind` prefix and compute dtype,
# from the vendors' data sheets. float32 on a TPU at the default precision
# runs one bf16 pass, so it has the bf16 peak; on H100/A100 it is the
# tensor-core TF32 peak (the default precision there).
PEAK_TFLOPS = {
    "NVIDIA H100": {"bfloat16": 989.0, "float32": 494.0},   # SXM
    "NVIDIA H200": {"bfloat16": 989.0, "float32": 494.0},
    "NVIDIA A100": {"bfloat16": 312.0, "float32": 156.0},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0, "float32": 197.0},   # v5e
    "TPU v5e": {"bfloat16": 197.0, "float32": 197.0},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0},
    "TPU v5": {"bfloat16": 459.0, "float32": 459.0},        # v5p's kind
}


def measured_matmul_tflops(dtype, size: int = 2048, repeats: int = 5) -> float:
  """TFLOP/s of a size x size matmul on the default device."""
  a = jnp.ones((size, size), dtype)
  matmul = jax.jit(lambda x: x @ x)
  seconds = timing.median_seconds(lambda: matmul(a), repeats)
  return 2 * size ** 3 / seconds / 1e12


def peak_tflops(device, dtype_name: str) -> tuple[float, str]:
  """(peak TFLOP/s, where it comes from) for one device and dtype."""
  if device.platform == "cpu":
    dtype = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    return measured_matmul_tflops(dtype), "measured 2048^2 matmul"
  for prefix, peaks in PEAK_TFLOPS.items():
    if device.device_kind.startswith(prefix):
      return peaks[dtype_name], f"{prefix} data sheet"
  return float("nan"), f"no peak known for {device.device_kind!r}"


def count_all_reduces(hlo_text: str) -> int:
  """All-reduce ops (synchronous or started) in compiled HLO text."""
  return len(re.findall(r"\sall-reduce(?:-start)?\(", hlo_text))


def device_memory_bytes(device, compiled) -> tuple[int, str]:
  """(bytes, how measured): the allocator's peak, or the compiled step's."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "allocator peak"
  analysis = compiled.memory_analysis()
  total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
  return int(total), "compiled step"


def imagenet_config(dtype: str, image_size: int, matmul_precision: str,
                    batch_norm_statistics: str = "global"):
  from configs import imagenet_saccader  # pylint: disable=g-import-not-at-top
  config = imagenet_saccader.get_config()
  config.dataset.image_size = image_size
  config.model.dtype = dtype
  config.model.matmul_precision = matmul_precision
  config.model.batch_norm_statistics = batch_norm_statistics
  return config


def measure_stage(config, stage: str, batch_per_device: int, repeats: int,
                  profile_dir=None) -> dict:
  """One stage's step over every local device; see the module docstring."""
  from saccader_jax import job as job_lib  # pylint: disable=g-import-not-at-top
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from saccader_jax import stages as stages_lib  # pylint: disable=g-import-not-at-top
  from saccader_jax import steps  # pylint: disable=g-import-not-at-top
  mesh = job_lib.create_mesh()
  devices = mesh.devices.size
  model = models.create_model(config.model)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  setup = stages_lib.create_stage(config, stage, model, variables, 1000)
  step = steps.jit_train_step(setup.loss_fn, setup.schedule, mesh)
  batch = timing.random_batch(config, batch_per_device * devices)
  key = jax.random.key(0)
  start = time.perf_counter()
  compiled = step.lower(setup.state, batch, key).compile()
  compile_seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  state = setup.state
  state, metrics = compiled(state, batch, key)   # warm-up
  jax.block_until_ready(metrics)
  times = []
  trace = (jax.profiler.trace(profile_dir) if profile_dir else None)
  if trace:
    trace.__enter__()
  try:
    for _ in range(repeats):
      begin = time.perf_counter()
      state, metrics = compiled(state, batch, key)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - begin)
  finally:
    if trace:
      trace.__exit__(None, None, None)
  seconds = float(np.median(times))
  memory, memory_source = device_memory_bytes(mesh.devices.flat[0], compiled)
  return {"stage": stage, "dtype": config.model.dtype, "devices": devices,
          "batch_per_device": batch_per_device,
          "compile_seconds": compile_seconds, "step_seconds": seconds,
          "images_per_second_per_device": batch_per_device / seconds,
          "flops_per_step": float(cost["flops"]),
          "all_reduces": count_all_reduces(compiled.as_text()),
          "memory_bytes": memory, "memory_source": memory_source,
          "loss": float(metrics["loss"])}


def main(argv):
  del argv
  entry.prepare_process("")   # XLA's own CPU kernels (no YNNPACK fusions)
  device = jax.devices()[0]
  batch_per_device = FLAGS.batch_per_device or (
      4 if device.platform == "cpu" else 64)
  print(f"# Accelerator benchmark ({timing.machine()}; "
        f"{jax.local_device_count()} local device(s), ImageNet config at "
        f"{FLAGS.image_size}px, batch {batch_per_device} per device, "
        f"matmul_precision {FLAGS.matmul_precision!r})\n")
  peaks = {name: peak_tflops(device, name) for name in FLAGS.dtypes}
  for name, (peak, source) in peaks.items():
    print(f"Peak {name}: {peak:.2f} TFLOP/s per device ({source})")
  print("\n| stage | dtype | batch norm | compile s | ms/step | "
        "images/s/device | GFLOP/step/device | TFLOP/s | utilisation | "
        "all-reduces | memory GiB |")
  print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  memory_source = ""
  for dtype, statistics, stage in itertools.product(
      FLAGS.dtypes, FLAGS.batch_norm_statistics, FLAGS.stages):
    config = imagenet_config(dtype, FLAGS.image_size, FLAGS.matmul_precision,
                             statistics)
    profile = (f"{FLAGS.profile}/{stage}_{dtype}_{statistics}"
               if FLAGS.profile else None)
    r = measure_stage(config, stage, batch_per_device, FLAGS.repeats,
                      profile)
    if not np.isfinite(r["loss"]):
      raise SystemExit(f"Stage {stage} in {dtype}: non-finite loss "
                       f"{r['loss']}.")
    # cost_analysis counts the per-device program of an SPMD step.
    achieved = r["flops_per_step"] / r["step_seconds"] / 1e12
    memory_source = r["memory_source"]
    print(f"| {stage} | {dtype} | {statistics} | "
          f"{r['compile_seconds']:.1f} | "
          f"{1e3 * r['step_seconds']:.1f} | "
          f"{r['images_per_second_per_device']:.1f} | "
          f"{r['flops_per_step'] / 1e9:.1f} | {achieved:.3f} | "
          f"{100 * achieved / peaks[dtype][0]:.1f} % | "
          f"{r['all_reduces']} | {r['memory_bytes'] / 2 ** 30:.2f} |",
          flush=True)
  print(f"\nMemory: {memory_source}."
        + (f" Traces under {FLAGS.profile}." if FLAGS.profile else ""))


if __name__ == "__main__":
  app.run(main)
