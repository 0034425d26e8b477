"""A stage of a run, resolved once by name into the value that trains it.

How a stage's name travels: `config.run_stages` names the stages in order;
the trainer passes each name and its index to `resolve_stage`, the only
place a name is looked up (`objectives.get_stage`). Everything after that
(the step loop, resume, evaluation) reads the `ResolvedStage` it returns;
the name itself is only a label from then on (log lines, the metric prefix
`<name>/train`, the checkpoint folder `checkpoints/<name>`).

How a batch travels: `Job.train_batches` reads this host's rows from the
input pipeline, in the order fixed by (config.seed + stage index) and the
host's position; `Job.global_batch` makes them one global array split along
the mesh's `data` axis; the jitted `train_step` sees the global batch, so
batch-norm statistics are taken over all of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Optional

import jax
import ml_collections
import optax
import orbax.checkpoint as ocp

from saccader_jax import checkpoints
from saccader_jax import objectives
from saccader_jax import steps
from saccader_jax.job import Job


@dataclasses.dataclass(frozen=True)
class ResolvedStage:
  """One stage of a run, everything it trains with.

  Attributes:
    name: the stage's name in config.run_stages (a label from here on).
    index: its place in config.run_stages (fixes its key and data order).
    stage: what it trains (`objectives.Stage`).
    config: config.stages.<name>.
    field: the config field of its model ("model", "classifier", ...).
    model: that field's module.
    total_steps: the stage's length.
    tx, schedule: its optimizer and learning-rate schedule.
    optimizer_config: the optimizer config tx was built from (saved with
      every checkpoint, compared on resume).
    manager: its checkpoint manager (`checkpoints/<name>`); close it when
      the stage ends.
    key: the stage's PRNG key; step s uses fold_in(key, s).
    skip_nonfinite: config.on_nonfinite == "skip".
    train_step: the jitted step (state, global batch, key) -> (state,
      metrics), state donated.
    batches: start position (examples into this host's stream) -> the
      stage's global training batches.
  """
  name: str
  index: int
  stage: objectives.Stage
  config: ml_collections.ConfigDict
  field: str
  model: Any
  total_steps: int
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  optimizer_config: dict
  manager: ocp.CheckpointManager
  key: jax.Array
  skip_nonfinite: bool
  train_step: Callable[..., tuple[steps.TrainState, dict]]
  batches: Callable[[int], Iterator[dict]]

  def initial_state(self, job: Job, previous: Optional[dict]
                    ) -> tuple[steps.TrainState, int]:
    """The state to train from and this host's input position (see
    `checkpoints.initial_state`)."""
    return checkpoints.initial_state(
        self.manager, checkpoints.abstract_variables(job.config, self.field),
        self.tx, self.optimizer_config, apply_fn=self.model.apply,
        sharding=job.replicated, previous=previous,
        init=lambda: job.init_variables(self.key, self.field),
        batch_size=job.config.batch_size, label=self.name,
        total_steps=self.total_steps)


def resolve_stage(job: Job, index: int, name: str) -> ResolvedStage:
  """Stage `name`, at `index` in config.run_stages, as a value."""
  config = job.config
  stage = objectives.get_stage(name)
  stage_config = config.stages[name]
  field = stage.model_field
  model = job.model(field)
  total_steps = job.stage_steps(stage_config)
  tx, schedule = steps.stage_optimizer(config, name, total_steps)
  skip_nonfinite = config.get("on_nonfinite", "stop") == "skip"
  train_step = steps.jit_train_step(stage.loss(model, stage_config), schedule,
                                    job.mesh, skip_nonfinite)
  manager = checkpoints.create_manager(
      job.workdir / "checkpoints" / name, config.keep_checkpoints,
      config.get("async_checkpoints", True))
  return ResolvedStage(
      name=name, index=index, stage=stage, config=stage_config, field=field,
      model=model, total_steps=total_steps, tx=tx, schedule=schedule,
      optimizer_config=steps.stage_optimizer_config(config, name).to_dict(),
      manager=manager,
      key=jax.random.fold_in(jax.random.key(config.seed), index),
      skip_nonfinite=skip_nonfinite, train_step=train_step,
      batches=lambda position: job.train_batches(
          field, config.seed + index, position))
