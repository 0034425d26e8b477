"""The step loop of one stage: steps, logging, finite checks, checkpoints.

    run = StageRun.create(job, stages.resolve_stage(job.config,
                                                    "representation"))
    start = stage_start.start_stage(job, run, trained={})
    state = loop.train(run, start.state, start.position, job.config,
                       job.writer)
    run.manager.close()

The loop fetches from the devices only once per logging interval and before
each checkpoint (which must hold finite state); a non-finite step stops the
stage with `DivergenceError` unless config.on_nonfinite == "skip".
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Optional

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import jax
import ml_collections
import numpy as np

from saccader_jax import checkpoints
from saccader_jax import device_prefetch
from saccader_jax import errors
from saccader_jax import optimizers
from saccader_jax import preemption
from saccader_jax import steps
from saccader_jax.data import input_pipeline
from saccader_jax.stage_run import StageRun

# (step, state) -> None: evaluates the state mid-stage or at its end.
EvaluateFn = Callable[[int, steps.TrainState], None]


def check_finite(stage: str, first_step: int, metrics: list[dict],
                 last_checkpoint: Callable[[], str]) -> None:
  """Raises DivergenceError at the first step whose loss or gradient norm
  is not finite; metrics[i] are the fetched metrics of step first_step + i,
  and last_checkpoint() describes the checkpoint to fall back to."""
  for offset, step_metrics in enumerate(metrics):
    if step_metrics["nonfinite"]:
      raise errors.DivergenceError(
          f"Stage {stage!r} diverged at step {first_step + offset}: loss "
          f"{float(step_metrics['loss'])}, gradient norm "
          f"{float(step_metrics['grad_norm'])}. No later state was saved; "
          f"the last finite checkpoint is {last_checkpoint()}. Lower "
          f"config.stages.{stage}.learning_rate, set "
          f"config.stages.{stage}.grad_clip_norm, or set "
          "config.on_nonfinite='skip' to skip such steps.")


def interval_scalars(prefix: str, metrics: list[dict]) -> dict[str, float]:
  """Means over a logging interval of the finite steps' metrics, and the
  number of non-finite steps."""
  finite = [m for m in metrics if not m["nonfinite"]] or metrics
  scalars = {f"{prefix}/{k}": float(np.mean([m[k] for m in finite]))
             for k in metrics[0] if k != "nonfinite"}
  scalars[f"{prefix}/nonfinite_steps"] = float(
      sum(m["nonfinite"] for m in metrics))
  return scalars


def _progress_hooks(config: ml_collections.ConfigDict, total_steps: int,
                    start_step: int, writer: metric_writers.MetricWriter,
                    profile_dir: Optional[epath.Path]) -> list:
  if jax.process_index() != 0:
    return []
  hooks = [periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer,
      every_steps=config.log_every_steps)]
  if config.get("profile_steps") and profile_dir is not None:
    hooks.append(periodic_actions.Profile(
        num_profile_steps=config.profile_steps,
        first_profile=start_step + config.get("profile_first_step", 10),
        logdir=profile_dir))
  return hooks


@contextlib.contextmanager
def _reporting_write_failure(stage: StageRun, step: int):
  """Turns a failed checkpoint write (started at `step`, or an earlier
  asynchronous one that surfaces here) into one-line `WriteError`."""
  try:
    yield
  except errors.JobError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise errors.WriteError(
        f"Could not write a checkpoint of stage {stage.name!r} into "
        f"{stage.manager.directory} (at step {step}): "
        f"{errors.write_failure(e)}. Earlier checkpoints are kept (newest: "
        f"{checkpoints.newest_complete(stage.manager.directory)}); free space or fix "
        "the permissions, then run the same command again to resume.") from e


def _stop_on_preemption(stage: StageRun, step: int,
                        writer: metric_writers.MetricWriter) -> None:
  """After the preemption checkpoint of `step` was started: waits for it
  and raises `preemption.Preempted`."""
  with _reporting_write_failure(stage, step):
    stage.manager.wait_until_finished()
  writer.flush()
  raise preemption.Preempted(
      f"Stopped on a preemption notice at step {step} of stage "
      f"{stage.name!r}; saved checkpoint {stage.manager.directory}/{step}. "
      "Run the same command again to resume from it.")


def describe_optimizer(stage: StageRun,
                       config: ml_collections.ConfigDict, step: int) -> str:
  """The stage's optimizer, schedule and learning rate at `step`, for its
  start line (the schedule continues from a resumed checkpoint's step)."""
  optimizer = stage.optimizer_config
  clip = optimizer.get("grad_clip_norm") or 0.0
  return (f"optimizer {optimizers.describe(optimizer)}"
          f"{f' (gradient norm clipped at {clip:g})' if clip else ''}, "
          f"{config.schedule.name} schedule to peak learning rate "
          f"{stage.config.learning_rate:g}, {float(stage.schedule(step)):.3g} "
          "at this step")


def should_evaluate(config: ml_collections.ConfigDict, step: int,
                    last: bool) -> bool:
  """Whether the loop evaluates after `step`: at the stage's end (unless
  config.eval_at_stage_end is False) and every config.eval_every_steps."""
  return ((last and config.get("eval_at_stage_end", True))
          or bool(config.eval_every_steps
                  and step % config.eval_every_steps == 0))


def train(stage: StageRun, state: steps.TrainState, position: int,
          config: ml_collections.ConfigDict,
          writer: metric_writers.MetricWriter,
          evaluate: Optional[EvaluateFn] = None,
          profile_dir: Optional[epath.Path] = None) -> steps.TrainState:
  """Trains `stage` from `state` to its last step; returns the final state.

  Args:
    stage: the stage in its job (its step, data, key, checkpoint manager).
    state: where to start (`stage_start.start_stage`).
    position: this host's input position at state.step, in examples.
    config: the run's config, for log_every_steps, checkpoint_every_steps,
      eval_every_steps, eval_at_stage_end, batch_size and profile_steps.
    writer: where the interval means `<name>/train/*` go.
    evaluate: called after each step that `should_evaluate`.
    profile_dir: where a profile of config.profile_steps steps goes.

  Checkpoints every config.checkpoint_every_steps and at the last step,
  with the input position; waits for the last write before returning. On a
  preemption notice (`saccader_jax.preemption`) it saves the step just
  done, waits for the write and raises `preemption.Preempted`. Batches are
  staged on the devices config.device_prefetch (default 2) steps ahead
  (`saccader_jax.device_prefetch`); each logging interval writes the share
  of its wall time spent waiting for one (`train/input_wait_fraction`).
  """
  batches = device_prefetch.DevicePrefetch(
      stage.batches(position), size=config.get("device_prefetch", 2))
  try:
    return _train(stage, state, position, config, writer, evaluate,
                  profile_dir, batches)
  finally:
    batches.close()


def _train(stage: StageRun, state: steps.TrainState, position: int,
           config: ml_collections.ConfigDict,
           writer: metric_writers.MetricWriter,
           evaluate: Optional[EvaluateFn], profile_dir: Optional[epath.Path],
           batches: device_prefetch.DevicePrefetch) -> steps.TrainState:
  name, total_steps = stage.name, stage.total_steps
  start_step = int(state.step)
  local_batch = input_pipeline.local_batch_size(config.batch_size)
  hooks = _progress_hooks(config, total_steps, start_step, writer,
                          profile_dir)
  logging.info("Stage %s: %d steps (%s), global batch %d over %d devices; "
               "%s.", name, total_steps,
               f"resuming at step {start_step}" if start_step else "from "
               "step 0", config.batch_size, jax.device_count(),
               describe_optimizer(stage, config, start_step))
  pending = []
  interval_started, waited_before = time.perf_counter(), 0.0
  for step in range(start_step + 1, total_steps + 1):
    # The wait for a batch counts once the last step's work is done.
    batch = batches.next_after(state.step if pending else None)
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, metrics = stage.train_step(state, batch, stage.key)
    pending.append(metrics)
    last = step == total_steps
    preempted = preemption.reached(step, stage.manager)
    save = step % config.checkpoint_every_steps == 0 or last or preempted
    if step % config.log_every_steps == 0 or save:
      # The only host syncs of the loop: one fetch per logging interval
      # (before the progress report, so that its steps/s are steps done)
      # and one before each checkpoint, which must hold finite state.
      fetched = jax.device_get(pending)
      if not stage.skip_nonfinite:
        check_finite(name, step - len(fetched) + 1, fetched,
                     lambda: checkpoints.describe_latest(stage.manager))
      pending = []
      scalars = interval_scalars(f"{name}/train", fetched)
      now = time.perf_counter()
      scalars[f"{name}/train/input_wait_fraction"] = (
          (batches.wait_seconds - waited_before) /
          max(now - interval_started, 1e-9))
      interval_started, waited_before = now, batches.wait_seconds
      writer.write_scalars(step, scalars)
    for hook in hooks:
      hook(step)
    if save:
      with _reporting_write_failure(stage, step):
        checkpoints.save(
            stage.manager, step, steps.model_state(state), state.opt_state,
            stage.optimizer_config, force=last or preempted, data_position={
                "examples_per_host":
                    position + (step - start_step) * local_batch,
                "process_count": jax.process_count()})
    if preempted:
      _stop_on_preemption(stage, step, writer)
    if evaluate is not None and should_evaluate(config, step, last):
      evaluate(step, state)
  with _reporting_write_failure(stage, total_steps):
    stage.manager.wait_until_finished()
  writer.flush()
  return state
