"""Timing helpers and flags shared by the benchmarks."""

import os
import time

from absl import flags
import jax
import numpy as np

from saccader_jax import allocator
from saccader_jax import cpu_kernels

CPU_YNN_FUSIONS = flags.DEFINE_string(
    "cpu_ynn_fusions", cpu_kernels.DEFAULT_CPU_YNN_FUSIONS,
    "XLA's YNNPACK CPU fusion kinds: \"auto\" (by the CPU's features), \"\" "
    "(XLA's default kernels) or kinds (see saccader_jax.cpu_kernels).")


def machine() -> str:
  """The device, or the CPU model and core count, and the host allocator."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    return f"{device.device_kind}, host allocator {allocator.loaded_allocator()}"
  model = cpu_kernels.cpu_info("model name") or "unknown CPU"
  number = cpu_kernels.cpu_info("model")
  if number:   # vendors' names are often generic in VMs; the number is not
    model = f"{model} (cpuinfo model {number})"
  flags = cpu_kernels.cpu_flags()
  isa = ("AMX" if "amx_tile" in flags else
         "AVX-512" if "avx512f" in flags else
         "AVX2" if "avx2" in flags else "")
  return (f"{model}{', ' + isa if isa else ''}, {os.cpu_count()} CPUs, host "
          f"allocator {allocator.loaded_allocator()}")


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of fn(), blocking on its result, after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def random_batch(config, batch_size: int) -> dict:
  """A batch of N(0, 1) images and uniform labels shaped as config's data
  (NumPy arrays; the same for the same arguments): time does not depend on
  the values."""
  size, channels = config.dataset.image_size, config.dataset.num_channels
  rng = np.random.default_rng(0)
  return {"image": rng.normal(size=(batch_size, size, size, channels)
                              ).astype(np.float32),
          "label": rng.integers(0, config.model.num_classes,
                                batch_size).astype(np.int32)}
