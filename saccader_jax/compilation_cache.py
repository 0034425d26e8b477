"""A persistent cache of compiled steps, so that a restarted job skips XLA.

A preempted pod job restarts into the same program: the same stages, shapes
and devices. With `jax_compilation_cache_dir` set, each executable that took
longer than `jax_persistent_cache_min_compile_time_secs` (JAX's default,
1 s) to compile is written there once and read back on every later start;
JAX keys each entry by the computation, the devices, the compiler flags and
the JAX version, so a changed config, topology or install compiles afresh.
On GPUs JAX also keeps XLA's autotuning results inside the cache, and their
path then enters every key (a copied or moved cache recompiles once); other
backends have no such results, so there the path is kept out of the keys and
a cache copied with its workdir, or moved, is read as it is.
The directory may be local or a URL (gs://...: JAX reads it through
etils.epath).

config.compilation_cache_dir: "" (default) = <workdir>/compilation_cache,
a path or URL = there (one cache may serve many workdirs), "none" = no
persistent cache.
"""

from __future__ import annotations

from typing import Optional

from absl import logging
from etils import epath
import jax
import ml_collections

from saccader_jax import paths

NONE = "none"


def cache_dir(config: ml_collections.ConfigDict,
              workdir: epath.PathLike) -> Optional[epath.Path]:
  """Where config's job keeps its compiled executables, or None."""
  setting = config.get("compilation_cache_dir", "")
  if setting == NONE:
    return None
  if setting:
    return paths.absolute_path(setting)
  return paths.absolute_path(workdir) / "compilation_cache"


def enable(config: ml_collections.ConfigDict,
           workdir: epath.PathLike) -> Optional[epath.Path]:
  """Points JAX's persistent compilation cache at `cache_dir` (before the
  process's first compilation); returns it, or None when disabled."""
  path = cache_dir(config, workdir)
  if path is None:
    return None
  path.mkdir(parents=True, exist_ok=True)
  if jax.default_backend() != "gpu":
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
  jax.config.update("jax_compilation_cache_dir", str(path))
  logging.info("Compilation cache: %s.", path)
  return path
