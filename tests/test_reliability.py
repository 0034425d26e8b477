"""What a pod job meets, through `python -m saccader_jax.main`: divergence,
damaged checkpoints, and a restart on another number of devices."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.helpers import checkpoint_steps
from tests.helpers import xla_flags_with
from tests.helpers import tiny_train_config
from saccader_jax import checkpoints
from saccader_jax import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(data_dir, workdir, *overrides, devices=1, timeout=600,
             max_file_bytes=None, env_extra=()):
  """The tiny config's job in a fresh process; returns the CompletedProcess.

  max_file_bytes: the process may write no file beyond this size (a write
  past it fails with EFBIG, as one on a full disk fails with ENOSPC; unlike
  a read-only directory, this holds for root too)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags_with(
                 f"--xla_force_host_platform_device_count={devices}"),
             **dict(env_extra))

  def limit_file_size():
    if max_file_bytes is not None:
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      resource.setrlimit(resource.RLIMIT_FSIZE,
                         (max_file_bytes, max_file_bytes))

  return subprocess.run(
      [sys.executable, "-m", "saccader_jax.main",
       f"--config=tests/tiny_config.py:{data_dir}", f"--workdir={workdir}",
       *overrides], cwd=ROOT, capture_output=True, text=True,
      timeout=timeout, env=env, preexec_fn=limit_file_size)


def error_lines(result):
  return [l for l in result.stderr.splitlines() if l.startswith("Error: ")]


def finite(tree):
  return all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(tree))


# The tiny steps compile in under JAX's 1 s threshold for the persistent
# cache; here every compilation is cached.
CACHE_EVERY_COMPILATION = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

ONE_STAGE = ("--config.run_stages=('representation',)",
             "--config.checkpoint_every_steps=2")


@pytest.fixture(scope="module")
def four_step_job(tiny_data_dir, tmp_path_factory):
  """A finished one-stage job with checkpoints at steps 2 and 4, run once
  for the module; tests change copies of it (`four_step_workdir`)."""
  workdir = str(tmp_path_factory.mktemp("four_step_job") / "workdir")
  first = run_main(tiny_data_dir, workdir, *ONE_STAGE,
                   "--config.stages.representation.num_steps=4",
                   env_extra=CACHE_EVERY_COMPILATION)
  assert first.returncode == 0, first.stderr[-3000:]
  assert checkpoint_steps(workdir, "representation") == [2, 4]
  return workdir


@pytest.fixture
def four_step_workdir(four_step_job, tmp_path):
  """This test's own copy of `four_step_job`'s workdir."""
  return shutil.copytree(four_step_job, str(tmp_path / "workdir"))


def damage(directory, garbage):
  """Overwrites every file under directory; returns how many."""
  count = 0
  for root, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(garbage)
      count += 1
  return count


@pytest.mark.slow
def test_divergence_stops_the_stage_and_keeps_the_last_finite_checkpoint(
    tiny_data_dir, tmp_path):
  workdir = str(tmp_path / "workdir")
  result = run_main(tiny_data_dir, workdir, "--config.run_stages=('representation',)",
                    "--config.checkpoint_every_steps=1",
                    "--config.stages.representation.num_steps=8",
                    "--config.stages.representation.learning_rate=1e8")
  assert result.returncode == 1, result.stderr[-3000:]
  lines = error_lines(result)
  assert len(lines) == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  (line,) = lines
  assert "Stage 'representation' diverged at step " in line
  step = int(line.split("diverged at step ")[1].split(":")[0])
  saved = checkpoint_steps(workdir, "representation")
  assert saved and max(saved) < step
  last = os.path.join(workdir, "checkpoints", "representation",
                      str(max(saved)))
  assert f"the last finite checkpoint is {last}." in line
  # No test table: a diverged job evaluates nothing.
  assert not os.path.exists(os.path.join(workdir, "test_accuracy.json"))
  config = tiny_train_config(tiny_data_dir)
  variables = run_record.load_variables(workdir, config,
                                         stage="representation")
  assert finite(variables)


@pytest.mark.slow
def test_a_restarted_job_reads_its_compiled_steps_back_and_ends_the_same(
    tiny_data_dir, four_step_job, four_step_workdir):
  """The job's compilation cache (default: <workdir>/compilation_cache)
  holds its train step; restarted from step 2, the job reads the step back
  rather than compiling it, and its step 4 equals the first run's."""
  workdir = four_step_workdir
  cache = os.path.join(workdir, "compilation_cache")
  before = set(os.listdir(cache))
  assert any(name.startswith("jit_train_step-") for name in before)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "representation", "4"))
  second = run_main(tiny_data_dir, workdir, *ONE_STAGE,
                    "--config.stages.representation.num_steps=4",
                    env_extra=CACHE_EVERY_COMPILATION)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "resuming from step 2" in second.stderr
  assert f"Compilation cache: {cache}." in second.stderr
  added = set(os.listdir(cache)) - before
  assert not any(name.startswith("jit_train_step-") for name in added)
  config = tiny_train_config(tiny_data_dir)
  jax.tree_util.tree_map(
      np.testing.assert_array_equal,
      run_record.load_variables(four_step_job, config, stage="representation"),
      run_record.load_variables(workdir, config, stage="representation"))


@pytest.mark.slow
def test_damaged_newest_checkpoint_is_set_aside_and_an_older_one_resumes(
    tiny_data_dir, four_step_workdir):
  workdir = four_step_workdir
  newest = os.path.join(workdir, "checkpoints", "representation", "4")
  assert damage(newest, b"\xff\xfe damaged \x00" * 7)

  second = run_main(tiny_data_dir, workdir, *ONE_STAGE,
                    "--config.stages.representation.num_steps=6")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "cannot be restored" in second.stderr
  assert "Moved damaged checkpoint" in second.stderr
  assert "resuming from step 2" in second.stderr
  assert checkpoint_steps(workdir, "representation") == [2, 4, 6]
  aside = os.listdir(os.path.join(workdir, "checkpoints",
                                  checkpoints.DAMAGED))
  assert len(aside) == 1 and aside[0].startswith("representation-4-")
  # Kept, not deleted: still the damaged bytes.
  kept = os.path.join(workdir, "checkpoints", checkpoints.DAMAGED, aside[0])
  assert any(b"damaged" in open(os.path.join(r, f), "rb").read()
             for r, _, fs in os.walk(kept) for f in fs)
  results = json.loads(open(os.path.join(workdir, "test_accuracy.json")).read())
  assert results["count"] == 60


@pytest.mark.slow
def test_no_restorable_checkpoint_fails_with_the_directory_and_reason(
    tiny_data_dir, four_step_workdir):
  workdir = four_step_workdir
  stage_dir = os.path.join(workdir, "checkpoints", "representation")
  assert damage(stage_dir, b"\xff garbage")
  second = run_main(tiny_data_dir, workdir, *ONE_STAGE,
                    "--config.stages.representation.num_steps=6")
  assert second.returncode == 1
  (line,) = error_lines(second)
  assert f"No checkpoint in {stage_dir} can be restored (steps [4, 2])" in line
  assert "step 4, fails with" in line
  assert checkpoint_steps(workdir, "representation") == [2, 4]  # nothing moved


@pytest.mark.slow
def test_a_job_resumes_on_more_and_on_fewer_devices(tiny_data_dir, tmp_path):
  """8 devices, then 1, then 8 again: each run resumes both stages where
  the last one stopped."""
  workdir = str(tmp_path / "workdir")
  stages = ("--config.run_stages=('representation','location')",
            "--config.checkpoint_every_steps=2",
            "--config.eval_at_stage_end=False")
  for steps, devices in ((2, 8), (4, 1), (6, 8)):
    run = run_main(tiny_data_dir, workdir, *stages,
                   f"--config.stages.representation.num_steps={steps}",
                   f"--config.stages.location.num_steps={steps}",
                   devices=devices)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{devices} local / {devices} global devices" in run.stderr
    if steps > 2:
      for stage in ("representation", "location"):
        assert f"Stage {stage}: resuming from step {steps - 2}." in (
            run.stderr)
    assert checkpoint_steps(workdir, "location") == list(range(2, steps + 1,
                                                               2))
  # And the final model loads here, on this test's one device.
  variables = run_record.load_variables(
      workdir, tiny_train_config(tiny_data_dir), stage="location")
  assert finite(variables)
  assert {d for x in jax.tree_util.tree_leaves(variables)
          for d in x.devices()} == set(jax.devices())


@pytest.mark.slow
def test_a_failing_checkpoint_write_stops_in_one_line_and_loses_nothing(
    tiny_data_dir, four_step_workdir):
  """A checkpoint write that the OS refuses: one line naming the directory
  and the OS error, exit 1; the earlier checkpoints still restore, and the
  rerun with room to write resumes from the newest of them."""
  workdir = four_step_workdir
  stage_dir = os.path.join(workdir, "checkpoints", "representation")
  before = run_record.load_variables(workdir, tiny_train_config(tiny_data_dir),
                                      stage="representation")
  failed = run_main(tiny_data_dir, workdir, *ONE_STAGE,
                    "--config.stages.representation.num_steps=6",
                    max_file_bytes=16 * 1024)
  assert failed.returncode == 1, failed.stderr[-3000:]
  assert "Traceback" not in failed.stderr
  (line,) = error_lines(failed)
  assert (f"Could not write a checkpoint of stage 'representation' into "
          f"{stage_dir}") in line
  assert "File too large" in line
  assert f"Earlier checkpoints are kept (newest: {stage_dir}/4)" in line
  assert checkpoint_steps(workdir, "representation") == [2, 4]
  jax.tree_util.tree_map(
      np.testing.assert_array_equal, before,
      run_record.load_variables(workdir, tiny_train_config(tiny_data_dir),
                                 stage="representation"))
  again = run_main(tiny_data_dir, workdir, *ONE_STAGE,
                   "--config.stages.representation.num_steps=6")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Stage representation: resuming from step 4." in again.stderr
  assert checkpoint_steps(workdir, "representation") == [2, 4, 6]
