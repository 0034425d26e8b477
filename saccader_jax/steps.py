"""A train step and its state: pure functions of any loss.

`train_step(state, batch, key) -> (state, metrics)` is a pure function: the
key is folded with the step, so one key per stage gives every step its own.
`saccader_jax.stages` builds a stage's step from its loss and optimizer
(`ResolvedStage.create`); `saccader_jax.loop` runs its steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import optax
from flax.training import train_state


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
