"""Checkpoints of one training stage with orbax's CheckpointManager.

Each checkpoint holds three items:
  model:     {"step", "params", "batch_stats"}
  opt_state: the optimizer state,
  meta:      JSON: the optimizer config that produced opt_state.
Keeping the optimizer state apart lets a job resume with another optimizer:
the model carries over and the optimizer starts fresh.

Orbax writes into a temporary directory and renames it when complete, so a
job killed mid-write leaves no checkpoint that `latest_step` would return.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

MODEL, OPT_STATE, META = "model", "opt_state", "meta"


def create_manager(directory: str, max_to_keep: int,
                   async_save: bool = True) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True,
          cleanup_tmp_directories=True,
          enable_async_checkpointing=async_save),
      item_handlers={MODEL: ocp.StandardCheckpointHandler(),
                     OPT_STATE: ocp.StandardCheckpointHandler(),
                     META: ocp.JsonCheckpointHandler()})


def save(manager: ocp.CheckpointManager, step: int, model_state: Any,
         opt_state: Any, optimizer_config: dict, force: bool = False) -> None:
  manager.save(step, args=ocp.args.Composite(**{
      MODEL: ocp.args.StandardSave(model_state),
      OPT_STATE: ocp.args.StandardSave(opt_state),
      META: ocp.args.JsonSave({"optimizer": optimizer_config}),
  }), force=force)


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def check_shapes(saved: Any, expected: Any, what: str) -> None:
  """Raises ValueError naming the first parameter whose shape differs."""
  def leaves(tree):
    return {_path_name(p): x
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

  saved_leaves, expected_leaves = leaves(saved), leaves(expected)
  for name, leaf in expected_leaves.items():
    if name not in saved_leaves:
      raise ValueError(f"{what}: the checkpoint has no {name!r}; it was "
                       "written by a different model.")
    saved_shape = tuple(saved_leaves[name].shape)
    if saved_shape != tuple(np.shape(leaf)):
      raise ValueError(
          f"{what}: parameter {name!r} has shape {saved_shape} in the "
          f"checkpoint but {tuple(np.shape(leaf))} in this model; the "
          "checkpoint was written by a different model configuration.")
  extra = set(saved_leaves) - set(expected_leaves)
  if extra:
    raise ValueError(f"{what}: the checkpoint has parameters this model "
                     f"lacks, e.g. {sorted(extra)[0]!r}.")


def restore_model(manager: ocp.CheckpointManager, step: int,
                  abstract_model: Any) -> Any:
  """Restores the model item, after checking every shape against the model."""
  saved = manager.item_metadata(step)[MODEL]
  check_shapes(saved, abstract_model, f"checkpoint {manager.directory}/{step}")
  restored = manager.restore(step, args=ocp.args.Composite(**{
      MODEL: ocp.args.StandardRestore(abstract_model)}))
  return restored[MODEL]


def restore_optimizer(manager: ocp.CheckpointManager, step: int,
                      abstract_opt_state: Any,
                      optimizer_config: dict) -> Optional[Any]:
  """The saved optimizer state, or None if another optimizer wrote it."""
  meta = manager.restore(step, args=ocp.args.Composite(**{
      META: ocp.args.JsonRestore()}))[META]
  if meta.get("optimizer") != optimizer_config:
    logging.warning(
        "Checkpoint %s/%d was written with optimizer %s; this run uses %s. "
        "Parameters and batch statistics carry over; the optimizer state "
        "starts fresh.", manager.directory, step, meta.get("optimizer"),
        optimizer_config)
    return None
  restored = manager.restore(step, args=ocp.args.Composite(**{
      OPT_STATE: ocp.args.StandardRestore(abstract_opt_state)}))
  return restored[OPT_STATE]
