"""The libraries a job runs on, set up for it: TensorFlow (tf.data) kept off
the accelerators, and the libraries' INFO lines and tracebacks kept off the
console."""

import logging
import sys
import threading
from typing import Optional


def hide_accelerators_from_tensorflow() -> None:
  """tf.data runs on the host; keep TensorFlow off the accelerators JAX uses."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")


class _LibraryInfoFilter(logging.Filter):
  """Drops INFO records of chatty libraries; their warnings and errors pass
  as one line each, without a traceback: the job reports what failed in its
  own error line (a failed checkpoint write, for example, is logged by each
  of orbax's writer threads)."""

  def __init__(self, libraries):
    super().__init__()
    self._markers = tuple(f"/{name}/" for name in libraries)

  def filter(self, record):
    library = any(m in record.pathname for m in self._markers)
    if (record.levelno >= logging.WARNING
        and "/saccader_jax/" not in record.pathname):
      # Any library's, including the standard library's event loops and
      # futures that orbax's writer threads run on; some put the traceback
      # into the message itself.
      record.exc_info, record.exc_text, record.stack_info = None, None, None
      message = record.getMessage()
      if "\n" in message:
        record.msg, record.args = message.split("\n", 1)[0], None
    return record.levelno >= logging.WARNING or not library


def quiet_library_logs(libraries=("orbax", "tensorflow_datasets", "jax",
                                  "etils")) -> None:
  """Keeps the console to this project's progress lines: the libraries'
  INFO records are dropped, and no library record carries a traceback."""
  for handler in logging.getLogger().handlers + logging.getLogger(
      "absl").handlers:
    handler.addFilter(_LibraryInfoFilter(libraries))
  # Background threads of the libraries (orbax's writers, their event
  # loops) that fail after the job has reported why: one line each.
  threading.excepthook = _one_line_thread_exception
  sys.unraisablehook = _one_line_unraisable


def _first_line(error: Optional[BaseException]) -> str:
  return str(error).split("\n", 1)[0] if error is not None else ""


def _one_line_thread_exception(args) -> None:
  logging.getLogger("absl").error(
      "%s in thread %s: %s", getattr(args.exc_type, "__name__", "Error"),
      getattr(args.thread, "name", "?"), _first_line(args.exc_value))


def _one_line_unraisable(unraisable) -> None:
  logging.getLogger("absl").error(
      "%s ignored in %r: %s",
      getattr(unraisable.exc_type, "__name__", "Error"), unraisable.object,
      _first_line(unraisable.exc_value))
