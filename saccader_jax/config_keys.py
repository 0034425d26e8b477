"""The keys a training config may have; each one is read by the code.

Each registry declares the keys of its own sections: a stage
(`objectives.Stage.config_keys`), a model (`models.MODEL_KEYS`), a data set
(`data.common.DATASET_KEYS` and its `DatasetSpec.config_keys`), an evaluator
(`Evaluator.config_keys`), the optimizer and the schedule
(`optimizers.OPTIMIZER_KEYS`, `SCHEDULE_KEYS`). Any other key is a mistake
(a misspelling, a setting of another version) that the code would ignore
without a word: `unknown_keys` finds each with the nearest valid key, and
`config_checks.check_config` reports them before anything runs. The same
lists are what tests/test_config_keys.py checks the code reads.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterator, Optional

import ml_collections

from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import optimizers

TOP_LEVEL_KEYS = (
    "seed", "batch_size", "eval_batch_size", "eval_chunk_size",
    "cpu_ynn_fusions", "dataset", "optimizer", "schedule", "run_stages",
    "stages", "on_nonfinite", "eval_glimpses", "evals", "log_every_steps",
    "eval_every_steps", "eval_at_stage_end", "eval_max_examples",
    "checkpoint_every_steps", "keep_checkpoints", "async_checkpoints",
    "profile_steps", "cache_frozen_representation", "device_prefetch",
    "compilation_cache_dir", "test_baselines")

# A section whose keys are not checked here: its name is unknown (reported
# by config_checks with the valid names).
_UNCHECKED = object()


def model_fields() -> tuple[str, ...]:
  """Top-level fields that hold a model config: "model" and every stage's."""
  return tuple(dict.fromkeys(
      ("model",) + tuple(s.model_field for s in objectives.STAGES.values())))


def _model_schema(section: Any) -> Any:
  name = section.get("name") if isinstance(
      section, ml_collections.ConfigDict) else None
  return models.MODEL_KEYS.get(name, _UNCHECKED)


def _dataset_schema(section: Any) -> Any:
  from saccader_jax.data import common  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  spec = input_pipeline.DATASETS.get(section.get("name"))
  if spec is None:
    return _UNCHECKED
  return dict.fromkeys(common.DATASET_KEYS + spec.config_keys)


def _evals_schema(section: Any) -> Any:
  from saccader_jax import evaluators  # pylint: disable=g-import-not-at-top
  # An unknown evaluator's name is config_checks' to report (with the list).
  return {name: (dict.fromkeys(evaluators.EVALUATORS[name].config_keys)
                 if name in evaluators.EVALUATORS else _UNCHECKED)
          for name in section}


def schema(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keys config may have, as a tree: None for a value, a dict for a
  section, models.MODEL for a model config (keys by its name)."""
  tree: dict[str, Any] = dict.fromkeys(TOP_LEVEL_KEYS)
  tree.update(dict.fromkeys(model_fields(), models.MODEL))
  tree["optimizer"] = dict.fromkeys(optimizers.OPTIMIZER_KEYS)
  tree["optimizer"]["kwargs"] = _UNCHECKED   # the optax factory's to check
  tree["schedule"] = dict.fromkeys(optimizers.SCHEDULE_KEYS)
  tree["stages"] = {name: dict.fromkeys(stage.config_keys)
                    for name, stage in objectives.STAGES.items()}
  if isinstance(config.get("dataset"), ml_collections.ConfigDict):
    tree["dataset"] = _dataset_schema(config.dataset)
  if isinstance(config.get("evals"), ml_collections.ConfigDict):
    tree["evals"] = _evals_schema(config.evals)
  return tree


def _walk(section: ml_collections.ConfigDict, keys: Any, prefix: str
          ) -> Iterator[tuple[str, Optional[str]]]:
  if keys is models.MODEL:
    keys = _model_schema(section)
  if keys is _UNCHECKED or not isinstance(keys, dict):
    return
  for key, value in section.items():
    if key not in keys:
      nearest = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
      yield prefix + key, (prefix + nearest[0]) if nearest else None
    elif isinstance(value, ml_collections.ConfigDict):
      yield from _walk(value, keys[key], f"{prefix}{key}.")


def unknown_keys(config: ml_collections.ConfigDict
                 ) -> list[tuple[str, Optional[str]]]:
  """(dotted path, nearest valid dotted path or None) of every key of config
  that no code reads, in the config's order."""
  return list(_walk(config, schema(config), ""))


def all_keys() -> set[str]:
  """Every key name any registry declares (whatever the names chosen)."""
  from saccader_jax import evaluators  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import common  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top

  def names(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
      for key, value in tree.items():
        yield key
        yield from names(value)

  keys = set(TOP_LEVEL_KEYS) | set(model_fields())
  keys |= set(optimizers.OPTIMIZER_KEYS) | set(optimizers.SCHEDULE_KEYS)
  keys |= set(common.DATASET_KEYS)
  for spec in input_pipeline.DATASETS.values():
    keys |= set(spec.config_keys)
  for stage in objectives.STAGES.values():
    keys |= set(stage.config_keys)
  for evaluator in evaluators.EVALUATORS.values():
    keys |= set(evaluator.config_keys)
  for tree in models.MODEL_KEYS.values():
    keys |= set(names(tree))
  return keys
