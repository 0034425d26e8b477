"""Opening a run: the one way `main`, `Run` and `Trainer.open` start a job.

Opening checks the whole config, prepares the data, takes the workdir's
lease (one rule for one process and for many) and creates the `job.Job`,
in that order and once each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from etils import epath
import jax
import ml_collections

from saccader_jax import compilation_cache
from saccader_jax import config_checks
from saccader_jax import workdir_lease

if TYPE_CHECKING:
  from saccader_jax import job as job_lib  # pylint: disable=g-bad-import-order


def open_job(config: ml_collections.ConfigDict, workdir: epath.PathLike, *,
             pretrained_fields: tuple[str, ...] = (),
             read_only: bool = False, hold_lease: bool = True,
             lease_timeout: float = workdir_lease.DEFAULT_TIMEOUT_S,
             use_compilation_cache: bool = False) -> "job_lib.Job":
  """Opens a run's job: the one way `main`, `Run` and `Trainer.open` start.

  In order: the whole config is checked (pretrained_fields: the model
  fields given trained), the data prepared (a folder's files checked), both
  before the workdir is touched; then a writing job takes the workdir's
  lease (hold_lease; every process of a multi-host job the same way,
  `workdir_lease.acquire_for_job`), points the persistent compilation cache
  at its place (use_compilation_cache: before the first compilation, so that a
  restarted job reads its steps back), and the job is created. A read-only
  job takes no lease: a live workdir may be read. `Job.close` releases the
  lease.
  """
  config_checks.check_config(config, jax.device_count(), jax.process_count(),
                             pretrained_fields=pretrained_fields)
  # After the check: a mistake in the config is reported before the
  # trainer's libraries load (seconds on a small CPU).
  from saccader_jax import job as job_lib  # pylint: disable=g-import-not-at-top
  builder = job_lib.prepare_data(config.dataset)
  lease = (workdir_lease.acquire_for_job(workdir, lease_timeout)
           if hold_lease and not read_only else None)
  try:
    if use_compilation_cache and not read_only:
      compilation_cache.enable(config, workdir)
    job = job_lib.Job.create(config, workdir, builder, read_only=read_only)
  except BaseException:
    if lease is not None:
      lease.release()
    raise
  job.lease = lease
  return job
