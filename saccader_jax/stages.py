"""A stage of a run, resolved once by name into the value that trains it.

How a stage's name travels: `config.run_stages` names the stages in order;
`resolve_stages(config)` looks each one up in the registry
(`objectives.STAGES`) by way of `resolve_stage`, the one place a name is
looked up after the config check. Everything after (where the stage starts,
its step loop, evaluation, reading a finished run back) reads the
`ResolvedStage` it returns; the name itself is only a label from then on
(log lines, the metric prefix `<name>/train`, the checkpoint folder
`checkpoints/<name>`).

A `ResolvedStage` is what the config makes of a stage, needing no job: its
model, loss, optimizer and key. The same value builds a stage for a notebook
or benchmark, with no workdir or mesh:

    stage = resolve_stage(config, "policy")
    setup = stage.create(variables, total_steps=1000)
    state, metrics = jax.jit(setup.train_step)(setup.state, batch, key)

Within a job, `saccader_jax.stage_run.StageRun` adds what the job gives it
(length in steps, mesh, data, checkpoints).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import ml_collections
import optax

from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import optimizers
from saccader_jax import steps


class StageSetup(NamedTuple):
  """Everything a stage trains with (see `ResolvedStage.create`)."""
  state: steps.TrainState
  train_step: Callable[..., tuple[steps.TrainState, dict]]
  loss_fn: objectives.LossFn
  tx: optax.GradientTransformation
  schedule: optax.Schedule


@dataclasses.dataclass(frozen=True)
class ResolvedStage:
  """One stage of a run, as its config defines it.

  Attributes:
    name: the stage's name in config.run_stages (a label from here on).
    index: its place in config.run_stages (fixes its key and data order).
    stage: what it trains (`objectives.Stage`).
    config: config.stages.<name>.
    field: the config field of its model ("model", "classifier", ...).
    model: that field's module.
    optimizer_config: config.optimizer with the stage's own grad_clip_norm
      (saved with every checkpoint, compared on resume).
    key: the stage's PRNG key; step s uses fold_in(key, s).
    run_config: the whole config (learning-rate schedule, seed).
  """
  name: str
  index: int
  stage: objectives.Stage
  config: ml_collections.ConfigDict
  field: str
  model: Any
  optimizer_config: dict
  key: jax.Array
  run_config: ml_collections.ConfigDict = dataclasses.field(repr=False)

  @property
  def reference(self) -> Optional[str]:
    """The label of its whole-image readout, if it is a reference
    classifier (`objectives.Stage.reference`)."""
    return self.stage.reference

  @property
  def is_policy(self) -> bool:
    """Whether its model chooses glimpses (has a learned policy)."""
    return models.is_policy(self.model)

  @property
  def init_from(self) -> dict[str, str]:
    return self.stage.init_from

  @property
  def data_seed(self) -> int:
    """The seed of its training data order."""
    return self.run_config.seed + self.index

  def loss_fn(self, model: Any = None) -> objectives.LossFn:
    """Its loss of `model` (default its own module)."""
    return self.stage.loss(self.model if model is None else model,
                           self.config)

  def optimizer(self, total_steps: int
                ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule) over total_steps: frozen parameters get no
    update, each part its rate factor."""
    schedule = optimizers.create_learning_rate_schedule(
        self.run_config.schedule, self.config.learning_rate, total_steps)
    rate_factors = None
    if self.stage.has_rate_factors(self.config):
      rate_factors = lambda params: self.stage.rate_factors(params,
                                                            self.config)
    tx = optimizers.create_optimizer(
        stage_optimizer_config(self.run_config, self.name), schedule,
        lambda params: self.stage.trainable_mask(params, self.config),
        rate_factors)
    return tx, schedule

  def create(self, variables: dict, total_steps: int,
             skip_nonfinite: bool = False, model: Any = None) -> StageSetup:
    """Its loss, optimizer, schedule, state and step, as the trainer
    builds them, starting from `variables` ({"params", "batch_stats"}).

    `train_step(state, batch, key) -> (state, metrics)` is the pure,
    unjitted step (`jax.jit` it, or see `steps.jit_train_step` for a mesh).
    model: an equal module to train instead of its own.
    """
    model = self.model if model is None else model
    tx, schedule = self.optimizer(total_steps)
    state = steps.TrainState.create(
        apply_fn=model.apply, params=variables["params"],
        batch_stats=variables["batch_stats"], tx=tx)
    loss_fn = self.loss_fn(model)
    return StageSetup(state, steps.make_train_step(loss_fn, schedule,
                                                   skip_nonfinite),
                      loss_fn, tx, schedule)


def stage_optimizer_config(config: ml_collections.ConfigDict,
                           name: str) -> ml_collections.ConfigDict:
  """config.optimizer, with the stage's own grad_clip_norm if it sets one."""
  optimizer_config = config.optimizer.copy_and_resolve_references()
  clip = config.stages[name].get("grad_clip_norm")
  if clip is not None:
    optimizer_config.grad_clip_norm = clip
  return optimizer_config


def resolve_stage(config: ml_collections.ConfigDict, name: str,
                  index: Optional[int] = None,
                  build_model: Optional[Callable[[str], Any]] = None
                  ) -> ResolvedStage:
  """Stage `name` of config as a value: the one place a stage's name is
  looked up.

  index: its place in config.run_stages (default: where it is there, else
  0). build_model: config field -> its module (default: built from the
  field's config; a job passes its own, built once per field).
  """
  stage = objectives.get_stage(name)
  if index is None:
    run_stages = tuple(config.get("run_stages", ()))
    index = run_stages.index(name) if name in run_stages else 0
  field = stage.model_field
  model = (build_model(field) if build_model is not None
           else models.create_model(config[field]))
  return ResolvedStage(
      name=name, index=index, stage=stage, config=config.stages[name],
      field=field, model=model,
      optimizer_config=stage_optimizer_config(config, name).to_dict(),
      key=jax.random.fold_in(jax.random.key(config.seed), index),
      run_config=config)


def resolve_stages(config: ml_collections.ConfigDict,
                   build_model: Optional[Callable[[str], Any]] = None
                   ) -> dict[str, ResolvedStage]:
  """config.run_stages, in order, each resolved once (build_model: as in
  `resolve_stage`)."""
  return {name: resolve_stage(config, name, index, build_model)
          for index, name in enumerate(config.run_stages)}


# Notebook and benchmark helpers: a stage from config and name alone.


def stage_model(config: ml_collections.ConfigDict, name: str):
  """The module stage `name` trains (its Stage's config.<model_field>)."""
  return resolve_stage(config, name).model


def stage_optimizer(config: ml_collections.ConfigDict, name: str,
                    total_steps: int):
  """(optimizer, schedule) of stage `name`: frozen parameters get no update."""
  return resolve_stage(config, name).optimizer(total_steps)


def create_stage(config: ml_collections.ConfigDict, name: str, model,
                 variables: dict, total_steps: int,
                 skip_nonfinite: bool = False) -> StageSetup:
  """Stage `name`'s loss, optimizer, schedule, state and step, from config
  as the trainer builds them (`ResolvedStage.create`).

  `model` is `stage_model(config, name)` (or an equal module); training
  starts from `variables`.
  """
  return resolve_stage(config, name, build_model=lambda _: model).create(
      variables, total_steps, skip_nonfinite)
