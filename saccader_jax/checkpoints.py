"""Checkpoints of one training stage with orbax's CheckpointManager.

Each checkpoint holds three items:
  model:     {"step", "params", "batch_stats"}
  opt_state: the optimizer state,
  meta:      JSON: the optimizer config that produced opt_state, and where
             the input pipeline stands (data_position).
Keeping the optimizer state apart lets a job resume with another optimizer:
the model carries over and the optimizer starts fresh.

Paths are `etils.epath` paths, so a workdir may be local or a URL such as
gs://bucket/run. Orbax writes into a temporary directory and renames it when
complete, so a job killed mid-write leaves no checkpoint that `latest_step`
would return. A checkpoint that is complete but cannot be restored (damaged
files) is moved aside to `<checkpoints>/damaged/` and the next older one is
used. Every restore names the target sharding of every array, so a
checkpoint written on N devices restores on M.

Resume lives here too: `initial_state` gives a stage its state (newest
checkpoint that restores, else the previous stage's model, else a fresh
one) and each host's input position, saved with every checkpoint.
"""

from __future__ import annotations

import logging as pylogging
import time
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from saccader_jax import errors
from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import paths
from saccader_jax import run_record
from saccader_jax import steps
from saccader_jax.data import input_pipeline

MODEL, OPT_STATE, META = "model", "opt_state", "meta"
DAMAGED = "damaged"


class CheckpointMismatchError(errors.CheckpointError, ValueError):
  """The checkpoint was written by another model: not damage, a mistake."""

  def __init__(self, message: str):
    super().__init__(
        f"{message} Train this config in a new --workdir, or run this "
        "workdir with the config it was trained with.")


def _not_read_only_notice(record: pylogging.LogRecord) -> bool:
  return not record.getMessage().startswith("Given directory is read only")


def create_manager(directory: epath.PathLike, max_to_keep: Optional[int],
                   async_save: bool = True,
                   read_only: bool = False) -> ocp.CheckpointManager:
  """The checkpoint manager of one stage's directory. read_only: for
  loading (nothing is created, cleaned or kept-to-a-count there)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else max_to_keep,
      save_interval_steps=0 if read_only else 1, create=not read_only,
      read_only=read_only, cleanup_tmp_directories=not read_only,
      enable_async_checkpointing=async_save)
  # Orbax notes every read-only manager as a warning; loading is the only
  # use of one here, so the notice says nothing.
  absl_logger = pylogging.getLogger("absl")
  absl_logger.addFilter(_not_read_only_notice)
  try:
    return ocp.CheckpointManager(
        paths.absolute_path(directory), options=options,
        item_handlers={MODEL: ocp.StandardCheckpointHandler(),
                       OPT_STATE: ocp.StandardCheckpointHandler(),
                       META: ocp.JsonCheckpointHandler()})
  finally:
    absl_logger.removeFilter(_not_read_only_notice)


def save(manager: ocp.CheckpointManager, step: int, model_state: Any,
         opt_state: Any, optimizer_config: dict,
         data_position: Optional[dict] = None, force: bool = False) -> None:
  """Writes checkpoint `step` (in the background if the manager is async).

  data_position: JSON-able description of the input stream's position (see
  `input_position`), restored with the checkpoint's meta.
  """
  meta = {"optimizer": optimizer_config}
  if data_position is not None:
    meta["data_position"] = data_position
  manager.save(step, args=ocp.args.Composite(**{
      MODEL: ocp.args.StandardSave(model_state),
      OPT_STATE: ocp.args.StandardSave(opt_state),
      META: ocp.args.JsonSave(meta),
  }), force=force)


def describe_latest(manager: ocp.CheckpointManager) -> str:
  """The newest checkpoint's path once pending writes are done, for errors."""
  manager.wait_until_finished()
  step = manager.latest_step()
  if step is None:
    return (f"none: {manager.directory} is empty, and a rerun starts the "
            "stage afresh")
  return str(manager.directory / str(step))


def newest_complete(directory: epath.PathLike) -> str:
  """The newest complete checkpoint in a stage's directory, read from the
  file system alone (orbax renames a checkpoint to its step when the write
  is complete), for messages written while a write has failed."""
  directory = epath.Path(directory)
  complete = [int(p.name) for p in directory.iterdir()
              if p.name.isdigit()] if directory.exists() else []
  return str(directory / str(max(complete))) if complete else "none"


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def check_shapes(saved: Any, expected: Any, what: str) -> None:
  """Raises CheckpointMismatchError naming the first parameter whose shape
  differs."""
  def leaves(tree):
    return {_path_name(p): x
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

  saved_leaves, expected_leaves = leaves(saved), leaves(expected)
  for name, leaf in expected_leaves.items():
    if name not in saved_leaves:
      raise CheckpointMismatchError(
          f"{what}: the checkpoint has no {name!r}; it was written by a "
          "different model.")
    saved_shape = tuple(saved_leaves[name].shape)
    if saved_shape != tuple(np.shape(leaf)):
      raise CheckpointMismatchError(
          f"{what}: parameter {name!r} has shape {saved_shape} in the "
          f"checkpoint but {tuple(np.shape(leaf))} in this model; the "
          "checkpoint was written by a different model configuration.")
  extra = set(saved_leaves) - set(expected_leaves)
  if extra:
    raise CheckpointMismatchError(
        f"{what}: the checkpoint has parameters this model lacks, e.g. "
        f"{sorted(extra)[0]!r}.")


def with_sharding(abstract_tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """ShapeDtypeStructs that name the sharding to restore onto, so that the
  devices of the writing job do not matter."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      abstract_tree)


def restore_model(manager: ocp.CheckpointManager, step: int,
                  abstract_model: Any) -> Any:
  """Restores the model item, after checking every shape against the model.

  abstract_model's leaves carry the target sharding (see `with_sharding`).
  """
  saved = manager.item_metadata(step)[MODEL]
  check_shapes(saved, abstract_model, f"checkpoint {manager.directory}/{step}")
  restored = manager.restore(step, args=ocp.args.Composite(**{
      MODEL: ocp.args.StandardRestore(abstract_model)}))
  return restored[MODEL]


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  return manager.restore(step, args=ocp.args.Composite(**{
      META: ocp.args.JsonRestore()}))[META]


def restore_optimizer(manager: ocp.CheckpointManager, step: int,
                      abstract_opt_state: Any, optimizer_config: dict,
                      meta: dict) -> Optional[Any]:
  """The saved optimizer state, or None if another optimizer wrote it
  (`optimizer_changes` says what changed)."""
  if meta.get("optimizer") != optimizer_config:
    return None
  restored = manager.restore(step, args=ocp.args.Composite(**{
      OPT_STATE: ocp.args.StandardRestore(abstract_opt_state)}))
  return restored[OPT_STATE]


def optimizer_changes(saved: Optional[dict], current: dict) -> str:
  """What differs between a checkpoint's optimizer config and this run's,
  e.g. "name sgd_nesterov -> adamw, weight_decay 0.0 -> 0.05"."""
  saved = saved or {}
  return ", ".join(f"{key} {saved.get(key)!r} -> {current.get(key)!r}"
                   for key in sorted(set(saved) | set(current))
                   if saved.get(key) != current.get(key))


def _set_aside(manager: ocp.CheckpointManager, step: int) -> epath.Path:
  """Moves a damaged checkpoint out of the manager's sight, keeping it."""
  directory = manager.directory
  target = (directory.parent / DAMAGED /
            f"{directory.name}-{step}-{time.strftime('%Y%m%d-%H%M%S')}")
  if jax.process_index() == 0:
    target.parent.mkdir(parents=True, exist_ok=True)
    (directory / str(step)).rename(target)
  return target


class Restored(NamedTuple):
  model: Any                 # {"step", "params", "batch_stats"}
  opt_state: Optional[Any]   # None if another optimizer wrote it
  meta: dict


def restore_latest(manager: ocp.CheckpointManager, abstract_model: Any,
                   abstract_opt_state: Any, optimizer_config: dict
                   ) -> Optional[Restored]:
  """The newest checkpoint that restores.

  Checkpoints newer than that one could not be restored: each is logged
  with the reason and moved to `<checkpoints>/damaged/`. Returns None when
  the stage has no checkpoint; raises CheckpointError when none restores
  (nothing is moved then), and CheckpointMismatchError when a checkpoint
  was written by another model.
  """
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      model = restore_model(manager, step, abstract_model)
      meta = restore_meta(manager, step)
      opt_state = restore_optimizer(manager, step, abstract_opt_state,
                                    optimizer_config, meta)
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      logging.error("Checkpoint %s/%d cannot be restored (%s).",
                    manager.directory, step, reason)
      failures.append((step, reason))
      continue
    if failures:
      for damaged, reason in failures:
        target = _set_aside(manager, damaged)
        logging.warning("Moved damaged checkpoint %s/%d to %s; resuming from "
                        "step %d.", manager.directory, damaged, target, step)
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices(
            "damaged checkpoints set aside")
      manager.reload()
    return Restored(model, opt_state, meta)
  if failures:
    newest, reason = failures[0]
    raise errors.CheckpointError(
        f"No checkpoint in {manager.directory} can be restored (steps "
        f"{[s for s, _ in failures]}); the newest, step {newest}, fails "
        f"with {reason}. Move the directory away to restart the stage.")
  return None


def abstract_variables(config: ml_collections.ConfigDict,
                       field: str = "model") -> dict:
  """ShapeDtypeStructs of {"params", "batch_stats"} of the model of
  config.<field> ("model", or e.g. "classifier")."""
  model = models.create_model(config[field])
  return jax.eval_shape(
      lambda key: models.init_variables(
          model, models.dataset_for(config, field), key),
      jax.random.key(0))


def load_variables(workdir: epath.PathLike,
                   config: Optional[ml_collections.ConfigDict] = None,
                   stage: Optional[str] = None, step: Optional[int] = None,
                   sharding: Optional[jax.sharding.Sharding] = None) -> dict:
  """A trained model's variables from a workdir, on this process's devices.

  Works whatever devices the training job ran on.

  Args:
    workdir: the --workdir of a training job (local or a URL).
    config: that job's config (it defines the model); default the config
      recorded in workdir (`run_record.load_config`).
    stage: whose checkpoints: default the last of config.run_stages, i.e.
      the final model.
    step: which checkpoint; default the stage's newest.
    sharding: where the arrays go; default replicated over all devices.

  Returns:
    {"params": ..., "batch_stats": ...}, ready for `make_policy`.
  """
  if config is None:
    config = run_record.load_config(workdir)
  stage = stage or config.run_stages[-1]
  directory = paths.absolute_path(workdir) / "checkpoints" / stage
  if not directory.exists():
    raise errors.CheckpointError(f"No checkpoints of stage {stage!r}: "
                                 f"{directory} does not exist.")
  if sharding is None:
    sharding = jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.asarray(jax.devices()), ("data",)),
        jax.sharding.PartitionSpec())
  manager = create_manager(directory, max_to_keep=1, async_save=False,
                           read_only=True)
  try:
    steps = manager.all_steps()
    if step is None:
      if not steps:
        raise errors.CheckpointError(f"{directory} holds no checkpoint.")
      step = max(steps)
    elif step not in steps:
      raise errors.CheckpointError(f"{directory} has no checkpoint of step "
                                   f"{step}; it has {sorted(steps)}.")
    abstract = with_sharding(
        {"step": jax.ShapeDtypeStruct((), jnp.int32),
         **abstract_variables(config, objectives.get_stage(stage).model_field)},
        sharding)
    model = restore_model(manager, step, abstract)
  finally:
    manager.close()
  return {"params": model["params"], "batch_stats": model["batch_stats"]}


# Resume: where a stage starts.


def input_position(step: int, saved: Optional[dict], batch_size: int) -> int:
  """Where this host's training stream resumes: the position saved with
  the checkpoint when the job has as many hosts as the one that saved it
  (their streams are the same), else step x this job's local batch
  (batch_size is the global batch)."""
  if saved and saved.get("process_count") == jax.process_count():
    return int(saved["examples_per_host"])
  return step * input_pipeline.local_batch_size(batch_size)


def initial_state(manager: ocp.CheckpointManager, abstract: dict, tx,
                  optimizer_config: dict, *, apply_fn, sharding,
                  previous: Optional[dict], init: Callable[[], dict],
                  batch_size: int, label: str, total_steps: int
                  ) -> tuple[steps.TrainState, int]:
  """A stage's state and this host's input position.

  The stage's newest checkpoint that restores (damaged newer ones are set
  aside, see `restore_latest`), else the previous stage's variables, else
  init(). abstract: ShapeDtypeStructs of the model's {"params",
  "batch_stats"} (`abstract_variables`); tx and optimizer_config: the
  stage's optimizer and the config it was built from; sharding: where the
  state goes; batch_size: the global batch; label: the stage, for the log;
  total_steps: the stage's length (a finished stage's optimizer is not
  compared).
  """
  abstract_model = with_sharding(
      {"step": jax.ShapeDtypeStruct((), jnp.int32), **abstract}, sharding)
  abstract_opt_state = with_sharding(
      jax.eval_shape(tx.init, abstract["params"]), sharding)
  restored = restore_latest(manager, abstract_model, abstract_opt_state,
                            optimizer_config)
  opt_state, data_position = None, None
  if restored is not None:
    opt_state, data_position = (restored.opt_state,
                                restored.meta.get("data_position"))
    variables = {"params": restored.model["params"],
                 "batch_stats": restored.model["batch_stats"]}
    start_step = int(restored.model["step"])
    logging.info("Stage %s: resuming from step %d.", label, start_step)
    if opt_state is None and start_step < total_steps:
      logging.warning(
          "Stage %s: its checkpoint's optimizer differs from this run's (%s): "
          "parameters and batch statistics carry over, the optimizer state "
          "starts fresh, and the learning-rate schedule continues from step "
          "%d.", label, optimizer_changes(restored.meta.get("optimizer"),
                                          optimizer_config), start_step)
  elif previous is not None:
    # A copy: the train step donates its state's buffers, and the previous
    # stage's variables may still be read (e.g. the stage-1 BagNet as a
    # reference classifier).
    variables = jax.jit(lambda v: jax.tree_util.tree_map(jnp.copy, v),
                        out_shardings=sharding)(previous)
    start_step = 0
    logging.info("Stage %s: starting from the previous stage's model.",
                 label)
  else:
    variables, start_step = init(), 0
    logging.info("Stage %s: starting from a random initialisation.", label)
  if opt_state is None:
    opt_state = jax.jit(tx.init, out_shardings=sharding)(variables["params"])
  state = steps.TrainState(step=jnp.asarray(start_step, jnp.int32),
                           apply_fn=apply_fn, params=variables["params"],
                           batch_stats=variables["batch_stats"], tx=tx,
                           opt_state=opt_state)
  return (jax.device_put(state, sharding),
          input_position(start_step, data_position, batch_size))
