"""Global batches staged on the devices ahead of the step.

    batches = device_prefetch.DevicePrefetch(job.train_batches(...), size=2)
    try:
      for step in ...:
        state, metrics = train_step(state, next(batches), key)
    finally:
      batches.close()

A background thread takes each batch from the stream (reading this host's
rows and making them global arrays, `Job.global_batch`, which starts their
transfer) and keeps up to `size` of them waiting, so that a host stall (a
slow read, the loop's fetch of its metrics, a checkpoint copy) is hidden
behind the steps already staged. The order is the stream's: the loop sees
the batches it would see without the thread, and a checkpoint's input
position counts steps taken, not batches staged, so a batch staged but not
used is read again by the job that resumes.

`wait_seconds` is the time the devices sat idle for want of a batch: the
loop reports its share of each logging interval's wall time
(`train/input_wait_fraction`). Steps are dispatched asynchronously, so the
loop may wait for a batch while the devices still run the steps before it;
`next_after(busy)` counts only the wait after `busy` (an array the last
dispatched step computes) is ready, when the devices have nothing left.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator

# How often a thread blocked on a full queue checks whether it was closed.
_POLL_S = 0.05
# How often a consumer waiting for a batch checks whether the devices went
# idle: the resolution of `wait_seconds`.
_IDLE_POLL_S = 0.001
_END = object()


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


class DevicePrefetch(Iterator[Any]):
  """`batches`, `size` of them taken ahead by a background thread."""

  def __init__(self, batches: Iterator[Any], size: int = 2):
    if size < 1:
      raise ValueError(f"DevicePrefetch size must be at least 1; got {size}.")
    self._batches = batches
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._closed = threading.Event()
    self.wait_seconds = 0.0
    self._thread = threading.Thread(target=self._fill, daemon=True,
                                    name="device-prefetch")
    self._thread.start()

  def _put(self, item: Any) -> bool:
    """Puts item unless closed first; whether it was put."""
    while not self._closed.is_set():
      try:
        self._queue.put(item, timeout=_POLL_S)
        return True
      except queue.Full:
        continue
    return False

  def _fill(self) -> None:
    try:
      for batch in self._batches:
        if not self._put(batch):
          return
      self._put(_END)
    except BaseException as e:  # pylint: disable=broad-except
      # Raised in the consumer, at this batch's place in the order.
      self._put(_Failure(e))

  def __next__(self) -> Any:
    return self.next_after(None)

  def next_after(self, busy: Any) -> Any:
    """The next batch. busy: None, or an array (`jax.Array.is_ready`) that
    the devices' last queued work computes; the wait counted in
    `wait_seconds` starts when it is ready (None: at once)."""
    try:
      item = self._queue.get_nowait()
    except queue.Empty:
      item = self._wait(busy)
    if item is _END:
      self._queue.put(_END)   # every later call ends too
      raise StopIteration
    if isinstance(item, _Failure):
      self._queue.put(item)
      raise item.error
    return item

  def _wait(self, busy: Any) -> Any:
    """The next item, once there is one; adds the time waited after busy
    was ready to wait_seconds."""
    idle_since = time.perf_counter() if busy is None or busy.is_ready() else (
        None)
    while idle_since is None:
      try:
        return self._queue.get(timeout=_IDLE_POLL_S)
      except queue.Empty:
        if busy.is_ready():
          idle_since = time.perf_counter()
    item = self._queue.get()
    self.wait_seconds += time.perf_counter() - idle_since
    return item

  def close(self, timeout: float = 10.0) -> None:
    """Stops the thread and drops the staged batches; waits up to
    `timeout` s for the thread (one that is inside a read ends with it)."""
    self._closed.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join(timeout)

  @property
  def running(self) -> bool:
    return self._thread.is_alive()

  def __enter__(self) -> "DevicePrefetch":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
