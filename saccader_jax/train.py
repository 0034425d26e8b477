"""The training job: the stages of config.run_stages in order, then the test.

The parts, each in its own module:

  job.Job                  what every stage shares (config, mesh, data,
                           writer), made once;
  stages.resolve_stage     a stage's name -> one value (model, loss step,
                           optimizer, schedule, data, checkpoints, length);
  checkpoints.initial_state  resume: newest restorable checkpoint, else the
                           previous stage's model, else a fresh one;
  loop.train               the steps of one stage;
  run_evaluation           dev results during a stage, the final test.

The `Trainer` only orders the stages and passes each one's variables on:
stages of the same model field continue from each other; a stage whose
model is built from others' (Stage.init_from) starts from theirs.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from absl import logging
from etils import epath
import ml_collections

from saccader_jax import loop
from saccader_jax import models
from saccader_jax import run_evaluation
from saccader_jax import stages
from saccader_jax import steps
from saccader_jax.job import Job


class Trainer:
  """Runs the configured stages in order, resuming where a job left off,
  and evaluates the policy and the reference classifiers they train."""

  def __init__(self, config: ml_collections.ConfigDict,
               workdir: epath.PathLike,
               pretrained: Optional[dict[str, Any]] = None):
    """
    Args:
      config: the training config.
      workdir: checkpoints, logs and results (local or a URL).
      pretrained: models trained elsewhere, by config field (e.g.
        {"model": saccader_variables, "classifier": ...}): stages of this
        run that start from a field (Stage.init_from, or a stage of the same
        field) use them as if an earlier stage had trained them.
    """
    self.pretrained = dict(pretrained or {})
    self.job = Job.create(config, workdir,
                          pretrained_fields=tuple(self.pretrained))
    self.evaluation = run_evaluation.RunEvaluation(self.job)
    # Filled by `train`: each stage's model field, by stage name, and the
    # field of the last policy model trained (None if no stage trains one).
    self.fields: dict[str, str] = {}
    self.policy_field: Optional[str] = None
    self.last_step = 0

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.job.config

  def run_stage(self, stage: stages.ResolvedStage,
                previous: Optional[dict]) -> dict:
    """Trains `stage`; returns its final {"params", "batch_stats"}.

    previous: the variables it starts from unless it resumes (the last
    stage's of the same model, or those its init_from names).
    """
    try:
      state, position = stage.initial_state(self.job, previous)
      if int(state.step) >= stage.total_steps:
        logging.info("Stage %s: already complete (%d steps).", stage.name,
                     stage.total_steps)
        return steps.model_variables(state)
      state = loop.train(stage, state, position, self.config, self.job.writer,
                         evaluate=lambda step, state: self._evaluate(
                             stage, step, state),
                         profile_dir=self.job.workdir)
    finally:
      stage.manager.close()
    if previous is not None:
      self._log_relative_change(stage, previous, state)
    return steps.model_variables(state)

  def _evaluate(self, stage: stages.ResolvedStage, step: int,
                state: steps.TrainState) -> None:
    variables = steps.model_variables(state)
    if step == stage.total_steps and stage.stage.reference:
      # The stage's own readout is a reference from its last step on.
      self.evaluation.reference_variables[stage.name] = variables
    self.evaluation.dev(stage, step, variables)

  def _log_relative_change(self, stage: stages.ResolvedStage,
                           previous: dict, state: steps.TrainState) -> None:
    changes = steps.relative_change(previous["params"], state.params)
    logging.info("Stage %s: parameters moved, relative to where the stage "
                 "started: %s.", stage.name,
                 ", ".join(f"{k} {v:.2e}" for k, v in changes.items()))
    self.job.writer.write_scalars(stage.total_steps, {
        f"{stage.name}/relative_change/{k}": v for k, v in changes.items()})
    self.job.writer.flush()

  def train(self) -> dict[str, dict]:
    """Trains config.run_stages in order (resuming; finished stages are
    restored); returns each stage's final variables by stage name."""
    by_field, by_stage = dict(self.pretrained), {}
    self.fields = {}
    for index, name in enumerate(self.config.run_stages):
      stage = stages.resolve_stage(self.job, index, name)
      previous = by_field.get(stage.field)
      if previous is None and stage.stage.init_from:
        previous = {collection: {part: by_field[source][collection]
                                 for part, source
                                 in stage.stage.init_from.items()}
                    for collection in ("params", "batch_stats")}
      variables = self.run_stage(stage, previous)
      by_field[stage.field] = by_stage[name] = variables
      self.fields[name] = stage.field
      self.last_step = stage.total_steps
      if stage.stage.reference:
        self.evaluation.reference_variables[name] = variables
      if models.is_policy(stage.model):
        self.policy_field = stage.field
    return by_stage

  def run(self) -> dict:
    """Trains config.run_stages, then evaluates on the test split.

    Returns {"variables": the final policy model's (else the last stage's)
    variables, "stages": every stage's final variables, "test": results}.
    """
    start = time.time()
    by_stage = self.train()
    by_field = {self.fields[name]: v for name, v in by_stage.items()}
    field = self.policy_field
    results = self.evaluation.test(field, by_field.get(field), start,
                                   step=self.last_step)
    self.job.writer.close()
    final = by_field.get(field) if field else list(by_stage.values())[-1]
    return {"variables": final, "stages": by_stage, "test": results}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: epath.PathLike) -> dict:
  """Trains config.run_stages in order, then evaluates on the test split
  (see `Trainer.run`)."""
  return Trainer(config, workdir).run()
