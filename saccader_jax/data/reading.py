"""Reading a split's records by index: in order, many requests in flight.

From a bucket one record read is one request of tens of milliseconds, so a
single reader thread delivers ~20-100 records/s where a TPU host needs
thousands. `ordered_reads` keeps up to `2 x threads` single-record reads in
flight on a pool of threads and hands the records back in the order of their
keys, so the stream the input pipeline builds from them (stream position ->
example) is exactly the serial reader's, whatever the thread count.

Why single-record reads on a long-lived pool rather than the source's
batched read (`__getitems__`): array_record's batched read opens a new
thread pool for every call and waits for all of its reads, so the next
chunk's requests start only when the slowest of this chunk's ends (a bubble
per chunk at any latency). The pool here keeps the window full across chunk
boundaries.

Streams end before the interpreter does (`stopping_at_exit`). The input
pipeline's generators run on tf.data's own threads; one still inside a
call when Python finalises (a process that exits with a live iterator:
a script, a test, a failed job) can never take the interpreter lock back,
and the process hangs on exit or aborts. That was the hang once seen with
the batched read, whose call waits on threads of its own (reproduced: a
script that exits holding three such streams hung in 3 of 6 runs, and with
the one-record serial read aborted in 1 of 4; with its generators wrapped
in `stopping_at_exit`, 0 of 8 hung). `stopping_at_exit` ends every stream at
its next record when the interpreter begins to shut down and waits until
none is inside a call.

A storage stand-in with latency (`DelayedSource`, config.dataset
read_latency_ms) delays every read request as a remote store would; the
input benchmark and tests read through it.
"""

from __future__ import annotations

import atexit
import collections
from concurrent import futures
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

# Read threads when config.dataset.read_threads is not set: enough to hide
# ~20 ms per request at ~3,000 records/s (64 / 0.02 s), a TPU host's rate.
DEFAULT_READ_THREADS = 64


class DelayedSource(Sequence):
  """A data source whose every read request waits `latency_s` first, as a
  read from remote storage does (e.g. ~20 ms from a bucket): a stand-in
  for one in tests and benchmarks. A batched read of n records is n
  requests, issued one after the other."""

  def __init__(self, source: Sequence[Any], latency_s: float):
    self._source, self._latency_s = source, latency_s

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, key):
    time.sleep(self._latency_s)
    return self._source[key]

  def __getitems__(self, keys: Sequence[int]) -> list:
    time.sleep(self._latency_s * len(keys))
    return list(self._source.__getitems__(keys))


def ordered_reads(read_one: Callable[[int], Any], keys: Iterable[int],
                  threads: int, ahead: int = 0) -> Iterator[Any]:
  """read_one(key) for each key, in the keys' order, `ahead` reads (default
  2 x threads) submitted ahead of the one delivered, on `threads` threads
  (1: read in this thread, one at a time).

  A consumer that takes n records at a time without waiting (a chunk) needs
  ahead >= n + 2 x threads: the reads of the next chunk are then under way
  while it takes this one, and it never waits a request's latency.

  A read that raises re-raises here, at its key's place in the order: the
  records before it are delivered first. Closing the iterator (or dropping
  it) cancels the reads not yet started and leaves the pool to end on its
  own; no thread blocks the interpreter's exit for longer than one read.
  """
  if threads <= 1:
    for key in keys:
      if _EXITING.is_set():
        return
      yield read_one(key)
    return
  pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="read")
  ahead = ahead or 2 * threads
  window = collections.deque()
  try:
    for key in keys:
      if _EXITING.is_set():
        return
      window.append(pool.submit(read_one, key))
      if len(window) >= ahead:
        yield window.popleft().result()
    while window and not _EXITING.is_set():
      yield window.popleft().result()
  finally:
    for pending in window:
      pending.cancel()
    pool.shutdown(wait=False, cancel_futures=True)


# Set when the interpreter begins to exit: every stream ends at its next
# record.
_EXITING = threading.Event()
_CALLS_LOCK = threading.Lock()
_calls_in_progress = 0
# Longest wait at exit for the streams inside a call (about one read each).
_EXIT_WAIT_S = 30.0


def stopping_at_exit(generate: Callable[[], Iterator[Any]]
                     ) -> Callable[[], Iterator[Any]]:
  """generate (a generator function for tf.data's `from_generator`), made
  to end when the interpreter begins to exit, with each of its calls
  counted so that the exit waits for them (see the module docstring)."""

  def counted():
    global _calls_in_progress
    items = generate()
    while not _EXITING.is_set():
      with _CALLS_LOCK:
        _calls_in_progress += 1
      try:
        item = next(items, _END)
      finally:
        with _CALLS_LOCK:
          _calls_in_progress -= 1
      if item is _END:
        return
      yield item
    items.close()

  return counted


_END = object()


def _end_streams() -> None:
  _EXITING.set()
  deadline = time.monotonic() + _EXIT_WAIT_S
  while _calls_in_progress and time.monotonic() < deadline:
    time.sleep(0.005)


# Before concurrent.futures stops its pools (threading's exit hooks run
# newest first), so the reads in flight finish normally; atexit where that
# hook does not exist.
getattr(threading, "_register_atexit", atexit.register)(_end_streams)
