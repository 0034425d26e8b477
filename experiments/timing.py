"""Timing helpers shared by the benchmarks."""

import time

import jax
import numpy as np


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of fn(), blocking on its result, after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))
