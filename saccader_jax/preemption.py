"""Preemption notices: a SIGTERM makes the step loop save and stop.

Cloud TPU and spot VMs send SIGTERM and give a job tens of seconds before
the kill. The loop asks `reached(step, manager)` after every step; when it
says yes, the loop saves that step's checkpoint (with the input position),
waits for the write and raises `Preempted`, which `saccader_jax.main`
reports in one line and turns into exit code `EXIT_CODE`. Running the same
command again resumes from that checkpoint.

  - One process: `install()` sets a SIGTERM handler that only records the
    notice; the step in flight finishes and is saved.
  - Several processes (`jax.distributed`): JAX's preemption service catches
    SIGTERM on any host and tells all of them; orbax's
    `CheckpointManager.reached_preemption` returns True on every host at the
    same step (the step after the furthest any host had reached), so all
    save the same step. `install()` leaves that handler in place.

Signal handlers belong to the process, so the notice is process-wide state.
"""

from __future__ import annotations

import signal
import threading

from absl import logging
import jax
import orbax.checkpoint as ocp

from saccader_jax import errors

# EX_TEMPFAIL (sysexits.h): a temporary failure; run the job again.
EXIT_CODE = 75

_NOTICE = threading.Event()


class Preempted(errors.JobError):
  """The job stopped on a preemption notice after saving a checkpoint."""
  exit_code = EXIT_CODE
  label = "Preempted"


def _record(signum, frame):
  del frame
  if not _NOTICE.is_set():
    logging.warning("Received %s: the step in flight finishes, is saved, "
                    "and the job stops.", signal.Signals(signum).name)
  _NOTICE.set()


def install() -> None:
  """Makes SIGTERM a preemption notice (from the main thread). On several
  processes JAX's own handler already does (see the module docstring)."""
  if jax.process_count() == 1:
    signal.signal(signal.SIGTERM, _record)


def notify() -> None:
  """Records a preemption notice, as SIGTERM would (tests, schedulers that
  call in-process)."""
  _NOTICE.set()


def clear() -> None:
  _NOTICE.clear()


def reached(step: int, manager: ocp.CheckpointManager) -> bool:
  """Whether the loop must save `step` and stop. Every process must ask at
  every step (the multi-process check is collective)."""
  if jax.process_count() > 1:
    return manager.reached_preemption(step)
  return _NOTICE.is_set()
