"""Checkpoints of one training stage with orbax's CheckpointManager.

Each checkpoint holds three items:
  model:     {"step", "params", "batch_stats"}
  opt_state: the optimizer state (absent from an exported model),
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

Storage only: which checkpoint a stage starts from is
`saccader_jax.stage_start`'s to decide, and reading a finished run back
(`load_variables`) is `saccader_jax.run_record`'s.
"""

from __future__ import annotations

import logging as pylogging
import time
from typing import Any, NamedTuple, Optional

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from saccader_jax import errors
from saccader_jax import paths

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
  complete = _complete_steps(directory)
  return str(directory / str(max(complete))) if complete else "none"


def _complete_steps(directory: epath.Path) -> list[int]:
  """The steps of the complete checkpoints in a stage's directory."""
  return [int(p.name) for p in directory.iterdir()
          if p.name.isdigit()] if directory.exists() else []


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
  (`optimizer_changes` says what changed) or the checkpoint holds the model
  alone (a shipped model, `export_models`)."""
  if meta.get("optimizer") != optimizer_config:
    return None
  if not (epath.Path(manager.directory) / str(step) / OPT_STATE).exists():
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


def copy_stage(source_workdir: epath.PathLike, target_workdir: epath.PathLike,
               stage: str) -> bool:
  """Copies stage `stage`'s checkpoints from one workdir into another that
  has none of that stage (local or URLs); returns whether it copied.

  Raises CheckpointError if the source has no checkpoints of the stage.
  """
  source = paths.absolute_path(source_workdir) / "checkpoints" / stage
  target = paths.absolute_path(target_workdir) / "checkpoints" / stage
  if not _complete_steps(source):
    raise errors.CheckpointError(f"No checkpoints of stage {stage!r} in "
                                 f"{source}: train it there first.")
  if target.exists():
    return False
  _copy_tree(source, target)
  return True


def _copy_tree(source: epath.Path, target: epath.Path) -> None:
  target.mkdir(parents=True, exist_ok=True)
  for child in source.iterdir():
    _copy(child, target / child.name)


def _copy(source: epath.Path, target: epath.Path) -> None:
  """A file, or a directory with everything in it."""
  if source.is_dir():
    _copy_tree(source, target)
  else:
    source.copy(target)


# What an exported checkpoint keeps of each step: all but OPT_STATE.
_MODEL_FILES = (MODEL, META, "_CHECKPOINT_METADATA", "commit_success.txt")


def export_models(source_workdir: epath.PathLike,
                  target_workdir: epath.PathLike,
                  stages: tuple[str, ...]) -> list[epath.Path]:
  """Copies each stage's newest checkpoint without its optimizer state (a
  trained model to ship: a third of the bytes); returns the steps' paths.
  The target reads like a finished workdir (`load_variables`, `Run` with
  read_only=True)."""
  copied = []
  for stage in stages:
    directory = paths.absolute_path(source_workdir) / "checkpoints" / stage
    steps = _complete_steps(directory)
    if not steps:
      raise errors.CheckpointError(f"No checkpoints of stage {stage!r} in "
                                   f"{source_workdir}.")
    newest = directory / str(max(steps))
    target = (paths.absolute_path(target_workdir) / "checkpoints" / stage /
              newest.name)
    target.mkdir(parents=True, exist_ok=True)
    for name in _MODEL_FILES:
      if (newest / name).exists():
        _copy(newest / name, target / name)
    copied.append(target)
  return copied
