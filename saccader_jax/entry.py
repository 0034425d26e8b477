"""What every entry point (`main`, the experiment scripts) does first.

    from saccader_jax import entry

    if __name__ == "__main__":
      entry.restart_before_libraries()   # before JAX and TensorFlow load

    ...

    def main(argv):
      fusions = entry.prepare_process(cpu_ynn_fusions)

This module and those it imports need only the standard library, so that
importing it loads neither JAX nor TensorFlow.
"""

from __future__ import annotations

import os
import sys

from saccader_jax import allocator
from saccader_jax import cpu_kernels
from saccader_jax import library_setup

# The libraries the restart must come before: it replaces the process image,
# so whatever was imported before it is imported again (seconds each).
LIBRARIES = ("jax", "tensorflow", "flax", "optax", "orbax")


def restart_before_libraries() -> None:
  """Restarts the process on tcmalloc (`allocator.reexec_with_tcmalloc`),
  first keeping TensorFlow's C++ start-up logs at warnings.

  Raises:
    RuntimeError: if one of LIBRARIES is already imported (the caller
      imports it above this call).
  """
  loaded = sorted(name for name in LIBRARIES if name in sys.modules)
  if loaded:
    raise RuntimeError(
        f"entry.restart_before_libraries() runs after {loaded} loaded: call "
        "it before importing them (at the top of the script).")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  allocator.reexec_with_tcmalloc()


def prepare_process(cpu_ynn_fusions: str = cpu_kernels.DEFAULT_CPU_YNN_FUSIONS
                    ) -> str:
  """The settings that must precede the first computation: library logs
  quietened, XLA's YNNPACK CPU fusions (`cpu_kernels.use_cpu_ynn_fusions`),
  TensorFlow kept off the accelerators. Returns the fusions in effect."""
  library_setup.quiet_library_logs()
  fusions = cpu_kernels.use_cpu_ynn_fusions(cpu_ynn_fusions)
  library_setup.hide_accelerators_from_tensorflow()
  return fusions
