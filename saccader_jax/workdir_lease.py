"""One job per workdir: a lease the writing job holds while it runs.

A job that writes a workdir (`python -m saccader_jax.main`, a writing
`saccader_jax.Run`, the experiment scripts' result folders) first takes the
lease `<workdir>/lease.json`: who holds it (host, process id, job id, since
when) and when it last refreshed it. A thread refreshes it every
`timeout / 6` seconds; the job releases it when it ends, however it ends (a
clean exit, a preemption exit, an error). A second job started on that
workdir stops before writing anything, with one line naming the holder and
how long ago it refreshed the lease. A lease not refreshed for `timeout`
seconds (default 120) is stale: its holder is dead (SIGKILL, a lost host),
and the next job takes it over with a warning. A holder that ran on this
machine and whose process is gone (killed, the OOM killer) is taken over at
once: "this machine" is the host name, the kernel's boot id and the PID
namespace (containers share the first two), and the process is the holder's
pid with the start time the lease records (a reused pid is another process).

Readers take no lease: evaluating or plotting a live workdir is allowed.

The processes of one multi-host job share one lease: process 0 takes it and
hands the job id to the others, which check that the lease names it.

What "atomic" means here:
  - a local path: every change of the lease is a compare-and-swap made under
    an exclusive `flock` of the workdir directory, so two jobs on one
    machine (or on a file system whose locks span machines, such as NFSv4)
    cannot both take it; on a file system without working locks two jobs
    started within the same instant could.
  - gs://: the lease object is written with a generation precondition
    (created only if absent, replaced or deleted only at the generation last
    read), which Cloud Storage applies atomically: of two jobs, exactly one
    takes it.
In both, a holder frozen for longer than the timeout (a stopped process, a
suspended VM) loses the lease to the next job; when it wakes it logs that
the lease is lost at its next refresh.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
from typing import Iterator, Optional
import uuid

from absl import logging
from etils import epath

from saccader_jax import errors
from saccader_jax import paths

LEASE_FILE = "lease.json"
DEFAULT_TIMEOUT_S = 120.0


class WorkdirBusy(errors.JobError):
  """Another job holds the workdir's lease."""
  exit_code = 3


def _read_text(path: str) -> str:
  try:
    with open(path) as f:
      return f.read().strip()
  except OSError:
    return ""


def this_machine() -> str:
  """Host name, boot id and PID namespace ("" where /proc does not say):
  a pid names one process only under all three."""
  boot_id = _read_text("/proc/sys/kernel/random/boot_id")
  try:
    namespace = os.readlink("/proc/self/ns/pid")
  except OSError:
    namespace = ""
  if not boot_id or not namespace:
    return ""
  return f"{socket.gethostname()}/{boot_id}/{namespace}"


def process_start(pid: int) -> str:
  """The process's start time (clock ticks after boot, /proc/<pid>/stat
  field 22), or "" if there is no such process."""
  stat = _read_text(f"/proc/{pid}/stat")
  # The command name (field 2) is parenthesised and may hold spaces.
  fields = stat.rpartition(")")[2].split()
  return fields[19] if len(fields) > 19 else ""


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a lease, as `lease.json` records it."""
  job_id: str
  host: str
  pid: int
  started: float      # unix time the job took the lease
  refreshed: float    # unix time of its last refresh
  timeout: float      # seconds without a refresh after which it is stale
  machine: str = ""   # `this_machine()` of the holder ("": unknown)
  process_start: str = ""   # `process_start(pid)` when it took the lease

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

  @classmethod
  def from_json(cls, text: str) -> "Holder":
    return cls(**json.loads(text))

  def age(self, now: float) -> float:
    return max(now - self.refreshed, 0.0)

  def stale(self, now: float) -> bool:
    return self.age(now) > self.timeout

  def gone_from_this_machine(self) -> bool:
    """Whether the holder ran on this machine and its process has ended
    (its pid is free, or now another process's)."""
    return bool(self.machine and self.process_start
                and self.machine == this_machine()
                and process_start(self.pid) != self.process_start)

  def describe(self, now: float) -> str:
    return (f"job {self.job_id} (host {self.host}, process {self.pid}), "
            f"refreshed {self.age(now):.0f} s ago")


class _LocalStore:
  """The lease file on a local (or locally mounted) file system; each change
  a compare-and-swap under an exclusive flock."""

  def __init__(self, workdir: epath.Path):
    self.path = os.fspath(workdir / LEASE_FILE)
    self.directory = os.fspath(workdir)

  @contextlib.contextmanager
  def _locked(self) -> Iterator[None]:
    import fcntl  # pylint: disable=g-import-not-at-top
    # The workdir itself is the lock: nothing is left behind.
    fd = os.open(self.directory, os.O_RDONLY)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      yield
    finally:
      os.close(fd)   # releases the lock

  def _read(self) -> Optional[str]:
    try:
      with open(self.path) as f:
        return f.read()
    except FileNotFoundError:
      return None

  def read(self) -> tuple[Optional[str], Optional[str]]:
    """(the lease's text or None, a token that `swap` compares)."""
    with self._locked():
      text = self._read()
    return text, text

  def swap(self, token: Optional[str], text: Optional[str]) -> Optional[str]:
    """Replaces the lease by text (None: deletes it) if it is still what
    `token` read; returns the new token, or raises WorkdirBusy's cause."""
    with self._locked():
      if self._read() != token:
        raise _Changed()
      if text is None:
        with contextlib.suppress(FileNotFoundError):
          os.remove(self.path)
        return None
      temporary = f"{self.path}.{os.getpid()}.tmp"
      with open(temporary, "w") as f:
        f.write(text)
      os.replace(temporary, self.path)
      return text


class _GcsStore:
  """The lease object on Cloud Storage; each change conditional on the
  generation last read."""

  def __init__(self, workdir: epath.Path):
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    bucket, _, prefix = os.fspath(workdir)[len("gs://"):].partition("/")
    name = f"{prefix.rstrip('/')}/{LEASE_FILE}" if prefix else LEASE_FILE
    self.blob_name = name
    self.bucket = storage.Client().bucket(bucket)

  def read(self) -> tuple[Optional[str], int]:
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    for _ in range(10):
      blob = self.bucket.get_blob(self.blob_name)
      if blob is None:
        return None, 0
      try:
        text = blob.download_as_bytes(
            if_generation_match=blob.generation).decode()
        return text, int(blob.generation)
      except (exceptions.PreconditionFailed, exceptions.NotFound):
        continue   # replaced between the two calls: read again
    raise errors.WorkdirError(f"the lease gs://{self.bucket.name}/"
                              f"{self.blob_name} changes too often to read.")

  def swap(self, token: int, text: Optional[str]) -> int:
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    blob = self.bucket.blob(self.blob_name)
    try:
      if text is None:
        blob.delete(if_generation_match=token)
        return 0
      blob.upload_from_string(text, content_type="application/json",
                              if_generation_match=token)
    except (exceptions.PreconditionFailed, exceptions.NotFound) as e:
      raise _Changed() from e
    return int(blob.generation)


class _Changed(Exception):
  """The lease changed since it was read."""


def _store(workdir: epath.Path):
  if os.fspath(workdir).startswith("gs://"):
    return _GcsStore(workdir)
  return _LocalStore(workdir)


class Lease:
  """A held lease; `release` (or leaving `hold`) gives it back."""

  def __init__(self, workdir: epath.Path, store, holder: Holder, token,
               refresh_every: float):
    self.workdir = workdir
    self.holder = holder
    self.lost = False
    self._store = store
    self._token = token
    self._stop = threading.Event()
    self._lock = threading.Lock()
    self._thread = threading.Thread(target=self._refresh_loop,
                                    args=(refresh_every,), daemon=True,
                                    name="workdir-lease")
    self._thread.start()
    # A script that ends on an exception without releasing still gives the
    # lease back (only SIGKILL or a lost host leaves a stale one).
    atexit.register(self.release)

  @property
  def job_id(self) -> str:
    return self.holder.job_id

  def refresh(self) -> None:
    """Marks the lease alive now (the thread calls this)."""
    with self._lock:
      if self.lost or self._stop.is_set():
        return
      holder = dataclasses.replace(self.holder, refreshed=time.time())
      try:
        self._token = self._store.swap(self._token, holder.to_json())
        self.holder = holder
      except _Changed:
        self.lost = True
        logging.error(
            "The lease of %s was taken by another job while this one did "
            "not refresh it for over %.0f s; two jobs may now write this "
            "workdir. Stop one of them.", self.workdir, holder.timeout)
      except Exception as e:  # pylint: disable=broad-except
        # A transient storage error: the next refresh tries again.
        logging.warning("Could not refresh the lease of %s: %s",
                        self.workdir, e)

  def _refresh_loop(self, every: float) -> None:
    while not self._stop.wait(every):
      self.refresh()

  def release(self) -> None:
    """Stops refreshing and deletes the lease if it is still this job's
    (a second call does nothing)."""
    if self._stop.is_set():
      return
    self._stop.set()
    self._thread.join()
    atexit.unregister(self.release)
    with self._lock:
      if self.lost:
        return
      try:
        self._store.swap(self._token, None)
      except _Changed:
        logging.warning("The lease of %s is no longer this job's; left as "
                        "it is.", self.workdir)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Could not release the lease of %s (%s); the next "
                        "job takes it over once it is stale.", self.workdir,
                        e)


def acquire(workdir: epath.PathLike, timeout: float = DEFAULT_TIMEOUT_S,
            job_id: Optional[str] = None) -> Lease:
  """Takes workdir's lease (creating workdir), or raises WorkdirBusy.

  Args:
    workdir: a local path or a gs:// URL.
    timeout: seconds without a refresh after which this job's lease is
      stale (recorded in the lease; another job's own timeout governs its).
    job_id: the job's id (default a new one).
  """
  workdir = paths.absolute_path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.WorkdirError(
        f"workdir {str(workdir)!r} is not writable: {e}. Choose another "
        "--workdir.") from e
  store = _store(workdir)
  job_id = job_id or uuid.uuid4().hex[:12]
  while True:
    text, token = store.read()
    now = time.time()
    if text is not None:
      try:
        current = Holder.from_json(text)
      except (ValueError, TypeError) as e:
        logging.warning("Taking over the unreadable lease of %s (%s).",
                        workdir, e)
        current = None
      if current is not None and current.gone_from_this_machine():
        logging.warning("Taking over the lease of %s from %s: its process "
                        "is gone from this machine.", workdir,
                        current.describe(now))
      elif current is not None and not current.stale(now):
        raise WorkdirBusy(
            f"{workdir} is in use by {current.describe(now)}: one job per "
            f"workdir. Wait for it to end, stop it, or choose another "
            f"--workdir (a lease not refreshed for {current.timeout:.0f} s "
            f"is stale and taken over).")
      elif current is not None:
        logging.warning("Taking over the stale lease of %s from %s.",
                        workdir, current.describe(now))
    holder = Holder(job_id=job_id, host=socket.gethostname(),
                    pid=os.getpid(), started=now, refreshed=now,
                    timeout=float(timeout), machine=this_machine(),
                    process_start=process_start(os.getpid()))
    try:
      token = store.swap(token, holder.to_json())
    except _Changed:
      continue   # another job changed it between the read and the swap
    logging.info("Holding the lease of %s (job %s).", workdir, job_id)
    return Lease(workdir, store, holder, token, refresh_every=timeout / 6)


def check_holder(workdir: epath.PathLike, job_id: str) -> None:
  """Raises WorkdirBusy unless workdir's lease names job_id (the processes
  of a multi-host job other than 0 check the lease process 0 took)."""
  workdir = paths.absolute_path(workdir)
  text, _ = _store(workdir).read()
  holder = Holder.from_json(text) if text else None
  if holder is None or holder.job_id != job_id:
    now = time.time()
    held = holder.describe(now) if holder else "no job"
    raise WorkdirBusy(f"{workdir}'s lease is held by {held}, not by this "
                      f"job ({job_id}).")


def acquire_for_job(workdir: epath.PathLike,
                    timeout: float = DEFAULT_TIMEOUT_S) -> Optional[Lease]:
  """The lease of workdir for every process of this JAX job (each must
  call): process 0 takes it and returns it (the caller releases it); the
  others return None after checking that it names their job. Raises
  WorkdirBusy on every process if process 0 could not take it."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return acquire(workdir, timeout)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  lease, failure = None, None
  if jax.process_index() == 0:
    try:
      lease = acquire(workdir, timeout)
    except WorkdirBusy as e:
      failure = e
  # Process 0's job id (zeros: it could not take the lease) to every process.
  job_id = (lease.job_id if lease else "").ljust(12, "\0").encode()[:12]
  shared = multihost_utils.broadcast_one_to_all(
      np.frombuffer(job_id, np.uint8))
  shared_id = bytes(np.asarray(shared, np.uint8)).rstrip(b"\0").decode()
  if failure is not None:
    raise failure
  if not shared_id:
    text, _ = _store(paths.absolute_path(workdir)).read()
    holder = (Holder.from_json(text).describe(time.time()) if text
              else "another job")
    raise WorkdirBusy(f"{workdir} is in use by {holder}: process 0 could "
                      "not take its lease.")
  if lease is None:
    check_holder(workdir, shared_id)
  return lease


@contextlib.contextmanager
def hold(workdir: epath.PathLike, timeout: float = DEFAULT_TIMEOUT_S
         ) -> Iterator[Optional[Lease]]:
  """`acquire_for_job` for the duration of the block, released however the
  block ends."""
  lease = acquire_for_job(workdir, timeout)
  try:
    yield lease
  finally:
    if lease is not None:
      lease.release()
