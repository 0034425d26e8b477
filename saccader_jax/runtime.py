"""Process-level settings, applied before the first computation: XLA's CPU
kernels and the host memory allocator."""

import ctypes.util
import glob
import logging
import os
import sys
from typing import Optional

# XLA's CPU backend can hand fusions of these kinds to its YNNPACK kernels
# (results equal up to float32 reordering; ignored on GPU and TPU). Which kinds
# pay off depends on the model and the CPU; "auto" picks by the CPU's features
# (`auto_cpu_ynn_fusions`). "" keeps XLA's default kernels.
AUTO = "auto"
DEFAULT_CPU_YNN_FUSIONS = AUTO
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_KINDS = ("dot", "eltwise", "reduce")


def cpu_info(field: str) -> Optional[str]:
  """A field of the first CPU in /proc/cpuinfo ("model name", "flags"), or
  None where there is no such file or field."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        name, _, value = line.partition(":")
        if name.strip() == field:
          return value.strip()
  except OSError:
    pass
  return None


def cpu_flags() -> frozenset[str]:
  """The x86 feature flags of this machine's CPU (empty elsewhere)."""
  return frozenset((cpu_info("flags") or "").split())


def auto_cpu_ynn_fusions(flags: Optional[frozenset[str]] = None) -> str:
  """The YNNPACK fusion kinds "auto" stands for on a CPU with these flags.

  On x86 CPUs with AVX-512 (measured on Cascade Lake and Sapphire Rapids
  Xeons, `experiments/benchmark_train.py`) "dot,reduce" runs the BagNet
  stage-1 step fastest: 1.4-1.6x XLA's own kernels, and 1.0-1.3x
  "dot,eltwise,reduce", whose elementwise fusions are slower than XLA's
  loops on the wide high-resolution activations of the first groups. Other
  CPUs are unmeasured and keep XLA's own kernels ("").
  """
  flags = cpu_flags() if flags is None else flags
  return "dot,reduce" if "avx512f" in flags else ""


def resolve_cpu_ynn_fusions(fusions: str) -> str:
  """fusions, with "auto" replaced by this CPU's choice."""
  return auto_cpu_ynn_fusions() if fusions == AUTO else fusions


def unknown_ynn_fusion_kinds(fusions: str) -> list[str]:
  """The kinds in a comma-separated fusions string that XLA does not know
  ("auto" is known)."""
  if fusions == AUTO:
    return []
  return sorted(set(k for k in fusions.split(",") if k) - set(YNN_FUSION_KINDS))


def use_cpu_ynn_fusions(fusions: str = DEFAULT_CPU_YNN_FUSIONS) -> str:
  """Adds XLA's YNNPACK fusion flag to XLA_FLAGS.

  XLA reads XLA_FLAGS when the backend starts, on the first computation, so
  this works after `import jax` but not after any array has been created. A
  flag already in XLA_FLAGS wins.

  Args:
    fusions: comma-separated kinds from YNN_FUSION_KINDS, "" (adds nothing)
      or "auto" (`auto_cpu_ynn_fusions`).

  Returns:
    The kinds asked for, "auto" resolved.
  """
  fusions = resolve_cpu_ynn_fusions(fusions)
  kinds = [k for k in fusions.split(",") if k]
  unknown = unknown_ynn_fusion_kinds(fusions)
  if unknown:
    raise ValueError(f"Unknown YNNPACK fusion kinds {unknown} in "
                     f"{fusions!r}; valid: {YNN_FUSION_KINDS}.")
  flags = os.environ.get("XLA_FLAGS", "")
  if kinds and _YNN_FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_YNN_FLAG}={','.join(kinds)}".strip()
  return fusions


# The host allocator. XLA's CPU runtime allocates each execution's
# temporaries (4.1 GB for the ImageNet stage-1 step at batch 8) afresh; glibc
# serves such blocks with mmap and returns them with munmap, so every step
# faults in and zeroes every page again (a sixth of the step's CPU time in
# the kernel). tcmalloc keeps freed pages for the next step.
MALLOC_ENV = "SACCADER_JAX_MALLOC"
_REEXECUTED = "SACCADER_JAX_MALLOC_REEXECUTED"


def find_tcmalloc() -> Optional[str]:
  """A tcmalloc shared library on this machine (its soname, which the
  loader resolves, or its path), or None."""
  for name in ("tcmalloc_minimal", "tcmalloc"):
    found = ctypes.util.find_library(name)
    if found:
      return found
  for pattern in ("/usr/lib/*/libtcmalloc_minimal.so.4",
                  "/usr/lib/*/libtcmalloc.so.4", "/usr/lib/libtcmalloc*.so.4"):
    paths = sorted(glob.glob(pattern))
    if paths:
      return paths[0]
  return None


def loaded_allocator() -> str:
  """"tcmalloc" if this process runs on tcmalloc, else "glibc"."""
  try:
    with open("/proc/self/maps") as f:
      return "tcmalloc" if "libtcmalloc" in f.read() else "glibc"
  except OSError:
    return "glibc"


def reexec_with_tcmalloc(argv: Optional[list[str]] = None) -> None:
  """Restarts this process with tcmalloc preloaded, if it can.

  For entry points, before anything else runs (the process image is
  replaced: same PID, arguments and environment, plus LD_PRELOAD). Does
  nothing when tcmalloc is already loaded or not installed (Debian:
  libtcmalloc-minimal4), off Linux, or when SACCADER_JAX_MALLOC=system.

  Args:
    argv: the command line to run again; default `sys.orig_argv` (the
      interpreter's own, `-m module` included).
  """
  # The re-executed process itself: never again, even if the preload failed.
  if os.environ.pop(_REEXECUTED, None):
    return
  if (os.environ.get(MALLOC_ENV, "tcmalloc") != "tcmalloc"
      or not sys.platform.startswith("linux")
      or loaded_allocator() == "tcmalloc"):
    return
  library = find_tcmalloc()
  if not library:
    return
  preload = os.environ.get("LD_PRELOAD", "")
  os.environ["LD_PRELOAD"] = f"{library} {preload}".strip()
  os.environ[_REEXECUTED] = "1"
  sys.stdout.flush()
  sys.stderr.flush()
  argv = list(sys.orig_argv if argv is None else argv)
  os.execv(sys.executable, [sys.executable, *argv[1:]])


def hide_accelerators_from_tensorflow() -> None:
  """tf.data runs on the host; keep TensorFlow off the accelerators JAX uses."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")


class _LibraryInfoFilter(logging.Filter):
  """Drops INFO records of chatty libraries; warnings and errors pass."""

  def __init__(self, libraries):
    super().__init__()
    self._markers = tuple(f"/{name}/" for name in libraries)

  def filter(self, record):
    return (record.levelno >= logging.WARNING
            or not any(m in record.pathname for m in self._markers))


def quiet_library_logs(libraries=("orbax", "tensorflow_datasets", "jax",
                                  "etils")) -> None:
  """Keeps the console to this project's progress lines."""
  for handler in logging.getLogger().handlers + logging.getLogger(
      "absl").handlers:
    handler.addFilter(_LibraryInfoFilter(libraries))
