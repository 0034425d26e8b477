"""Where a stage starts: its variables, optimizer state and input position.

The order, as `start_stage` applies it:

  1. its own newest checkpoint that restores (damaged newer ones are set
     aside): the stage resumes, optimizer state included unless another
     optimizer wrote it;
  2. else the variables the config starts it from (`initial_variables`):
     the last trained model of its own config field, else the fields its
     `init_from` names (trained earlier in the run, or given pretrained);
  3. else a fresh initialisation from the stage's key.

This host's input position is the one saved with the checkpoint when the
job has as many hosts as the one that saved it, else the step times this
host's share of the batch (`input_position`).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp

from saccader_jax import checkpoints
from saccader_jax import models
from saccader_jax import steps
from saccader_jax.data import input_pipeline
from saccader_jax.job import Job
from saccader_jax.stage_run import StageRun
from saccader_jax.stages import ResolvedStage


class Start(NamedTuple):
  state: steps.TrainState         # replicated over the job's mesh
  position: int                   # this host's input position, examples
  initial: Optional[dict]         # the configured starting variables (None:
                                  # the stage has none, it starts fresh)


def initial_variables(stage: ResolvedStage,
                      trained: Mapping[str, dict]) -> Optional[dict]:
  """The {"params", "batch_stats"} the config starts `stage` from, or None.

  trained: the last trained (or given) variables of each config field.
  Stages of one field continue from each other; a stage whose model is
  made of other fields' models (Stage.init_from) starts from theirs.
  """
  own = trained.get(stage.field)
  if own is not None or not stage.init_from:
    return own
  return {collection: {part: trained[source][collection]
                       for part, source in stage.init_from.items()}
          for collection in ("params", "batch_stats")}


def input_position(step: int, saved: Optional[dict], batch_size: int) -> int:
  """Where this host's training stream resumes: the position saved with
  the checkpoint when the job has as many hosts as the one that saved it
  (their streams are the same), else step x this job's local batch
  (batch_size is the global batch)."""
  if saved and saved.get("process_count") == jax.process_count():
    return int(saved["examples_per_host"])
  return step * input_pipeline.local_batch_size(batch_size)


def start_stage(job: Job, run: StageRun, trained: Mapping[str, dict]
                ) -> Start:
  """Stage `run`'s state and this host's input position (the order is the
  module docstring's)."""
  sharding, name = job.replicated, run.name
  abstract = models.abstract_variables(job.config, run.field)
  abstract_model = checkpoints.with_sharding(
      {"step": jax.ShapeDtypeStruct((), jnp.int32), **abstract}, sharding)
  abstract_opt_state = checkpoints.with_sharding(
      jax.eval_shape(run.tx.init, abstract["params"]), sharding)
  initial = initial_variables(run.stage, trained)

  restored = checkpoints.restore_latest(run.manager, abstract_model,
                                        abstract_opt_state,
                                        run.optimizer_config)
  opt_state, data_position = None, None
  if restored is not None:                       # 1. its own checkpoint
    opt_state, data_position = (restored.opt_state,
                                restored.meta.get("data_position"))
    variables = {"params": restored.model["params"],
                 "batch_stats": restored.model["batch_stats"]}
    start_step = int(restored.model["step"])
    logging.info("Stage %s: resuming from step %d.", name, start_step)
    if opt_state is None and start_step < run.total_steps:
      logging.warning(
          "Stage %s: its checkpoint's optimizer differs from this run's (%s): "
          "parameters and batch statistics carry over, the optimizer state "
          "starts fresh, and the learning-rate schedule continues from step "
          "%d.", name, checkpoints.optimizer_changes(
              restored.meta.get("optimizer"), run.optimizer_config),
          start_step)
  elif initial is not None:                      # 2. the configured start
    # A copy: the train step donates its state's buffers, and the earlier
    # stage's variables may still be read (e.g. the stage-1 BagNet as a
    # reference classifier).
    variables = jax.jit(lambda v: jax.tree_util.tree_map(jnp.copy, v),
                        out_shardings=sharding)(initial)
    start_step = 0
    logging.info("Stage %s: starting from the previous stage's model.", name)
  else:                                          # 3. fresh
    variables, start_step = job.init_variables(run.key, run.field), 0
    logging.info("Stage %s: starting from a random initialisation.", name)

  if opt_state is None:
    opt_state = jax.jit(run.tx.init, out_shardings=sharding)(
        variables["params"])
  state = steps.TrainState(step=jnp.asarray(start_step, jnp.int32),
                           apply_fn=run.model.apply,
                           params=variables["params"],
                           batch_stats=variables["batch_stats"], tx=run.tx,
                           opt_state=opt_state)
  return Start(jax.device_put(state, sharding),
               input_position(start_step, data_position,
                              job.config.batch_size), initial)
