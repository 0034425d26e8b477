"""Process-level XLA settings, applied before the first computation."""

import logging
import os

# XLA's CPU backend can hand fusions of these kinds to its YNNPACK kernels
# (results equal up to float32 reordering; ignored on GPU and TPU). Which kinds
# pay off depends on the model: the BagNet train step runs 1.2-1.3x faster
# with "dot,reduce" than with "dot,eltwise,reduce", whose elementwise fusions
# are slower than XLA's own loops on wide high-resolution activations
# (experiments/benchmark_train.py). "" keeps XLA's default kernels.
DEFAULT_CPU_YNN_FUSIONS = "dot,reduce"
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_KINDS = ("dot", "eltwise", "reduce")


def unknown_ynn_fusion_kinds(fusions: str) -> list[str]:
  """The kinds in a comma-separated fusions string that XLA does not know."""
  return sorted(set(k for k in fusions.split(",") if k) - set(YNN_FUSION_KINDS))


def use_cpu_ynn_fusions(fusions: str = DEFAULT_CPU_YNN_FUSIONS) -> None:
  """Adds XLA's YNNPACK fusion flag to XLA_FLAGS.

  XLA reads XLA_FLAGS when the backend starts, on the first computation, so
  this works after `import jax` but not after any array has been created. A
  flag already in XLA_FLAGS wins.

  Args:
    fusions: comma-separated kinds from YNN_FUSION_KINDS; "" adds nothing.
  """
  kinds = [k for k in fusions.split(",") if k]
  unknown = unknown_ynn_fusion_kinds(fusions)
  if unknown:
    raise ValueError(f"Unknown YNNPACK fusion kinds {unknown} in "
                     f"{fusions!r}; valid: {YNN_FUSION_KINDS}.")
  flags = os.environ.get("XLA_FLAGS", "")
  if kinds and _YNN_FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_YNN_FLAG}={','.join(kinds)}".strip()


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
