"""Errors a training job reports as plain lines, without a traceback.

`python -m saccader_jax.main` prints a `JobError`'s lines to stderr and exits
with its `exit_code`; library callers catch the classes as usual.
"""

from __future__ import annotations

from typing import Sequence


class JobError(Exception):
  """An error that explains itself: its message is all the user needs."""
  exit_code = 1


class ConfigError(JobError, ValueError):
  """A config that cannot run; `problems` holds one line per problem."""
  exit_code = 2

  def __init__(self, problems: Sequence[str]):
    self.problems = list(problems)
    super().__init__("\n".join(self.problems))


class DivergenceError(JobError, FloatingPointError):
  """A stage produced a non-finite loss or gradient norm."""


class CheckpointError(JobError):
  """No checkpoint of a stage could be restored."""
