"""A resolved stage inside a job: its length, step, data and checkpoints.

How a batch travels: `Job.train_batches` reads this host's rows from the
input pipeline, in the order fixed by the stage's data seed (config.seed +
its index in run_stages) and the host's position; `Job.global_batch` makes
them one global array split along the mesh's `data` axis; the jitted
`train_step` sees the global batch, so batch-norm statistics are taken over
all of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import jax
import ml_collections
import optax
import orbax.checkpoint as ocp

from saccader_jax import checkpoints
from saccader_jax import models
from saccader_jax import steps
from saccader_jax.job import Job
from saccader_jax.stages import ResolvedStage


@dataclasses.dataclass(frozen=True)
class StageRun:
  """What a job gives a resolved stage to train with.

  Attributes:
    stage: the resolved stage (model, loss, optimizer config, key).
    total_steps: its length.
    tx, schedule: its optimizer and learning-rate schedule.
    manager: its checkpoint manager (`checkpoints/<name>`); close it when
      the stage ends.
    skip_nonfinite: config.on_nonfinite == "skip".
    train_step: the jitted step (state, global batch, key) -> (state,
      metrics), state donated.
    batches: start position (examples into this host's stream) -> the
      stage's global training batches.
  """
  stage: ResolvedStage
  total_steps: int
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  manager: ocp.CheckpointManager
  skip_nonfinite: bool
  train_step: Callable[..., tuple[steps.TrainState, dict]]
  batches: Callable[[int], Iterator[dict]]

  @classmethod
  def create(cls, job: Job, stage: ResolvedStage,
             read_only: bool = False) -> "StageRun":
    """The stage in `job` (read_only: its checkpoints are only read)."""
    config = job.config
    total_steps = job.stage_steps(stage.config)
    tx, schedule = stage.optimizer(total_steps)
    skip_nonfinite = config.get("on_nonfinite", "stop") == "skip"
    return cls(
        stage=stage, total_steps=total_steps, tx=tx, schedule=schedule,
        manager=checkpoints.create_manager(
            job.workdir / "checkpoints" / stage.name,
            config.keep_checkpoints, config.get("async_checkpoints", True),
            read_only=read_only),
        skip_nonfinite=skip_nonfinite,
        train_step=steps.jit_train_step(stage.loss_fn(), schedule, job.mesh,
                                        skip_nonfinite),
        batches=lambda position: job.train_batches(
            stage.field, stage.data_seed, position))

  def with_representation_cache(self, job: Job, variables: Any
                                ) -> "StageRun":
    """This stage reading its frozen representation's outputs from memory,
    computed once from `variables` (`saccader_jax.representation_cache`),
    where config.cache_frozen_representation asks for it and the stage
    freezes the representation; otherwise itself."""
    if not (job.config.get("cache_frozen_representation", False)
            and self.stage.stage.freezes_representation(self.config)):
      return self
    from saccader_jax import representation_cache  # pylint: disable=g-import-not-at-top
    cache = representation_cache.compute(
        self.model, variables, models.dataset_for(job.config, self.field),
        job.builder, job.config.eval_batch_size)
    return dataclasses.replace(
        self, batches=lambda position: job.train_batches(
            self.field, self.stage.data_seed, position,
            by_index=cache.lookup))

  @property
  def name(self) -> str:
    return self.stage.name

  @property
  def field(self) -> str:
    return self.stage.field

  @property
  def key(self) -> jax.Array:
    return self.stage.key

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.stage.config

  @property
  def optimizer_config(self) -> dict:
    return self.stage.optimizer_config

  @property
  def model(self) -> Any:
    return self.stage.model
