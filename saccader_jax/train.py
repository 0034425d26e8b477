"""The training job: the stages of config.run_stages in order, then the test.

The parts, each in its own module:

  job.Job                  what every stage shares (config, mesh, data,
                           writer), made once;
  stages.resolve_stages    each stage's name -> one value (model, loss,
                           optimizer config, key), looked up once;
  stage_run.StageRun       a stage in the job (length, jitted step, data,
                           checkpoints);
  stage_start.start_stage  where it starts: its own checkpoint, else the
                           variables the config starts it from, else fresh;
  loop.train               the steps of one stage;
  run_evaluation           dev results during a stage, the final test.

The `Trainer` only orders the stages and hands each one's final variables
to the next (by model field; `stage_start` picks what a stage starts from).
Research code drives a run through `saccader_jax.research.Run`.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Optional

from absl import logging
from etils import epath
import ml_collections

from saccader_jax import errors
from saccader_jax import loop
from saccader_jax import opening
from saccader_jax import run_evaluation
from saccader_jax import stage_start
from saccader_jax import stages
from saccader_jax import steps
from saccader_jax.job import Job
from saccader_jax.stage_run import StageRun


class Trainer:
  """Runs the configured stages in order, resuming where a job left off,
  and evaluates the policy and the reference classifiers they train."""

  def __init__(self, job: Job, pretrained: Optional[dict[str, Any]] = None,
               *legacy_args, **legacy_kwargs):
    """
    Args:
      job: the run's job (`opening.open_job`; `Trainer.open` opens one).
      pretrained: models trained elsewhere, by config field (e.g.
        {"model": saccader_variables, "classifier": ...}): stages of this
        run that start from a field (Stage.init_from, or a stage of the same
        field) use them as if an earlier stage had trained them. The job's
        config must have been checked with these fields.

    `Trainer(config, workdir, ...)`, the signature before `Trainer.open`,
    still works, with a DeprecationWarning.
    """
    if isinstance(job, ml_collections.ConfigDict):
      warnings.warn("Trainer(config, workdir, ...) is deprecated; use "
                    "Trainer.open(config, workdir, ...).", DeprecationWarning,
                    stacklevel=2)
      # The second positional argument was the workdir then.
      opened = type(self).open(job, pretrained, *legacy_args, **legacy_kwargs)
      self.__dict__.update(opened.__dict__)
      return
    if legacy_args or legacy_kwargs:
      raise TypeError("Trainer(job, pretrained) takes no other arguments; "
                      "Trainer.open(config, workdir, ...) opens a job.")
    self.job = job
    self.read_only = job.read_only
    self.pretrained = dict(pretrained or {})
    self.stages = stages.resolve_stages(self.job.config, self.job.model)
    self.evaluation = run_evaluation.RunEvaluation(self.job, self.stages)
    # The last trained stage's length (set by `train`), the test's step.
    self.last_step = 0

  @classmethod
  def open(cls, config: ml_collections.ConfigDict, workdir: epath.PathLike,
           pretrained: Optional[dict[str, Any]] = None,
           read_only: bool = False, hold_lease: bool = False) -> "Trainer":
    """A trainer of config in workdir (`opening.open_job`: the config checked,
    the data prepared, the job created); read_only: restore finished stages
    only, write nothing into workdir. hold_lease: take the workdir's lease
    (`job.close()` gives it back); `main` and `Run` take it, a notebook's
    trainer need not."""
    pretrained = dict(pretrained or {})
    job = opening.open_job(config, workdir,
                            pretrained_fields=tuple(pretrained),
                            read_only=read_only, hold_lease=hold_lease)
    try:
      return cls(job, pretrained)
    except BaseException:
      job.close()
      raise

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.job.config

  @property
  def policy_stage(self) -> Optional[stages.ResolvedStage]:
    """The last stage that trains a policy model (None if none does)."""
    return next((s for s in reversed(self.stages.values()) if s.is_policy),
                None)

  def run_stage(self, stage: stages.ResolvedStage,
                trained_by_field: dict[str, dict]) -> dict:
    """Trains `stage`; returns its final {"params", "batch_stats"}.

    trained_by_field: the last trained (or given) variables of each config
    field, which the stage may start from (`stage_start`).
    """
    run = StageRun.create(self.job, stage, read_only=self.read_only)
    self.last_step = run.total_steps
    try:
      start = stage_start.start_stage(self.job, run, trained_by_field)
      state = start.state
      if int(state.step) >= run.total_steps:
        logging.info("Stage %s: already complete (%d steps).", stage.name,
                     run.total_steps)
        return steps.model_variables(state)
      if self.read_only:
        raise errors.CheckpointError(
            f"Stage {stage.name!r} is not finished in {self.job.workdir} "
            f"(step {int(state.step)} of {run.total_steps}); a read-only run "
            "does not train.")
      run = run.with_representation_cache(self.job,
                                          steps.model_variables(state))
      state = loop.train(run, state, start.position, self.config,
                         self.job.writer,
                         evaluate=lambda step, state: self._evaluate(
                             run, step, state),
                         profile_dir=self.job.workdir)
    finally:
      run.manager.close()
    if start.initial is not None:
      self._log_relative_change(run, start.initial, state)
    return steps.model_variables(state)

  def _evaluate(self, run: StageRun, step: int,
                state: steps.TrainState) -> None:
    variables = steps.model_variables(state)
    if step == run.total_steps and run.stage.reference:
      # The stage's own readout is a reference from its last step on.
      self.evaluation.reference_variables[run.name] = variables
    self.evaluation.dev(run.stage, step, variables)

  def _log_relative_change(self, run: StageRun, initial: dict,
                           state: steps.TrainState) -> None:
    changes = steps.relative_change(initial["params"], state.params)
    logging.info("Stage %s: parameters moved, relative to where the stage "
                 "started: %s.", run.name,
                 ", ".join(f"{k} {v:.2e}" for k, v in changes.items()))
    self.job.writer.write_scalars(run.total_steps, {
        f"{run.name}/relative_change/{k}": v for k, v in changes.items()})
    self.job.writer.flush()

  def train(self) -> dict[str, dict]:
    """Trains config.run_stages in order (resuming; finished stages are
    restored); returns each stage's final variables by stage name."""
    by_field, by_stage = dict(self.pretrained), {}
    for stage in self.stages.values():
      variables = self.run_stage(stage, by_field)
      by_field[stage.field] = by_stage[stage.name] = variables
      if stage.reference:
        self.evaluation.reference_variables[stage.name] = variables
    return by_stage

  def run(self) -> dict:
    """Trains config.run_stages, then evaluates on the test split.

    Returns {"variables": the final policy model's (else the last stage's)
    variables, "stages": every stage's final variables, "test": results}.
    """
    start = time.time()
    by_stage = self.train()
    policy = self.policy_stage
    final = {stage.field: by_stage[name]
             for name, stage in self.stages.items()}
    field = policy.field if policy else None
    results = self.evaluation.test(field, final.get(field), start,
                                   step=self.last_step)
    self.job.close()
    last = final[field] if field else list(by_stage.values())[-1]
    return {"variables": last, "stages": by_stage, "test": results}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: epath.PathLike) -> dict:
  """Trains config.run_stages in order, then evaluates on the test split
  (see `Trainer.run`)."""
  return Trainer.open(config, workdir).run()
