"""Errors a training job reports as plain lines, without a traceback.

`python -m saccader_jax.main` prints a `JobError`'s lines to stderr and exits
with its `exit_code`; library callers catch the classes as usual.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Sequence


class JobError(Exception):
  """An error that explains itself: its message is all the user needs."""
  exit_code = 1
  label = "Error"     # what each printed line starts with


class ConfigError(JobError, ValueError):
  """A config that cannot run; `problems` holds one line per problem."""
  exit_code = 2
  label = "Config error"

  def __init__(self, problems: Sequence[str]):
    self.problems = list(problems)
    super().__init__("\n".join(self.problems))


class DivergenceError(JobError, FloatingPointError):
  """A stage produced a non-finite loss or gradient norm."""


class CheckpointError(JobError):
  """No checkpoint of a stage could be restored."""


class WriteError(JobError):
  """A checkpoint or a result could not be written (no space, no
  permission): what was written before is kept."""


class WorkdirError(WriteError, PermissionError):
  """The workdir cannot be created or written."""


class UsageError(JobError):
  """Command-line flags that contradict each other."""
  exit_code = 2


def report(error: JobError) -> int:
  """Prints the error's lines to stderr, each after its label; returns its
  exit code (what a command exits with)."""
  for line in str(error).splitlines():
    print(f"{error.label}: {line}", file=sys.stderr, flush=True)
  return error.exit_code


# TensorStore (orbax's array writer) reports OS errors in its message.
_TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='?(\d+)")
_TENSORSTORE_FILE = re.compile(r'writing local file "([^"]+)"')


def write_failure(error: BaseException) -> str:
  """One line saying why a write failed: the OS error and its file, found
  in error's chain or in a TensorStore message, else the first line of
  error's own message."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.strerror:
      where = f" ({seen.filename})" if seen.filename else ""
      return f"{seen.strerror} [errno {seen.errno}]{where}"
    message = str(seen)
    code = _TENSORSTORE_OS_ERROR.search(message)
    if code:
      path = _TENSORSTORE_FILE.search(message)
      where = f" ({path.group(1)})" if path else ""
      return f"{os.strerror(int(code.group(1)))} [errno {code.group(1)}]{where}"
    seen = seen.__cause__ or seen.__context__
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def read_failure(error: BaseException) -> str:
  """One line saying why a read failed, found as `write_failure` finds it
  (an OS error and its file in the chain, else the first line)."""
  return write_failure(error)


class DataError(JobError):
  """A data file is damaged; the message names it and how to rebuild."""
