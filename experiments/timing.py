"""Timing helpers and flags shared by the benchmarks."""

import time

from absl import flags
import jax
import numpy as np

from saccader_jax import runtime

CPU_YNN_FUSIONS = flags.DEFINE_string(
    "cpu_ynn_fusions", runtime.DEFAULT_CPU_YNN_FUSIONS,
    "XLA's YNNPACK CPU fusion kinds; \"\" for XLA's default kernels (see "
    "saccader_jax.runtime).")


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of fn(), blocking on its result, after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))
