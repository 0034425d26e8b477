"""One stage's train step: pure functions a notebook can call alone.

    setup = create_stage(config, "policy", stage_model(config, "policy"),
                         variables, total_steps=1000)
    step = jax.jit(setup.train_step)
    state, metrics = step(setup.state, batch, key)

`train_step(state, batch, key) -> (state, metrics)` is a pure function: the
key is folded with the step, so one key per stage gives every step its own.
`saccader_jax.stages` resolves a stage of a run into one value built from
these; `saccader_jax.loop` runs its steps.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import optimizers


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def make_train_step(loss_fn, schedule, skip_nonfinite: bool = False):
  """train_step(state, batch, key) -> (state, metrics).

  The key is folded with the step, so one key per stage gives a new key every
  step. Metrics include `grad_norm` and `nonfinite` (1.0 where the loss or the
  gradient norm is not finite). With skip_nonfinite, such a step leaves
  parameters, optimizer state and batch statistics as they were and only
  advances the step; otherwise the caller must stop (see `check_finite`).
  """

  def train_step(state: TrainState, batch, key):
    step_key = jax.random.fold_in(key, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, metrics)), grads = grad_fn(
        state.params, state.batch_stats, batch, step_key)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    metrics = dict(metrics, learning_rate=schedule(state.step),
                   grad_norm=grad_norm,
                   nonfinite=1.0 - finite.astype(jnp.float32))
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if skip_nonfinite:
      new_state = jax.tree_util.tree_map(
          lambda new, old: jnp.where(finite, new, old),
          new_state.replace(step=state.step), state).replace(
              step=new_state.step)
    return new_state, metrics

  return train_step


def jit_train_step(loss_fn, schedule, mesh: Mesh,
                   skip_nonfinite: bool = False):
  """The train step, jitted for a batch split along `data` and a replicated
  state; the state's buffers are donated."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(
      make_train_step(loss_fn, schedule, skip_nonfinite),
      in_shardings=(replicated, NamedSharding(mesh, P("data")), replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=(0,))


def stage_optimizer_config(config: ml_collections.ConfigDict,
                           name: str) -> ml_collections.ConfigDict:
  """config.optimizer, with the stage's own grad_clip_norm if it sets one."""
  optimizer_config = config.optimizer.copy_and_resolve_references()
  clip = config.stages[name].get("grad_clip_norm")
  if clip is not None:
    optimizer_config.grad_clip_norm = clip
  return optimizer_config


def stage_optimizer(config: ml_collections.ConfigDict, name: str,
                    total_steps: int):
  """(optimizer, schedule) of stage `name`: frozen parameters get no update."""
  schedule = optimizers.create_learning_rate_schedule(
      config.schedule, config.stages[name].learning_rate, total_steps)
  stage = objectives.get_stage(name)
  stage_config = config.stages[name]
  rate_factors = None
  if stage.has_rate_factors(stage_config):
    rate_factors = lambda params: stage.rate_factors(params, stage_config)
  tx = optimizers.create_optimizer(
      stage_optimizer_config(config, name), schedule,
      lambda params: stage.trainable_mask(params, stage_config),
      rate_factors)
  return tx, schedule


class StageSetup(NamedTuple):
  """Everything a stage trains with (see `create_stage`)."""
  state: TrainState
  train_step: Callable[..., tuple[TrainState, dict]]
  loss_fn: objectives.LossFn
  tx: optax.GradientTransformation
  schedule: optax.Schedule


def stage_model(config: ml_collections.ConfigDict, name: str):
  """The module stage `name` trains (its Stage's config.<model_field>)."""
  return models.create_model(config[objectives.get_stage(name).model_field])


def create_stage(config: ml_collections.ConfigDict, name: str, model,
                 variables: dict, total_steps: int,
                 skip_nonfinite: bool = False) -> StageSetup:
  """Stage `name`'s loss, optimizer, schedule, state and step, from config
  as the trainer builds them.

  For notebooks, tests and benchmarks: `model` is `stage_model(config,
  name)` (or an equal module); training starts from `variables`.
  `train_step(state, batch, key) -> (state, metrics)` is the pure, unjitted
  step (`jax.jit` it, or see `jit_train_step` for a mesh).
  """
  tx, schedule = stage_optimizer(config, name, total_steps)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            batch_stats=variables["batch_stats"], tx=tx)
  loss_fn = objectives.get_stage(name).loss(model, config.stages[name])
  return StageSetup(state, make_train_step(loss_fn, schedule, skip_nonfinite),
                    loss_fn, tx, schedule)


def relative_change(before: Any, after: Any) -> dict[str, float]:
  """||after - before|| / ||before|| of each top-level parameter subtree
  (e.g. how far a stage moved the representation and the location network
  from where it started)."""
  changes = jax.jit(lambda b, a: {
      part: optax.tree.norm(jax.tree_util.tree_map(jnp.subtract, a[part],
                                                   b[part]))
      / jnp.maximum(optax.tree.norm(b[part]), 1e-12) for part in b})(
          before, after)
  return {part: float(v) for part, v in jax.device_get(changes).items()}


def model_variables(state: TrainState) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats}


def model_state(state: TrainState) -> dict:
  return {"step": state.step, **model_variables(state)}
