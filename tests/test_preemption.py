"""A preemption notice (SIGTERM): the step reached is saved, the job stops
with `preemption.EXIT_CODE`, and the same command resumes without losing a
step, to the same parameters as a job never stopped."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from tests.helpers import checkpoint_steps
from tests.helpers import free_port
from tests.helpers import xla_flags_with
from tests.helpers import tiny_train_config
from saccader_jax import checkpoints
from saccader_jax import preemption
from saccader_jax import run_record
from saccader_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOPPED = re.compile(r"^Preempted: Stopped on a preemption notice at step "
                     r"(\d+) of stage '(\w+)'; saved checkpoint (\S+)\. ")


def assert_trees_equal(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


class SigtermDuring:
  """A context in which SIGTERM is a preemption notice, as under main."""

  def __enter__(self):
    preemption.clear()
    self.previous = signal.getsignal(signal.SIGTERM)
    preemption.install()
    return self

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self.previous)
    preemption.clear()


def prefetch_threads():
  return [t for t in threading.enumerate()
          if t.name == "device-prefetch" and t.is_alive()]


def sigterm_self():
  os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_during_a_write_or_an_evaluation_saves_the_next_step(
    tiny_config, tmp_path, monkeypatch):
  """In-process, a real SIGTERM arriving while a checkpoint is written and
  while a stage evaluates: each time the loop saves the next step, stops
  with Preempted, the newest checkpoint restores, and the job resumed from
  it ends where a job never stopped ends."""
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation", "policy")
  config.stages.representation.num_steps = 5
  config.stages.policy.num_steps = 5
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 3
  config.async_checkpoints = True   # writes in flight when the signal comes
  straight = train.Trainer.open(config, str(tmp_path / "straight")).run()
  workdir = str(tmp_path / "stopped")

  real_save = checkpoints.save
  def save_then_sigterm(manager, step, *args, **kwargs):
    real_save(manager, step, *args, **kwargs)
    if step == 2:
      sigterm_self()   # while the step-2 write may still be in flight
  monkeypatch.setattr(checkpoints, "save", save_then_sigterm)
  with SigtermDuring(), pytest.raises(preemption.Preempted,
                                      match="at step 3 of stage "
                                      "'representation'"):
    train.Trainer.open(config, workdir).run()
  monkeypatch.setattr(checkpoints, "save", real_save)
  assert checkpoint_steps(workdir, "representation")[-1] == 3
  assert not prefetch_threads()   # the stopped stage's input thread ended
  run_record.load_variables(workdir, config, stage="representation")

  trainer = train.Trainer.open(config, workdir)
  real_dev = trainer.evaluation.dev
  def dev_then_sigterm(stage, step, variables):
    if stage.name == "policy":
      sigterm_self()   # during the step-3 evaluation of stage 2
    real_dev(stage, step, variables)
  trainer.evaluation.dev = dev_then_sigterm
  with SigtermDuring(), pytest.raises(preemption.Preempted,
                                      match="at step 4 of stage 'policy'"):
    trainer.run()
  assert checkpoint_steps(workdir, "policy")[-1] == 4
  assert not prefetch_threads()
  run_record.load_variables(workdir, config, stage="policy")

  resumed = train.Trainer.open(config, workdir).run()
  assert_trees_equal(straight["stages"], resumed["stages"])
  assert not prefetch_threads()


def start_main(data_dir, workdir, log, *overrides):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags_with(
                 "--xla_force_host_platform_device_count=1"))
  return subprocess.Popen(
      [sys.executable, "-m", "saccader_jax.main",
       f"--config=tests/tiny_config.py:{data_dir}", f"--workdir={workdir}",
       *overrides], cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=open(log, "w"), env=env)


def wait_for_text(log, text, process, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    with open(log) as f:
      if text in f.read():
        return
    assert process.poll() is None, open(log).read()[-3000:]
    time.sleep(0.05)
  raise AssertionError(f"{text!r} not in {log} after {timeout} s")


@pytest.mark.slow
def test_sigterm_at_random_moments_loses_no_step_and_resumes_bit_for_bit(
    tiny_data_dir, tmp_path):
  """Through main: two SIGTERMs at random moments of a 2-stage job. Each
  run exits with EXIT_CODE and one line naming the step and its checkpoint,
  which is the stage's newest; the next run resumes from exactly that step;
  the final parameters and batch statistics equal a straight run's. (A
  notice during an evaluation: the in-process test above.)"""
  overrides = ("--config.run_stages=('representation','location')",
               "--config.stages.representation.num_steps=24",
               "--config.stages.location.num_steps=24",
               "--config.checkpoint_every_steps=10",
               "--config.log_every_steps=4",
               "--config.eval_at_stage_end=False")
  straight_dir = str(tmp_path / "straight")
  log = str(tmp_path / "straight.log")
  assert start_main(tiny_data_dir, straight_dir, log, *overrides).wait(600) == 0, (
      open(log).read()[-3000:])
  workdir = str(tmp_path / "preempted")
  rng = np.random.default_rng(0)
  stops = []
  for attempt in range(3):
    log = str(tmp_path / f"run{attempt}.log")
    process = start_main(tiny_data_dir, workdir, log, *overrides)
    if attempt < 2:
      wait_for_text(log, ", global batch ", process)
      time.sleep(rng.uniform(0.0, 1.5))
      process.send_signal(signal.SIGTERM)
    code = process.wait(600)
    text = open(log).read()
    if stops:
      step, stage = stops[-1]
      assert f"Stage {stage}: resuming from step {step}." in text, text[-3000:]
    if attempt == 2:
      assert code == 0, text[-3000:]
      break
    assert code == preemption.EXIT_CODE, text[-3000:]
    lines = [l for l in text.splitlines() if l.startswith("Preempted: ")]
    assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
    step, stage, path = STOPPED.match(lines[0]).groups()
    assert path == os.path.join(workdir, "checkpoints", stage, step)
    assert checkpoint_steps(workdir, stage)[-1] == int(step)
    stops.append((int(step), stage))
  config = tiny_train_config(tiny_data_dir)
  for stage in ("representation", "location"):
    assert_trees_equal(
        run_record.load_variables(straight_dir, config, stage=stage),
        run_record.load_variables(workdir, config, stage=stage))


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(
    tiny_data_dir, tmp_path):
  """Two processes (jax.distributed on localhost): SIGTERM to process 1
  reaches process 0 through JAX's preemption service; both save the same
  step, exit with EXIT_CODE, and the pair run again resumes there."""
  workdir = str(tmp_path / "workdir")
  overrides = ("--config.run_stages=('representation',)",
               "--config.stages.representation.num_steps=40",
               "--config.checkpoint_every_steps=1000",
               "--config.log_every_steps=4", "--distributed",
               "--num_processes=2")

  def start_pair(run):
    address = f"localhost:{free_port()}"
    logs = [str(tmp_path / f"run{run}_process{i}.log") for i in range(2)]
    return [start_main(tiny_data_dir, workdir, logs[i], *overrides,
                       f"--coordinator_address={address}", f"--process_id={i}")
            for i in range(2)], logs

  processes, logs = start_pair(0)
  for process, log in zip(processes, logs):
    wait_for_text(log, ", global batch ", process)
  time.sleep(1.0)
  processes[1].send_signal(signal.SIGTERM)
  codes = [p.wait(600) for p in processes]
  texts = [open(log).read() for log in logs]
  assert codes == [preemption.EXIT_CODE] * 2, [t[-2000:] for t in texts]
  stopped = [re.search(STOPPED.pattern, t, re.M) for t in texts]
  assert all(stopped), [t[-2000:] for t in texts]
  (step,) = {int(m.group(1)) for m in stopped}
  assert 0 < step < 40
  assert checkpoint_steps(workdir, "representation")[-1] == step

  processes, logs = start_pair(1)
  codes = [p.wait(600) for p in processes]
  texts = [open(log).read() for log in logs]
  assert codes == [0, 0], [t[-2000:] for t in texts]
  for text in texts:
    assert f"Stage representation: resuming from step {step}." in text
  assert checkpoint_steps(workdir, "representation")[-1] == 40
