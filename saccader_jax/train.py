"""Training and evaluation: the three stages of section 3.2, data parallel.

The global batch is split along the `data` axis of a mesh over every device
of every process; parameters are replicated. The train step is one `jax.jit`
of a pure function of (state, batch, key); batch-norm statistics are taken
over the global batch because the step sees global arrays.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
from flax.training import train_state
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from saccader_jax import checkpoints
from saccader_jax import config_checks
from saccader_jax import errors
from saccader_jax import evaluation
from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import optimizers
from saccader_jax.data import input_pipeline


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def create_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ("data",))


def check_workdir(workdir: epath.PathLike) -> epath.Path:
  """Fails before any training if workdir cannot hold checkpoints and logs.

  Returns it as an absolute epath.Path (local, or a URL such as gs://...).
  """
  path = checkpoints.absolute_path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except
    # Local file systems raise OSError; cloud ones their own errors.
    raise PermissionError(f"workdir {str(workdir)!r} is not writable: {e}. "
                          "Choose another --workdir.") from e
  return path


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
  tx = optimizers.create_optimizer(stage_optimizer_config(config, name),
                                   schedule,
                                   objectives.get_stage(name).trainable_mask)
  return tx, schedule


def create_stage(config: ml_collections.ConfigDict, name: str, model,
                 variables: dict, total_steps: int,
                 skip_nonfinite: bool = False):
  """(state, train_step) of stage `name`, starting from `variables`.

  For notebooks and tests: the optimizer and schedule come from config as in
  the trainer; train_step(state, batch, key) -> (state, metrics) is the pure,
  unjitted step (`jax.jit` it, or see `jit_train_step` for a mesh).
  """
  tx, schedule = stage_optimizer(config, name, total_steps)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            batch_stats=variables["batch_stats"], tx=tx)
  loss_fn = objectives.get_stage(name).loss(model, config.stages[name])
  return state, make_train_step(loss_fn, schedule, skip_nonfinite)


def model_variables(state: TrainState) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats}


def model_state(state: TrainState) -> dict:
  return {"step": state.step, **model_variables(state)}


class Trainer:
  """Runs the configured stages in order, resuming where a job left off."""

  def __init__(self, config: ml_collections.ConfigDict,
               workdir: epath.PathLike):
    config_checks.check_config(config, jax.device_count(),
                               jax.process_count())
    self.config = config
    self.workdir = check_workdir(workdir)
    self.mesh = create_mesh()
    self.replicated = NamedSharding(self.mesh, P())
    self.data_sharding = NamedSharding(self.mesh, P("data"))
    self.model = models.create_model(config.model)
    self.builder = self._prepare_data()
    self.writer = metric_writers.create_default_writer(
        self.workdir / "tensorboard",
        just_logging=jax.process_index() > 0)
    self.eval_step = jax.jit(
        evaluation.make_eval_step(self.model, config.eval_glimpses),
        in_shardings=(self.replicated, self.data_sharding),
        out_shardings=self.replicated)

  def _prepare_data(self):
    # One process generates or prepares the data; the others then read it.
    if jax.process_index() == 0:
      builder = input_pipeline.get_builder(self.config.dataset)
    multihost_utils.sync_global_devices("data prepared")
    if jax.process_index() != 0:
      builder = input_pipeline.get_builder(self.config.dataset)
    return builder

  def global_batch(self, local_batch: dict) -> dict:
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(self.data_sharding,
                                                         x), local_batch)

  def stage_steps(self, stage_config) -> int:
    if stage_config.get("num_steps"):
      return int(stage_config.num_steps)
    examples = input_pipeline.num_examples(self.builder,
                                           self.config.dataset.train_split)
    return int(math.ceil(stage_config.num_epochs * examples /
                         self.config.batch_size))

  def init_variables(self, key) -> dict:
    init = jax.jit(lambda k: models.init_variables(
        self.model, self.config.dataset, k), out_shardings=self.replicated)
    return init(key)

  def evaluate(self, variables, split: str, max_examples=None) -> dict:
    batches = input_pipeline.eval_batches(
        self.config.dataset, self.builder, split,
        self.config.eval_batch_size, max_examples)
    return evaluation.evaluate(self.eval_step, variables,
                               map(self.global_batch, batches))

  def initial_state(self, name: str, tx, optimizer_config: dict, manager,
                    key, previous: Optional[dict]) -> tuple[TrainState, int]:
    """The stage's state and this host's input position: its newest
    checkpoint that restores, else the previous stage's model, else a random
    initialisation."""
    abstract = checkpoints.abstract_variables(self.config)
    abstract_model = checkpoints.with_sharding(
        {"step": jax.ShapeDtypeStruct((), jnp.int32), **abstract},
        self.replicated)
    abstract_opt_state = checkpoints.with_sharding(
        jax.eval_shape(tx.init, abstract["params"]), self.replicated)
    restored = checkpoints.restore_latest(manager, abstract_model,
                                          abstract_opt_state, optimizer_config)
    opt_state, data_position = None, None
    if restored is not None:
      opt_state, data_position = (restored.opt_state,
                                  restored.meta.get("data_position"))
      variables = {"params": restored.model["params"],
                   "batch_stats": restored.model["batch_stats"]}
      start_step = int(restored.model["step"])
      logging.info("Stage %s: resuming from step %d.", name, start_step)
    elif previous is not None:
      variables, start_step = previous, 0
      logging.info("Stage %s: starting from the previous stage's model.", name)
    else:
      variables, start_step = self.init_variables(key), 0
      logging.info("Stage %s: starting from a random initialisation.", name)
    if opt_state is None:
      opt_state = jax.jit(tx.init, out_shardings=self.replicated)(
          variables["params"])
    state = TrainState(step=jnp.asarray(start_step, jnp.int32),
                       apply_fn=self.model.apply, params=variables["params"],
                       batch_stats=variables["batch_stats"], tx=tx,
                       opt_state=opt_state)
    return (jax.device_put(state, self.replicated),
            self.input_position(start_step, data_position))

  def input_position(self, step: int, saved: Optional[dict]) -> int:
    """Where this host's training stream resumes: the position saved with
    the checkpoint when the job has as many hosts as the one that saved it
    (their streams are the same), else step x this job's local batch."""
    if saved and saved.get("process_count") == jax.process_count():
      return int(saved["examples_per_host"])
    return step * input_pipeline.local_batch_size(self.config.batch_size)

  def run_stage(self, index: int, name: str,
                previous: Optional[dict]) -> dict:
    """Trains stage `name`; returns its final {"params", "batch_stats"}."""
    config = self.config
    stage_config = config.stages[name]
    stage = objectives.get_stage(name)
    total_steps = self.stage_steps(stage_config)
    tx, schedule = stage_optimizer(config, name, total_steps)
    optimizer_config = stage_optimizer_config(config, name).to_dict()
    manager = checkpoints.create_manager(
        self.workdir / "checkpoints" / name,
        config.keep_checkpoints, config.get("async_checkpoints", True))
    stage_key = jax.random.fold_in(jax.random.key(config.seed), index)
    state, position = self.initial_state(name, tx, optimizer_config,
                                         manager, stage_key, previous)
    start_step = int(state.step)
    if start_step >= total_steps:
      logging.info("Stage %s: already complete (%d steps).", name, total_steps)
      manager.close()
      return model_variables(state)

    skip_nonfinite = config.get("on_nonfinite", "stop") == "skip"
    train_step = jit_train_step(stage.loss(self.model, stage_config),
                                schedule, self.mesh, skip_nonfinite)
    batches = input_pipeline.train_batches(
        config.dataset, self.builder, config.batch_size,
        seed=config.seed + index, start_position=position)
    local_batch = input_pipeline.local_batch_size(config.batch_size)

    hooks = []
    if jax.process_index() == 0:
      hooks.append(periodic_actions.ReportProgress(
          num_train_steps=total_steps, writer=self.writer,
          every_steps=config.log_every_steps))
      if config.get("profile_steps"):
        hooks.append(periodic_actions.Profile(
            num_profile_steps=config.profile_steps,
            first_profile=start_step + config.get("profile_first_step", 10),
            logdir=self.workdir))
    logging.info("Stage %s: %d steps, global batch %d over %d devices.", name,
                 total_steps, config.batch_size, jax.device_count())
    pending = []
    for step in range(start_step + 1, total_steps + 1):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        batch = self.global_batch(next(batches))
        state, metrics = train_step(state, batch, stage_key)
      pending.append(metrics)
      last = step == total_steps
      save = step % config.checkpoint_every_steps == 0 or last
      if step % config.log_every_steps == 0 or save:
        # The only host syncs of the loop: one fetch per logging interval
        # (before the progress report, so that its steps/s are steps done)
        # and one before each checkpoint, which must hold finite state.
        fetched = jax.device_get(pending)
        if not skip_nonfinite:
          check_finite(name, step - len(fetched) + 1, fetched,
                       lambda: checkpoints.describe_latest(manager))
        pending = []
        self.writer.write_scalars(step,
                                  interval_scalars(f"{name}/train", fetched))
      for hook in hooks:
        hook(step)
      if save:
        checkpoints.save(
            manager, step, model_state(state), state.opt_state,
            optimizer_config, force=last, data_position={
                "examples_per_host":
                    position + (step - start_step) * local_batch,
                "process_count": jax.process_count()})
      if last or (config.eval_every_steps
                  and step % config.eval_every_steps == 0):
        results = self.evaluate(model_variables(state),
                                config.dataset.dev_split,
                                config.get("eval_max_examples"))
        self.writer.write_scalars(step,
                                  evaluation.scalars(results, f"{name}/dev"))
    manager.wait_until_finished()
    manager.close()
    self.writer.flush()
    return model_variables(state)

  def run(self) -> dict:
    variables = None
    start = time.time()
    for index, name in enumerate(self.config.run_stages):
      variables = self.run_stage(index, name, variables)
    results = self.evaluate(variables, self.config.dataset.test_split)
    if jax.process_index() == 0:
      table = evaluation.format_table(
          results, f"Test accuracy of the greedy policy "
          f"({self.config.dataset.name}, {time.time() - start:.0f} s)")
      paths = evaluation.save_results(
          results, self.workdir, "test_accuracy",
          f"Greedy policy, {self.config.dataset.name} test", table=table)
      print(table)
      print(f"\nResults: {', '.join(map(str, paths))}")
      print(f"TensorBoard logs: {self.workdir / 'tensorboard'}"
            f"  (tensorboard --logdir {self.workdir})", flush=True)
    self.writer.close()
    return {"variables": variables, "test": results}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: epath.PathLike) -> dict:
  """Trains config.run_stages in order, then evaluates on the test split.

  Returns {"variables": final model variables, "test": accuracies}.
  """
  return Trainer(config, workdir).run()
