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
from saccader_jax.experiment import Run

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


@pytest.mark.slow
def test_the_same_command_twice_refuses_the_second(tiny_data_dir, tmp_path):
  args = [f"--config=tests/tiny_config.py:{tiny_data_dir}",
          "--config.stages.representation.num_steps=24",
          "--config.eval_at_stage_end=False"]
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
  alone = tmp_path / "alone"
  subprocess.run(main_command(*args, f"--workdir={alone}"), cwd=ROOT,
                 check=True, capture_output=True, timeout=600)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         final_variables(workdir), final_variables(alone))


@pytest.mark.slow
def test_a_killed_jobs_lease_blocks_until_stale_then_is_taken_over(
    tiny_data_dir, tmp_path):
  timeout = 90   # a restart comes well within it, even on a loaded machine
  workdir = tmp_path / "killed"
  args = [f"--config=tests/tiny_config.py:{tiny_data_dir}",
          "--config.stages.representation.num_steps=400",
          "--config.eval_at_stage_end=False", f"--lease_timeout={timeout}",
          f"--workdir={workdir}"]
  killed = subprocess.Popen(main_command(*args), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
  lease_file = workdir / workdir_lease.LEASE_FILE
  wait_for(lease_file, killed)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  holder = read_holder(workdir)
  # The restarts train a short stage 1 (a length may change on resume).
  args[1] = "--config.stages.representation.num_steps=4"
  within = subprocess.run(main_command(*args), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert time.time() - holder["refreshed"] < timeout, "restarted too late"
  assert within.returncode == workdir_lease.WorkdirBusy.exit_code
  assert f"is in use by job {holder['job_id']}" in (
      within.stderr.splitlines()[-1])
  assert read_holder(workdir) == holder   # the refused job changed nothing
  # The timeout passes without a refresh (aged in the file, not waited).
  holder["refreshed"] -= timeout + 1
  lease_file.write_text(json.dumps(holder))
  after = subprocess.run(main_command(*args), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert after.returncode == 0, after.stderr[-3000:]
  assert (f"Taking over the stale lease of {workdir} from job "
          f"{holder['job_id']}") in after.stderr
  assert not lease_file.exists()


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
