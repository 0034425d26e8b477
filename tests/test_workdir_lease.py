"""One job per workdir: the lease, its refresh, release and stale takeover,
locally and on gs://, and what the commands do with it."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from saccader_jax import errors
from saccader_jax import run_record
from saccader_jax import workdir_lease
from saccader_jax.research import Run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_holder(workdir) -> dict:
  with open(os.path.join(workdir, workdir_lease.LEASE_FILE)) as f:
    return json.load(f)


def test_a_held_workdir_is_refused_until_released(tmp_path):
  workdir = tmp_path / "run"
  lease = workdir_lease.acquire(workdir)
  holder = read_holder(workdir)
  assert (holder["pid"], holder["job_id"]) == (os.getpid(), lease.job_id)
  with pytest.raises(workdir_lease.WorkdirBusy) as busy:
    workdir_lease.acquire(workdir)
  message = str(busy.value)
  assert len(message.splitlines()) == 1
  assert f"in use by job {lease.job_id} (host " in message
  assert f"process {os.getpid()}), refreshed 0 s ago" in message
  lease.release()
  assert os.listdir(workdir) == []   # nothing of the lease is left
  lease.release()   # twice: nothing more
  workdir_lease.acquire(workdir).release()


def test_the_holder_refreshes_and_a_stale_lease_is_taken_over(tmp_path,
                                                             caplog):
  workdir = tmp_path / "run"
  lease = workdir_lease.acquire(workdir, timeout=0.6)   # refresh every 0.1 s
  time.sleep(0.45)
  holder = read_holder(workdir)
  assert holder["refreshed"] > holder["started"] + 0.2
  # The holder stops refreshing (a SIGKILL, a lost host) without releasing.
  lease._stop.set()  # pylint: disable=protected-access
  lease._thread.join()  # pylint: disable=protected-access
  with pytest.raises(workdir_lease.WorkdirBusy):
    workdir_lease.acquire(workdir)
  time.sleep(0.7)
  with caplog.at_level("WARNING"):
    second = workdir_lease.acquire(workdir)
  assert f"Taking over the stale lease of {workdir} from job " \
      f"{lease.job_id}" in caplog.text
  assert read_holder(workdir)["job_id"] == second.job_id
  # The first holder, awake again, finds its lease gone and leaves it be.
  lease._stop.clear()  # pylint: disable=protected-access
  lease.refresh()
  assert lease.lost
  lease._stop.set()  # pylint: disable=protected-access
  lease.release()
  assert read_holder(workdir)["job_id"] == second.job_id
  second.release()


def _ended_process() -> tuple[int, str]:
  """(pid, start time) of a process that has ended."""
  process = subprocess.Popen(["sleep", "60"])
  start = workdir_lease.process_start(process.pid)
  process.kill()
  process.wait()
  assert start and workdir_lease.process_start(process.pid) == ""
  return process.pid, start


def _write_holder(workdir, **fields) -> dict:
  now = time.time()
  holder = dict(job_id="abcdef012345", host="vm", pid=1, started=now,
                refreshed=now, timeout=120.0,
                machine=workdir_lease.this_machine(), process_start="1")
  holder.update(fields)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, workdir_lease.LEASE_FILE), "w") as f:
    json.dump(holder, f)
  return holder


def test_a_holder_gone_from_this_machine_is_taken_over_at_once(tmp_path,
                                                               caplog):
  assert workdir_lease.this_machine()   # Linux: /proc says
  workdir = tmp_path / "run"
  pid, start = _ended_process()
  _write_holder(workdir, pid=pid, process_start=start)
  with caplog.at_level("WARNING"):
    lease = workdir_lease.acquire(workdir)   # refreshed 0 s ago, yet gone
  assert (f"Taking over the lease of {workdir} from job abcdef012345 (host "
          f"vm, process {pid}), refreshed 0 s ago: its process is gone from "
          "this machine.") in caplog.text
  holder = read_holder(workdir)
  assert holder["job_id"] == lease.job_id
  assert (holder["machine"], holder["process_start"]) == (
      workdir_lease.this_machine(),
      workdir_lease.process_start(os.getpid()))
  lease.release()


def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path):
  # The holder's pid now belongs to a live process (this one) that started
  # at another time: the holder has ended.
  workdir = tmp_path / "run"
  _write_holder(workdir, pid=os.getpid(), process_start="1")
  workdir_lease.acquire(workdir).release()
  # The same pid and start time: the holder itself, alive, is refused.
  _write_holder(workdir, pid=os.getpid(),
                process_start=workdir_lease.process_start(os.getpid()))
  with pytest.raises(workdir_lease.WorkdirBusy, match="abcdef012345"):
    workdir_lease.acquire(workdir)


def test_a_holder_on_another_machine_keeps_the_timeout_rule(tmp_path):
  workdir = tmp_path / "run"
  pid, start = _ended_process()
  for machine in ("other/" + workdir_lease.this_machine().partition("/")[2],
                  "", workdir_lease.this_machine().replace("pid:[",
                                                           "pid:[9")):
    # Another host, an older lease that names no machine, another PID
    # namespace (a container): the pid says nothing; refused until stale.
    holder = _write_holder(workdir, pid=pid, process_start=start,
                           machine=machine)
    with pytest.raises(workdir_lease.WorkdirBusy, match="abcdef012345"):
      workdir_lease.acquire(workdir)
    _write_holder(workdir, **dict(holder, refreshed=time.time() - 121))
    workdir_lease.acquire(workdir).release()


def test_a_gs_workdir_is_leased_with_generation_preconditions(gcs):
  workdir = "gs://bucket/runs/a"
  lease = workdir_lease.acquire(workdir, timeout=0.6)
  stored = os.path.join(gcs, "bucket", "runs", "a", workdir_lease.LEASE_FILE)
  with open(stored) as f:
    assert json.load(f)["job_id"] == lease.job_id
  with pytest.raises(workdir_lease.WorkdirBusy, match="in use by job "
                     f"{lease.job_id}"):
    workdir_lease.acquire(workdir)
  time.sleep(0.3)
  with open(stored) as f:   # refreshed through a conditional write
    refreshed = json.load(f)
  assert refreshed["refreshed"] > refreshed["started"]
  lease._stop.set()  # pylint: disable=protected-access
  lease._thread.join()  # pylint: disable=protected-access
  time.sleep(0.7)
  second = workdir_lease.acquire(workdir)   # stale: taken over
  lease._stop.clear()  # pylint: disable=protected-access
  lease.refresh()      # the old holder's conditional write fails
  assert lease.lost
  second.release()
  assert not os.path.exists(stored)


def test_a_writing_run_is_refused_a_live_workdir_a_reading_one_is_not(
    tiny_config, tmp_path):
  workdir = tmp_path / "run"
  with Run(tiny_config, workdir):
    with pytest.raises(workdir_lease.WorkdirBusy):
      Run(tiny_config, workdir)
  # Released at close: the next run may write.
  Run(tiny_config, workdir).close()
  live = workdir_lease.acquire(workdir)
  try:
    config = run_record.load_config(workdir)
    with Run(config, workdir, read_only=True) as run:
      assert run.stage_names == tuple(tiny_config.run_stages)
  finally:
    live.release()


def main_command(*args):
  return [sys.executable, "-m", "saccader_jax.main", *args]


def test_process_flags_without_distributed_are_an_error(tmp_path):
  workdir = tmp_path / "never"
  result = subprocess.run(
      main_command("--config=configs/fashion_mnist_whole_items_saccader.py",
                   f"--workdir={workdir}",
                   "--coordinator_address=localhost:1234",
                   "--num_processes=2", "--process_id=0"),
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip() == (
      "Error: --coordinator_address, --num_processes, --process_id take "
      "effect only with --distributed; add --distributed to run one job over "
      "several processes, or drop them.")
  assert not workdir.exists()


def wait_for(path, process, timeout=300):
  start = time.time()
  while not os.path.exists(path):
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.time() - start < timeout
    time.sleep(0.05)


def final_variables(workdir):
  return jax.device_get(run_record.load_variables(str(workdir)))


def job_args(tiny_data_dir) -> list[str]:
  """A tiny job of a 24-step stage 1 (checkpoints every 2 steps)."""
  return [f"--config=tests/tiny_config.py:{tiny_data_dir}",
          "--config.stages.representation.num_steps=24",
          "--config.eval_at_stage_end=False"]


@pytest.fixture(scope="module")
def straight_job(tiny_data_dir, tmp_path_factory):
  """The final variables of `job_args`'s job run alone, start to end."""
  workdir = tmp_path_factory.mktemp("straight") / "workdir"
  subprocess.run(main_command(*job_args(tiny_data_dir),
                              f"--workdir={workdir}"),
                 cwd=ROOT, check=True, capture_output=True, timeout=600)
  return final_variables(workdir)


@pytest.mark.slow
def test_the_same_command_twice_refuses_the_second(tiny_data_dir, tmp_path,
                                                   straight_job):
  args = job_args(tiny_data_dir)
  workdir = tmp_path / "twice"
  first = subprocess.Popen(main_command(*args, f"--workdir={workdir}"),
                           cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  wait_for(workdir / workdir_lease.LEASE_FILE, first)
  job_id = read_holder(workdir)["job_id"]
  second = subprocess.run(main_command(*args, f"--workdir={workdir}"),
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
  assert first.poll() is None, "the first job ended before the second ran"
  assert second.returncode == workdir_lease.WorkdirBusy.exit_code
  lines = second.stderr.strip().splitlines()
  assert lines[-1].startswith(f"Error: {workdir} is in use by job {job_id} "
                              "(host "), lines[-1]
  assert first.wait(timeout=600) == 0, first.stderr[-3000:]
  assert not (workdir / workdir_lease.LEASE_FILE).exists()
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         final_variables(workdir), straight_job)


@pytest.mark.slow
def test_a_killed_job_restarts_at_once_and_ends_as_a_straight_run(
    tiny_data_dir, tmp_path, straight_job):
  """SIGKILL (the OOM killer, a scheduler) leaves a fresh lease whose
  process is gone: the same command started at once takes it over, resumes,
  and ends with the straight run's variables."""
  workdir = tmp_path / "killed"
  args = [*job_args(tiny_data_dir), f"--workdir={workdir}"]
  killed = subprocess.Popen(main_command(*args), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
  wait_for(workdir / "checkpoints" / "representation" / "2", killed)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  holder = read_holder(workdir)
  assert holder["pid"] == killed.pid
  again = subprocess.run(main_command(*args), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert time.time() - holder["refreshed"] < holder["timeout"], (
      "not a restart at once")
  assert (f"Taking over the lease of {workdir} from job {holder['job_id']} "
          f"(host {holder['host']}, process {killed.pid})") in again.stderr
  assert "its process is gone from this machine." in again.stderr
  assert "Stage representation: resuming from step " in again.stderr
  assert not (workdir / workdir_lease.LEASE_FILE).exists()
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         final_variables(workdir), straight_job)


@pytest.mark.slow
def test_figures_refuse_to_write_into_a_live_workdir(tmp_path):
  live = workdir_lease.acquire(tmp_path / "live")
  try:
    result = subprocess.run(
        [sys.executable, "-m", "experiments.paper_figures",
         f"--workdir={tmp_path / 'live'}", "--replot"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
  finally:
    live.release()
  assert result.returncode == workdir_lease.WorkdirBusy.exit_code
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"Error: {tmp_path / 'live'} is in use by job {live.job_id}")


def test_errors_report_one_labelled_line_each(capsys):
  code = errors.report(workdir_lease.WorkdirBusy("held by x"))
  assert (code, capsys.readouterr().err) == (3, "Error: held by x\n")


@pytest.mark.slow
def test_a_run_on_two_processes_checks_the_lease_on_each(tiny_data_dir,
                                                          tmp_path):
  """Research code's `Run` on a two-process job: every process is refused a
  workdir another job holds (process 1 does not go on alone into the run),
  and on a free one process 1 finds the lease naming process 0's job."""
  from tests.helpers import free_port  # pylint: disable=g-import-not-at-top
  from tests.helpers import xla_flags_with  # pylint: disable=g-import-not-at-top
  other_job = workdir_lease.acquire(tmp_path / "held")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags_with(
                 "--xla_force_host_platform_device_count=1"))
  address = f"localhost:{free_port()}"
  out = str(tmp_path / "seen")
  processes = [subprocess.Popen(
      [sys.executable, "-m", "tests.run_lease_on_two_hosts",
       f"--data_dir={tiny_data_dir}", f"--held={tmp_path / 'held'}",
       f"--free={tmp_path / 'free'}", f"--out={out}",
       f"--coordinator_address={address}", "--num_processes=2",
       f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    for process in processes:
      output, _ = process.communicate(timeout=300)
      assert process.returncode == 0, output[-3000:]
  finally:
    for process in processes:
      process.kill()
    other_job.release()
  seen = []
  for i in range(2):
    with open(f"{out}_{i}.json") as f:
      seen.append(json.load(f))
  for record in seen:
    assert record["processes"] == 2
    assert record["held"].startswith(f"refused: {tmp_path / 'held'}"), record
  assert f"job {other_job.job_id}" in seen[0]["held"]
  assert "process 0 could not take its lease" in seen[1]["held"]
  assert seen[0]["free_lease_job"] == seen[1]["free_lease_job"]
  assert not (tmp_path / "free" / workdir_lease.LEASE_FILE).exists()
