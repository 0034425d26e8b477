"""Batches staged ahead by a background thread: order, errors, stopping."""

import threading
import time

import pytest

from saccader_jax import device_prefetch


def _prefetch_threads():
  return [t for t in threading.enumerate()
          if t.name == "device-prefetch" and t.is_alive()]


def test_the_stream_arrives_whole_and_in_order_then_ends():
  batches = device_prefetch.DevicePrefetch(iter(range(50)), size=2)
  assert list(batches) == list(range(50))
  with pytest.raises(StopIteration):
    next(batches)
  batches.close()
  assert not batches.running


def test_at_most_size_batches_are_taken_ahead():
  taken = []

  def stream():
    for i in range(100):
      taken.append(i)
      yield i

  with device_prefetch.DevicePrefetch(stream(), size=2) as batches:
    assert next(batches) == 0
    time.sleep(0.3)
    # The one handed out, two staged, one held by the blocked thread.
    assert len(taken) <= 4


def test_a_failure_is_raised_at_its_place_after_the_batches_before_it():
  def stream():
    yield from range(3)
    raise OSError(5, "Input/output error")

  batches = device_prefetch.DevicePrefetch(stream(), size=2)
  assert [next(batches) for _ in range(3)] == [0, 1, 2]
  with pytest.raises(OSError, match="Input/output error"):
    next(batches)
  with pytest.raises(OSError):   # and again, not a hang
    next(batches)
  batches.close()


def test_close_stops_a_thread_blocked_on_a_full_queue_and_drops_its_batches():
  batches = device_prefetch.DevicePrefetch(iter(range(10**9)), size=2)
  next(batches)
  time.sleep(0.1)   # the thread now waits for room
  batches.close()
  assert not batches.running


def test_waiting_for_a_slow_stream_is_counted():
  def slow():
    for i in range(4):
      time.sleep(0.1)
      yield i

  batches = device_prefetch.DevicePrefetch(slow(), size=2)
  list(batches)
  assert batches.wait_seconds >= 0.3   # ~0.4 s of input, nothing else
  batches.close()


class _BusyUntil:
  """Stands in for an array the devices are still computing: ready
  `seconds` after it is made."""

  def __init__(self, seconds: float):
    self._ready_at = time.perf_counter() + seconds

  def is_ready(self) -> bool:
    return time.perf_counter() >= self._ready_at


def test_only_the_wait_after_the_devices_finish_is_counted():
  """Dispatch is asynchronous: a loop waiting 0.6 s for a batch while the
  devices still run 0.4 s of queued steps left them idle 0.2 s, not 0.6."""
  def late():
    time.sleep(0.6)
    yield 0
    time.sleep(0.3)
    yield 1

  with device_prefetch.DevicePrefetch(late(), size=2) as batches:
    assert batches.next_after(_BusyUntil(0.4)) == 0
    assert 0.15 <= batches.wait_seconds <= 0.35, batches.wait_seconds
    # Devices busy for longer than the batch takes: nothing was waited.
    before = batches.wait_seconds
    assert batches.next_after(_BusyUntil(1.0)) == 1
    assert batches.wait_seconds == before


def test_a_stage_reports_its_input_wait_and_leaves_no_thread(tiny_config,
                                                             tmp_path):
  """A stage whose input turns slow (batches 5-8 each 1 s late, the step
  ~0.1 s) spends most of that interval's wall time waiting, and says so in
  TensorBoard; when it ends, its prefetch thread is gone."""
  from experiments import logged_scalars  # pylint: disable=g-import-not-at-top
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  from saccader_jax.job import Job  # pylint: disable=g-import-not-at-top
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = 8
  config.log_every_steps = config.checkpoint_every_steps = 4
  config.eval_at_stage_end = False
  real = Job.train_batches

  def late(self, *args, **kwargs):
    for i, batch in enumerate(real(self, *args, **kwargs)):
      time.sleep(1.0 if 4 <= i < 8 else 0.0)
      yield batch

  Job.train_batches = late
  try:
    train.Trainer.open(config, str(tmp_path)).train()
  finally:
    Job.train_batches = real
  assert not _prefetch_threads()
  fractions = logged_scalars.logged_scalars(
      tmp_path, "representation/train/input_wait_fraction")[
          "representation/train/input_wait_fraction"]
  assert [step for step, _ in fractions] == [4, 8]
  assert 0.6 < fractions[1][1] <= 1.0, fractions
  assert fractions[0][1] < fractions[1][1]
