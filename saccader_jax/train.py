"""Training and evaluation: the three stages of section 3.2, data parallel.

The global batch is split along the `data` axis of a mesh over every device
of every process; parameters are replicated. The train step is one `jax.jit`
of a pure function of (state, batch, key); batch-norm statistics are taken
over the global batch because the step sees global arrays.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Optional

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
from saccader_jax import chunking
from saccader_jax import config_checks
from saccader_jax import errors
from saccader_jax import evaluation
from saccader_jax import evaluators as evaluators_lib
from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import optimizers
from saccader_jax import policy as policy_lib
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
    config_checks.check_config(config, jax.device_count(),
                               jax.process_count(),
                               pretrained_fields=tuple(self.pretrained))
    self.config = config
    self.workdir = check_workdir(workdir)
    self.mesh = create_mesh()
    self.replicated = NamedSharding(self.mesh, P())
    self.data_sharding = NamedSharding(self.mesh, P("data"))
    self.builder = self._prepare_data()
    self.writer = metric_writers.create_default_writer(
        self.workdir / "tensorboard",
        just_logging=jax.process_index() > 0)
    self.evaluators = evaluators_lib.create_evaluators(
        config.get("evals", {"accuracy": {}}), config.eval_glimpses)
    # Whole-image readouts of the stages that have one (Stage.reference),
    # by stage name, as they finish: the evaluators' reference classifiers.
    self.reference_variables: dict[str, Any] = {}
    self._models: dict[str, Any] = {}
    self._policies: dict[Any, policy_lib.Policy] = {}
    self._policy_evaluators: dict[Any, tuple[Any, Any]] = {}
    self._picture_fns: dict[Any, tuple[Any, Any]] = {}
    self._classifier_steps: dict[str, Any] = {}

  def _prepare_data(self):
    # One process generates or prepares the data; the others then read it.
    if jax.process_index() == 0:
      builder = input_pipeline.get_builder(self.config.dataset)
    multihost_utils.sync_global_devices("data prepared")
    if jax.process_index() != 0:
      builder = input_pipeline.get_builder(self.config.dataset)
    return builder

  def model(self, field: str = "model"):
    """The module of config.<field> (built once)."""
    if field not in self._models:
      self._models[field] = models.create_model(self.config[field])
    return self._models[field]

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

  def init_variables(self, key, field: str = "model") -> dict:
    model = self.model(field)
    dataset = models.dataset_for(self.config, field)
    init = jax.jit(lambda k: models.init_variables(model, dataset, k),
                   out_shardings=self.replicated)
    return init(key)

  # Evaluation.

  def eval_batches(self, split: str, max_examples=None,
                   field: str = "model"):
    """The split's global batches (padding masked out), as the model of
    config.<field> reads them (`models.dataset_for`)."""
    return map(self.global_batch, input_pipeline.eval_batches(
        models.dataset_for(self.config, field), self.builder, split,
        self.config.eval_batch_size, max_examples))

  def learned_policy(self, field: str = "model") -> policy_lib.Policy:
    """The policy of config.<field>'s model (built once), without variables:
    pass them to `evaluate_policy`."""
    key = ("learned", field)
    if key not in self._policies:
      self._policies[key] = policy_lib.make_policy(
          self.model(field), None, self.config.dataset.num_channels)
    return self._policies[key]

  def _policy_evaluator(self, policy: policy_lib.Policy):
    """The compiled evaluation of `policy`, with every configured evaluator
    whose reference classifiers have been trained. Cached while the policy
    lives (the cache holds it, so its id is not reused)."""
    usable = [e for e in self.evaluators
              if all(r in self.reference_variables for r in e.references)]
    key = (id(policy), tuple(e.name for e in usable))
    if key not in self._policy_evaluators:
      needed = {r for e in usable for r in e.references}
      classify_fns = {name: self.classify_fn(name) for name in needed}
      self._policy_evaluators[key] = (policy, evaluation.PolicyEvaluator(
          policy, usable, self.config.eval_glimpses, classify_fns,
          out_sharding=self.replicated,
          chunk_size=self.config.get("eval_chunk_size", chunking.AUTO)))
    return self._policy_evaluators[key][1]

  def classify_fn(self, stage_name: str) -> evaluation.ClassifyFn:
    """The whole-image readout of the network stage_name trains."""
    return models.classify_fn(
        self.model(objectives.get_stage(stage_name).model_field))

  def evaluate_policy(self, policy: policy_lib.Policy, split: str,
                      variables: Any = None, key=None,
                      max_examples=None, field: str = "model") -> dict:
    """Any policy (learned or baseline) through the configured evaluators.

    variables: the policy's (default: policy.variables). key: for sampling
    policies. field: the config field of the policy's model, whose input
    size the images take. Evaluators whose reference classifier is not
    trained yet are left out.
    """
    evaluator = self._policy_evaluator(policy)
    return evaluator(self.eval_batches(split, max_examples, field), variables,
                     self.reference_variables, key=key)

  def evaluate_reference(self, stage_name: str, variables: Any, split: str,
                         max_examples=None) -> dict:
    """A stage's whole-image readout (Stage.reference) on a split."""
    if stage_name not in self._classifier_steps:
      self._classifier_steps[stage_name] = jax.jit(
          evaluation.make_classifier_eval_step(
              self.classify_fn(stage_name),
              self.config.get("eval_chunk_size", chunking.AUTO)),
          out_shardings=self.replicated)
    results = evaluation.evaluate(self._classifier_steps[stage_name],
                                  self.eval_batches(split, max_examples),
                                  variables)
    return evaluation.reference_results(
        results, objectives.get_stage(stage_name).reference)

  def pictures(self, policy: policy_lib.Policy, split: str,
               variables: Any = None, key=None, title: str = "",
               field: str = "model") -> dict[str, np.ndarray]:
    """Glimpse pictures of the split's first images, if configured (field:
    as in `evaluate_policy`)."""
    pictures = {}
    variables = policy.variables if variables is None else variables
    for evaluator in self.evaluators:
      if not isinstance(evaluator, evaluators_lib.Glimpses):
        continue
      count = min(evaluator.num_images, self.config.eval_batch_size)
      cache_key = (id(policy), count)   # the cache holds the policy
      if cache_key not in self._picture_fns:
        def first_images(variables, batch, key, count=count):
          head = jax.tree_util.tree_map(lambda x: x[:count], batch)
          out = policy.apply(variables, head["image"],
                             self.config.eval_glimpses, key)
          return out, head
        self._picture_fns[cache_key] = (policy, jax.jit(
            first_images, out_shardings=self.replicated))
      batch = next(iter(self.eval_batches(split, count, field)))
      out, head = jax.device_get(
          self._picture_fns[cache_key][1](variables, batch, key))
      real = np.asarray(head["mask"]) > 0   # other hosts' rows may be padding
      out = jax.tree_util.tree_map(lambda x: np.asarray(x)[real], out)
      pictures[evaluator.name] = evaluator.picture(
          out, head["image"][real], head["label"][real],
          input_pipeline.class_names(self.builder), title)
    return pictures

  def evaluate_stage(self, name: str, variables: Any, split: str,
                     max_examples=None) -> dict:
    """What stage `name` yields: its policy through the evaluators (if its
    model is a policy) and its reference readout (if it has one)."""
    stage = objectives.get_stage(name)
    results = {}
    if models.is_policy(self.model(stage.model_field)):
      results = self.evaluate_policy(self.learned_policy(stage.model_field),
                                     split, variables,
                                     max_examples=max_examples,
                                     field=stage.model_field)
    if stage.reference:
      reference = self.evaluate_reference(name, variables, split,
                                          max_examples)
      results.setdefault("count", reference["count"])
      results["references"] = {name: reference}
    return results

  def write_evaluation(self, step: int, prefix: str, results: dict,
                       pictures: dict[str, np.ndarray]) -> None:
    self.writer.write_scalars(step, evaluation.scalars(
        results, self.evaluators, prefix))
    if pictures:
      self.writer.write_images(step, {f"{prefix}/{key}": picture[None]
                                      for key, picture in pictures.items()})

  # Training.

  def initial_state(self, name: str, tx, optimizer_config: dict, manager,
                    key, previous: Optional[dict]) -> tuple[TrainState, int]:
    """The stage's state and this host's input position: its newest
    checkpoint that restores, else the previous stage's model, else a random
    initialisation."""
    field = objectives.get_stage(name).model_field
    abstract = checkpoints.abstract_variables(self.config, field)
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
      # A copy: the train step donates its state's buffers, and the previous
      # stage's variables may still be read (e.g. the stage-1 BagNet as a
      # reference classifier).
      variables = jax.jit(lambda v: jax.tree_util.tree_map(jnp.copy, v),
                          out_shardings=self.replicated)(previous)
      start_step = 0
      logging.info("Stage %s: starting from the previous stage's model.", name)
    else:
      variables, start_step = self.init_variables(key, field), 0
      logging.info("Stage %s: starting from a random initialisation.", name)
    if opt_state is None:
      opt_state = jax.jit(tx.init, out_shardings=self.replicated)(
          variables["params"])
    state = TrainState(step=jnp.asarray(start_step, jnp.int32),
                       apply_fn=self.model(field).apply,
                       params=variables["params"],
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
    """Trains stage `name`; returns its final {"params", "batch_stats"}.

    previous: the variables of the last stage that trained the same model.
    """
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
    train_step = jit_train_step(
        stage.loss(self.model(stage.model_field), stage_config), schedule,
        self.mesh, skip_nonfinite)
    batches = input_pipeline.train_batches(
        models.dataset_for(config, stage.model_field), self.builder,
        config.batch_size,
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
      if last and stage.reference:
        self.reference_variables[name] = model_variables(state)
      if last and previous is not None:
        changes = relative_change(previous["params"], state.params)
        logging.info("Stage %s: parameters moved, relative to where the "
                     "stage started: %s.", name, ", ".join(
                         f"{k} {v:.2e}" for k, v in changes.items()))
        self.writer.write_scalars(step, {
            f"{name}/relative_change/{k}": v for k, v in changes.items()})
      if ((last and config.get("eval_at_stage_end", True))
          or (config.eval_every_steps
              and step % config.eval_every_steps == 0)):
        variables = model_variables(state)
        results = self.evaluate_stage(name, variables,
                                      config.dataset.dev_split,
                                      config.get("eval_max_examples"))
        pictures = {}
        if models.is_policy(self.model(stage.model_field)):
          pictures = self.pictures(self.learned_policy(stage.model_field),
                                   config.dataset.dev_split, variables,
                                   field=stage.model_field)
        self.write_evaluation(step, f"{name}/dev", results, pictures)
    manager.wait_until_finished()
    manager.close()
    self.writer.flush()
    return model_variables(state)

  def train(self) -> dict[str, dict]:
    """Trains config.run_stages in order (resuming; finished stages are
    restored); returns each stage's final variables by stage name."""
    by_field, by_stage = dict(self.pretrained), {}
    for index, name in enumerate(self.config.run_stages):
      stage = objectives.get_stage(name)
      previous = by_field.get(stage.model_field)
      if previous is None and stage.init_from:
        previous = {collection: {part: by_field[source][collection]
                                 for part, source in stage.init_from.items()}
                    for collection in ("params", "batch_stats")}
      variables = self.run_stage(index, name, previous)
      by_field[stage.model_field] = by_stage[name] = variables
      if stage.reference:
        self.reference_variables[name] = variables
    return by_stage

  def policy_field(self) -> Optional[str]:
    """The config field of the last policy model that run_stages train."""
    fields = [objectives.get_stage(n).model_field
              for n in self.config.run_stages]
    fields = [f for f in fields if models.is_policy(self.model(f))]
    return fields[-1] if fields else None

  def run(self) -> dict:
    """Trains config.run_stages, then evaluates on the test split.

    Returns {"variables": the final policy model's (else the last stage's)
    variables, "stages": every stage's final variables, "test": results}.
    """
    start = time.time()
    by_stage = self.train()
    by_field = {objectives.get_stage(n).model_field: v
                for n, v in by_stage.items()}
    split = self.config.dataset.test_split
    results, pictures = {"references": {}}, {}
    field = self.policy_field()
    if field:
      policy = self.learned_policy(field)
      results.update(self.evaluate_policy(policy, split, by_field[field],
                                          field=field))
      pictures = self.pictures(policy, split, by_field[field],
                               title="Greedy policy, test split", field=field)
    for name, variables in self.reference_variables.items():
      results["references"][name] = self.evaluate_reference(name, variables,
                                                             split)
      results.setdefault("count", results["references"][name]["count"])
    if jax.process_index() == 0:
      table = evaluation.format_table(
          results, f"Test accuracy of the greedy policy "
          f"({self.config.dataset.name}, {time.time() - start:.0f} s)",
          self.evaluators)
      paths = evaluation.save_results(
          results, self.workdir, "test_accuracy",
          f"Greedy policy, {self.config.dataset.name} test", table=table,
          pictures=pictures)
      print(table)
      print(f"\nResults: {', '.join(map(str, paths))}")
      print(f"TensorBoard logs: {self.workdir / 'tensorboard'}"
            f"  (tensorboard --logdir {self.workdir})", flush=True)
    self.writer.close()
    final = by_field.get(field) if field else list(by_stage.values())[-1]
    return {"variables": final, "stages": by_stage, "test": results}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: epath.PathLike) -> dict:
  """Trains config.run_stages in order, then evaluates on the test split
  (see `Trainer.run`)."""
  return Trainer(config, workdir).run()
