"""A run's record in its workdir, and reading a finished run back.

The config a run used is recorded as `config.json`, written at the start of
every run (command-line overrides included), so a workdir alone says what
was trained: `load_config(workdir)` gives the config back and
`load_variables(workdir)` a stage's trained variables, for `make_policy`.

A rerun in the same workdir must be the same run: the same models, the same
data set, and stages in the same order (`run_stages` may drop or add stages,
e.g. rerun only the policy stage, or add the classifier after it; a
disjoint or reordered list, such as DRAM's stages in a Saccader's workdir,
is another run).
Anything else (lengths, optimizer, schedule, evaluation, logging, where the
data are read from) may change between runs; the changes are logged.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from saccader_jax import checkpoints
from saccader_jax import config_keys
from saccader_jax import errors
from saccader_jax import models
from saccader_jax import paths
from saccader_jax import stages

CONFIG_FILE = "config.json"

# Keys of config.dataset that say where and how the data are read, not what
# they are.
_DATASET_READING_KEYS = ("data_dir", "source_dir", "cache", "prefetch",
                         "num_threads", "read_threads", "read_latency_ms",
                         "train_split", "dev_split", "test_split")


def _plain(config: ml_collections.ConfigDict) -> dict:
  """config as JSON's types (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def _tuples(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _defines_the_run(path: str) -> bool:
  """Whether a change at this dotted path makes another run."""
  top, _, rest = path.partition(".")
  if top in config_keys.model_fields():
    return True
  if top == "dataset":
    return rest not in _DATASET_READING_KEYS
  return False


def _one_within_the_other(a: Any, b: Any) -> bool:
  """Whether one list's stages appear in the other, in the same order."""
  if not (isinstance(a, list) and isinstance(b, list)):
    return False
  shorter, longer = sorted((a, b), key=len)
  remaining = iter(longer)
  return bool(shorter) and all(stage in remaining for stage in shorter)


def _show(value: Any) -> str:
  return repr(tuple(value) if isinstance(value, list) else value)


def load_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
  """The config of the run recorded in workdir (local or a URL)."""
  recorded = _read_record(workdir)
  if recorded is None:
    raise errors.CheckpointError(
        f"{paths.absolute_path(workdir) / CONFIG_FILE} does not exist: "
        f"{workdir} holds no recorded run (runs write it when they start); "
        "pass the config the job ran with.")
  return recorded


def _read_record(workdir: epath.PathLike
                 ) -> Optional[ml_collections.ConfigDict]:
  """workdir's recorded config, or None where it records none."""
  path = paths.absolute_path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def differences(recorded: ml_collections.ConfigDict,
                config: ml_collections.ConfigDict
                ) -> tuple[list[str], list[str]]:
  """(changes that make another run, changes allowed between runs), each
  a list of "path: old -> new" lines."""
  old, new = _flat(_plain(recorded)), _flat(_plain(config))
  refused, allowed = [], []
  # config.model first: other model fields (the classnet's Saccader) may
  # share it.
  for path in sorted(set(old) | set(new),
                     key=lambda p: (not p.startswith("model."), p)):
    before, after = old.get(path, "(absent)"), new.get(path, "(absent)")
    if before == after:
      continue
    line = f"{path}: {_show(before)} -> {_show(after)}"
    if path == "run_stages":
      same_run = _one_within_the_other(before, after)
      (allowed if same_run else refused).append(line)
    else:
      (refused if _defines_the_run(path) else allowed).append(line)
  return refused, allowed


def reuse_problems(recorded: ml_collections.ConfigDict,
                   config: ml_collections.ConfigDict, stages: Sequence[str],
                   same_settings: bool = True) -> list[str]:
  """Why a run of `config` may not take over the finished `stages` of the
  recorded run, as "path: old -> new" lines (none: it may): another model
  or data set, another seed or batch size, and with same_settings any
  change to those stages' own settings (config.stages.<name>)."""
  refused, _ = differences(recorded, config)
  problems = [line for line in refused if not line.startswith("run_stages")]
  old, new = _flat(_plain(recorded)), _flat(_plain(config))
  compared = {"seed", "batch_size"}
  if same_settings:
    compared |= {path for path in set(old) | set(new)
                 if any(path.startswith(f"stages.{name}.")
                        for name in stages)}
  for path in sorted(compared):
    before, after = old.get(path, "(absent)"), new.get(path, "(absent)")
    if before != after:
      problems.append(f"{path}: {_show(before)} -> {_show(after)}")
  return problems


def check_rerun(workdir: epath.Path, config: ml_collections.ConfigDict
                ) -> None:
  """Raises ConfigError if workdir records another run; logs what changed
  since the recorded one."""
  recorded = _read_record(workdir)
  if recorded is None:
    return
  refused, allowed = differences(recorded, config)
  if refused:
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    raise errors.ConfigError([
        f"workdir {workdir} holds another run ({refused[0]}{more}): models, "
        "data set and run_stages must match its config.json. Choose another "
        "--workdir, or run with the recorded config."])
  if allowed:
    logging.info("Config changed since this workdir's last run: %s.",
                 "; ".join(allowed))


def record(workdir: epath.Path, config: ml_collections.ConfigDict) -> None:
  """Writes config as workdir/config.json (process 0 calls this)."""
  try:
    (workdir / CONFIG_FILE).write_text(
        config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  except Exception as e:  # pylint: disable=broad-except
    raise errors.WriteError(f"could not write {workdir / CONFIG_FILE}: "
                            f"{e}") from e


def load_variables(workdir: epath.PathLike,
                   config: Optional[ml_collections.ConfigDict] = None,
                   stage: Optional[str] = None, step: Optional[int] = None,
                   sharding: Optional[jax.sharding.Sharding] = None) -> dict:
  """A trained model's variables from a workdir, on this process's devices.

  Works whatever devices the training job ran on.

  Args:
    workdir: the --workdir of a training job (local or a URL).
    config: that job's config (it defines the model); default the config
      recorded in workdir (`load_config`).
    stage: whose checkpoints: default the last of config.run_stages, i.e.
      the final model.
    step: which checkpoint; default the stage's newest.
    sharding: where the arrays go; default replicated over all devices.

  Returns:
    {"params": ..., "batch_stats": ...}, ready for `make_policy`.
  """
  if config is None:
    config = load_config(workdir)
  stage = stage or config.run_stages[-1]
  directory = paths.absolute_path(workdir) / "checkpoints" / stage
  if not directory.exists():
    raise errors.CheckpointError(f"No checkpoints of stage {stage!r}: "
                                 f"{directory} does not exist.")
  if sharding is None:
    sharding = jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.asarray(jax.devices()), ("data",)),
        jax.sharding.PartitionSpec())
  field = stages.resolve_stage(config, stage).field
  manager = checkpoints.create_manager(directory, max_to_keep=1,
                                       async_save=False, read_only=True)
  try:
    saved = manager.all_steps()
    if step is None:
      if not saved:
        raise errors.CheckpointError(f"{directory} holds no checkpoint.")
      step = max(saved)
    elif step not in saved:
      raise errors.CheckpointError(f"{directory} has no checkpoint of step "
                                   f"{step}; it has {sorted(saved)}.")
    abstract = checkpoints.with_sharding(
        {"step": jax.ShapeDtypeStruct((), jnp.int32),
         **models.abstract_variables(config, field)}, sharding)
    model = checkpoints.restore_model(manager, step, abstract)
  finally:
    manager.close()
  return {"params": model["params"], "batch_stats": model["batch_stats"]}
