"""Checks a whole training config before any data is built or step runs.

Every problem is one line naming the field, its value and what is valid:

    config.stages.location.num_glimpses=200: must be an integer in [1, 81]
    (the locations of the 9x9 grid of a 64x64 image).

`check_config` raises `ConfigError` with all of them at once, so a job with
several mistakes fails once, in seconds, instead of after hours of stage 1.
Registries (stages, models, datasets, optimizers, schedules) are read here,
not copied, so a new entry is valid as soon as it is registered.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Optional, Sequence

import ml_collections

from saccader_jax import chunking
from saccader_jax import config_keys
from saccader_jax import errors
from saccader_jax import losses
from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import optimizers
from saccader_jax import cpu_kernels

NONFINITE_POLICIES = ("stop", "skip")
# The sections every job reads; configs/default.py alone lacks the data set
# and model that a data set config adds.
REQUIRED_SECTIONS = ("dataset", "model", "optimizer", "schedule", "stages")


ConfigError = errors.ConfigError


class Problems:
  """Collects one-line problems about config fields."""

  def __init__(self):
    self.lines: list[str] = []

  def add(self, field: str, value: Any, requirement: str) -> None:
    self.lines.append(f"config.{field}={value!r}: {requirement}.")

  def choice(self, field: str, value: Any, valid: Iterable[str]) -> bool:
    valid = sorted(valid)
    if value not in valid:
      self.add(field, value, f"must be one of {valid}")
      return False
    return True

  def integer(self, field: str, value: Any, low: int,
              high: Optional[int] = None, why: str = "") -> bool:
    is_int = (isinstance(value, numbers.Integral)
              and not isinstance(value, bool))
    if is_int and low <= value and (high is None or value <= high):
      return True
    bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
    self.add(field, value, f"must be an integer {bound}{why}")
    return False

  def number(self, field: str, value: Any, low: float = 0.0,
             strict: bool = False) -> bool:
    is_number = (isinstance(value, numbers.Real)
                 and not isinstance(value, bool) and math.isfinite(value))
    if is_number and (value > low if strict else value >= low):
      return True
    self.add(field, value,
             f"must be a finite number {'>' if strict else '>='} {low}")
    return False


def _unknown_keys(problems: Problems,
                  config: ml_collections.ConfigDict) -> None:
  """A key no code reads: a misspelling would otherwise be ignored."""
  for path, nearest in config_keys.unknown_keys(config):
    hint = f"; the nearest is config.{nearest}" if nearest else ""
    problems.lines.append(f"config.{path}: no such key, nothing reads "
                          f"it{hint}.")


def _numerics(problems: Problems, field: str,
              model_config: ml_collections.ConfigDict) -> bool:
  """Whether the dtype, matmul precision and batch-norm statistics of
  config.<field> are valid (each invalid one recorded)."""
  valid = [problems.choice(f"{field}.{name}",
                           model_config.get(name,
                                            models.DEFAULT_NUMERICS[name]),
                           choices)
           for name, choices in models.NUMERICS.items()]
  return all(valid)


def _shape_only(model_config: ml_collections.ConfigDict
                ) -> ml_collections.ConfigDict:
  """A copy of a model config for its geometry, which depends neither on the
  numerics (checked by `_numerics`) nor on the classes (0 while the data
  set that says how many is unreadable: its own check reports why)."""
  model_config = model_config.copy_and_resolve_references()
  with model_config.unlocked():
    model_config.update(models.DEFAULT_NUMERICS)
    if model_config.get("num_classes") == 0:
      model_config.num_classes = 1
    if "projection_norm" in model_config.get("representation", {}):
      model_config.representation.projection_norm = "shortcut"
  return model_config


def _grid(config: ml_collections.ConfigDict, problems: Problems):
  """The model's grid on the configured images, or None (problem recorded)."""
  if not problems.choice("model.name", config.model.get("name"),
                         models.MODELS):
    return None
  _numerics(problems, "model", config.model)
  representation = config.model.get("representation")
  if representation is not None:
    problems.choice("model.representation.projection_norm",
                    representation.get("projection_norm", "shortcut"),
                    models.PROJECTION_NORMS)
  size = config.dataset.get("image_size")
  if not problems.integer("dataset.image_size", size, 1):
    return None
  model = models.create_model(_shape_only(config.model))
  if not hasattr(model, "grid_geometry"):
    return None   # a model that glimpses anywhere (DRAM): no location grid
  grid = model.grid_geometry(size, size)
  if grid.num_locations == 0 or size < grid.receptive_field:
    problems.add("dataset.image_size", size,
                 f"must be at least the receptive field of the model, "
                 f"{grid.receptive_field} pixels")
    return None
  return grid


def _glimpses(problems: Problems, field: str, value: Any, grid) -> None:
  if grid is None:
    problems.integer(field, value, 1)
    return
  problems.integer(
      field, value, 1, grid.num_locations,
      f" (the locations of the {grid.grid_height}x{grid.grid_width} grid "
      f"of a {grid.image_height}x{grid.image_width} image; a location is "
      "glimpsed at most once)")


def _batch_size(problems: Problems, field: str, value: Any,
                num_devices: int, num_processes: int) -> None:
  if not problems.integer(field, value, 1):
    return
  divisor = math.lcm(num_devices, num_processes)
  if value % divisor:
    problems.add(field, value,
                 f"must be divisible by the {num_devices} devices of "
                 f"{num_processes} process(es); e.g. "
                 f"{max(divisor, value - value % divisor)}")


def _stage(problems: Problems, config: ml_collections.ConfigDict,
           name: str, grid) -> None:
  prefix = f"stages.{name}"
  stage_config = config.stages[name]
  problems.number(f"{prefix}.learning_rate",
                  stage_config.get("learning_rate"), strict=True)
  steps = stage_config.get("num_steps", 0)
  epochs = stage_config.get("num_epochs", 0.0)
  steps_ok = problems.integer(f"{prefix}.num_steps", steps, 0)
  epochs_ok = problems.number(f"{prefix}.num_epochs", epochs)
  if steps_ok and epochs_ok and not steps and not epochs:
    problems.add(f"{prefix}.num_steps", steps,
                 f"or config.{prefix}.num_epochs must be positive")
  problems.number(f"{prefix}.l2_weight", stage_config.get("l2_weight", 0.0))
  if stage_config.get("grad_clip_norm") is not None:
    problems.number(f"{prefix}.grad_clip_norm", stage_config.grad_clip_norm)
  problems.choice(f"{prefix}.l2_mode",
                  stage_config.get("l2_mode", "normalized"), losses.L2_MODES)
  stage = objectives.get_stage(name)
  for field, valid in stage.choices.items():
    problems.choice(f"{prefix}.{field}",
                    stage_config.get(field, stage.defaults.get(field)), valid)
  # Glimpse counts are bounded by config.model's grid; other policy models
  # (DRAM) look anywhere, any number of times.
  stage_grid = grid if stage.model_field == "model" else None
  for field in stage.glimpse_fields:
    _glimpses(problems, f"{prefix}.{field}", stage_config.get(field),
              stage_grid)
  for field in stage.positive_integer_fields:
    problems.integer(f"{prefix}.{field}", stage_config.get(field), 1)
  for field in stage.weight_fields:
    problems.number(f"{prefix}.{field}", stage_config.get(field))


def _stage_models(problems: Problems, config: ml_collections.ConfigDict,
                  run_stages: Sequence[str]) -> None:
  """Each stage's model (beyond config.model, checked with the grid)."""
  fields = {objectives.STAGES[name].model_field for name in run_stages
            if name in objectives.STAGES} - {"model"}
  for field in sorted(fields):
    if field not in config:
      users = [n for n in run_stages if n in objectives.STAGES
               and objectives.STAGES[n].model_field == field]
      problems.add(field, None, f"must be a model config: stage(s) {users} "
                   "train it")
      continue
    if (problems.choice(f"{field}.name", config[field].get("name"),
                        models.MODELS)
        and _numerics(problems, field, config[field])):
      model = models.create_model(_shape_only(config[field]))
      size = config.dataset.get("image_size")
      if (hasattr(model, "min_image_size") and isinstance(size, int)
          and size < model.min_image_size()):
        problems.add(f"{field}.glimpse_size", model.min_image_size(),
                     f"must be at most dataset.image_size ({size})")


def _initial_models(problems: Problems, config: ml_collections.ConfigDict,
                    run_stages: Sequence[str],
                    pretrained_fields: Sequence[str]) -> None:
  """A stage that starts from other fields' models (Stage.init_from) needs
  them trained earlier in run_stages (or given pretrained), with the same
  model configs."""
  for index, name in enumerate(run_stages):
    stage = objectives.STAGES.get(name)
    if stage is None or not stage.init_from:
      continue
    earlier = {objectives.STAGES[n].model_field for n in run_stages[:index]
               if n in objectives.STAGES} | set(pretrained_fields)
    if stage.model_field in earlier:
      continue   # it continues from an earlier stage of its own field
    for part, source in stage.init_from.items():
      if source not in earlier:
        problems.add("run_stages", tuple(run_stages),
                     f"must train config.{source} before {name!r}, which "
                     f"starts its {part!r} from it")
      elif (stage.model_field in config and part in config[stage.model_field]
            and config[stage.model_field][part].to_dict()
            != config[source].to_dict()):
        problems.add(f"{stage.model_field}.{part}", "...",
                     f"must equal config.{source}, whose trained variables "
                     "it starts from")


def _evals(problems: Problems, config: ml_collections.ConfigDict,
           run_stages: Sequence[str]) -> None:
  from saccader_jax import evaluators  # pylint: disable=g-import-not-at-top
  evals = config.get("evals", {})
  for name, eval_config in evals.items():
    if name not in evaluators.EVALUATORS:
      problems.add("evals", sorted(evals), f"{name!r} is not an evaluator; "
                   f"valid: {sorted(evaluators.EVALUATORS)}")
      continue
    evaluator = evaluators.EVALUATORS[name](
        eval_config or ml_collections.ConfigDict(), 1)
    for stage in evaluator.references:
      if stage not in run_stages or not (
          stage in objectives.STAGES and objectives.STAGES[stage].reference):
        problems.add(f"evals.{name}", eval_config.to_dict() if hasattr(
            eval_config, "to_dict") else eval_config,
                     f"needs the classifier trained by stage {stage!r}, "
                     "which must be in config.run_stages")
    for key, value, requirement in evaluator.config_problems():
      problems.add(f"evals.{name}.{key}", value, requirement)


def _test_baselines(problems: Problems, config: ml_collections.ConfigDict,
                    run_stages: Sequence[str]) -> None:
  from saccader_jax import policies  # pylint: disable=g-import-not-at-top
  names = config.get("test_baselines", ())
  if isinstance(names, str) or not isinstance(names, Sequence):
    problems.add("test_baselines", names,
                 f"must be a tuple of baseline names from "
                 f"{sorted(policies.BASELINES)}")
    return
  for name in names:
    if name not in policies.BASELINES:
      problems.add("test_baselines", tuple(names),
                   f"{name!r} is not a baseline; valid: "
                   f"{sorted(policies.BASELINES)}")
  if len(set(names)) != len(names):
    problems.add("test_baselines", tuple(names), "names a baseline twice")
  if names and (config.model.get("name") != "saccader"
                or "representation" not in run_stages):
    problems.add("test_baselines", tuple(names),
                 "the baselines read the BagNet that stage 'representation' "
                 "trains: needs model.name='saccader' and 'representation' "
                 "in config.run_stages")


# The model configs that classify the data set's classes.
_CLASSIFYING_FIELDS = ("model", "classifier", "dram")


def resolve_num_classes(config: ml_collections.ConfigDict) -> None:
  """Sets each classifying model's num_classes 0 ("from the data") to the
  number of classes of config.dataset, where its data set says (in
  place)."""
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  spec = input_pipeline.DATASETS.get(config.dataset.get("name"))
  if spec is None or spec.num_classes is None:
    return
  fields = [f for f in _CLASSIFYING_FIELDS
            if isinstance(config.get(f), ml_collections.ConfigDict)
            and config[f].get("num_classes") == 0]
  if not fields:
    return
  try:
    count = spec.num_classes(config.dataset)
  except Exception:  # pylint: disable=broad-except
    return   # the data set's own check reports why
  for field in fields:
    config[field].num_classes = count


def _dataset(problems: Problems, config: ml_collections.ConfigDict,
             spec) -> None:
  """The data set's own settings, and the models' classes against the
  data's."""
  if spec.config_problems is not None:
    own = spec.config_problems(config.dataset)
    problems.lines.extend(own)
    if own:
      return
  if spec.num_classes is None:
    return
  count = spec.num_classes(config.dataset)
  for field in _CLASSIFYING_FIELDS:
    section = config.get(field)
    if not isinstance(section, ml_collections.ConfigDict):
      continue
    if section.get("num_classes") not in (count, 0, None):
      problems.add(f"{field}.num_classes", section.get("num_classes"),
                   f"the data has {count} classes (set it to {count}, or to "
                   "0: the data's number)")


def _representation_cache(problems: Problems,
                          config: ml_collections.ConfigDict,
                          run_stages: Sequence[str]) -> None:
  """A cache of the frozen representation needs fixed training images."""
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  cache = config.get("cache_frozen_representation", False)
  if not isinstance(cache, bool):
    problems.add("cache_frozen_representation", cache, "must be True or False")
    return
  spec = input_pipeline.DATASETS.get(config.dataset.get("name"))
  if not cache or spec is None or spec.deterministic_train:
    return
  if any(objectives.STAGES[name].freezes_representation(config.stages[name])
         for name in run_stages
         if name in objectives.STAGES and name in config.stages):
    problems.add("cache_frozen_representation", cache,
                 f"needs a data set whose training images are fixed; "
                 f"{config.dataset.name}'s are augmented anew each epoch "
                 "(set it to False)")


def config_problems(config: ml_collections.ConfigDict, num_devices: int = 1,
                    num_processes: int = 1,
                    pretrained_fields: Sequence[str] = ()) -> list[str]:
  """Every problem of a training config, one line each ([] if it can run).

  pretrained_fields: config fields whose trained models the job is given
  (`train.Trainer.open(pretrained=...)`).
  """
  # Imported here: the input pipeline pulls in TensorFlow.
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  problems = Problems()
  missing = [name for name in REQUIRED_SECTIONS
             if not isinstance(config.get(name), ml_collections.ConfigDict)]
  for name in missing:
    problems.lines.append(
        f"config.{name}: missing; a job's config needs this section (start "
        "from a data set config such as "
        "configs/fashion_mnist_whole_items_saccader.py).")
  if missing:
    return problems.lines
  _unknown_keys(problems, config)
  if problems.choice("dataset.name", config.dataset.get("name"),
                     input_pipeline.DATASETS):
    _dataset(problems, config, input_pipeline.DATASETS[config.dataset.name])
  grid = _grid(config, problems)
  problem = optimizers.optimizer_problem(config.optimizer)
  if problem:
    key, value, why = problem
    problems.add(f"optimizer.{key}", value, why)
  problems.number("optimizer.grad_clip_norm",
                  config.optimizer.get("grad_clip_norm", 0.0))
  problems.choice("schedule.name", config.schedule.get("name"),
                  optimizers.SCHEDULES)
  _batch_size(problems, "batch_size", config.get("batch_size"), num_devices,
              num_processes)
  _batch_size(problems, "eval_batch_size", config.get("eval_batch_size"),
              num_devices, num_processes)
  _glimpses(problems, "eval_glimpses", config.get("eval_glimpses"), grid)

  run_stages = config.get("run_stages")
  if (isinstance(run_stages, str) or not isinstance(run_stages, Sequence)
      or not run_stages):
    problems.add("run_stages", run_stages,
                 f"must be a non-empty tuple of stage names from "
                 f"{sorted(objectives.STAGES)}")
    run_stages = ()
  for name in run_stages:
    if name not in objectives.STAGES:
      problems.add("run_stages", tuple(run_stages),
                   f"{name!r} is not a stage; valid: "
                   f"{sorted(objectives.STAGES)}")
      continue
    if name not in config.stages:
      problems.add("stages", sorted(config.stages),
                   f"has no entry for the stage {name!r} in run_stages")
      continue
    _stage(problems, config, name, grid)
  _initial_models(problems, config, run_stages, pretrained_fields)
  if len(set(run_stages)) != len(run_stages):
    problems.add("run_stages", tuple(run_stages), "names a stage twice")
  _stage_models(problems, config, run_stages)
  _evals(problems, config, run_stages)
  _test_baselines(problems, config, run_stages)

  for field in ("log_every_steps", "checkpoint_every_steps",
                "keep_checkpoints"):
    problems.integer(field, config.get(field), 1)
  for field in ("eval_every_steps", "eval_max_examples", "profile_steps"):
    problems.integer(field, config.get(field, 0), 0)
  problems.integer("device_prefetch", config.get("device_prefetch", 2), 1)
  cache_dir = config.get("compilation_cache_dir", "")
  if not isinstance(cache_dir, str):
    problems.add("compilation_cache_dir", cache_dir,
                 "must be a path, or '' for <workdir>/compilation_cache, or "
                 "'none' for no cache")
  problems.integer("dataset.read_threads",
                   config.dataset.get("read_threads", 0), 0)
  problems.number("dataset.read_latency_ms",
                  config.dataset.get("read_latency_ms", 0.0))
  on_device = config.dataset.get("normalize_on_device", True)
  if not isinstance(on_device, bool):
    problems.add("dataset.normalize_on_device", on_device,
                 "must be True (uint8 pixels cross to the devices and are "
                 "normalised there) or False (normalised float32 on the host)")
  problems.choice("on_nonfinite", config.get("on_nonfinite", "stop"),
                  NONFINITE_POLICIES)
  fusions = config.get("cpu_ynn_fusions", "")
  if not isinstance(fusions, str) or cpu_kernels.unknown_ynn_fusion_kinds(fusions):
    problems.add("cpu_ynn_fusions", fusions,
                 f"must be 'auto' or a comma-separated subset of "
                 f"{list(cpu_kernels.YNN_FUSION_KINDS)} (or '')")
  _representation_cache(problems, config, run_stages)
  chunk = config.get("eval_chunk_size", chunking.AUTO)
  # None means the whole batch to the API; a config says so with 0.
  if chunk is None or not chunking.is_valid(chunk):
    problems.add("eval_chunk_size", chunk,
                 "must be 'auto' or an integer >= 0 (0: whole batches)")
  return problems.lines


def check_config(config: ml_collections.ConfigDict, num_devices: int = 1,
                 num_processes: int = 1,
                 pretrained_fields: Sequence[str] = ()) -> None:
  """Raises ConfigError listing every problem of the config. First sets a
  model's num_classes 0 to the data's number of classes, where the data set
  says (`resolve_num_classes`; in place, so that the job records the
  number)."""
  if isinstance(config.get("dataset"), ml_collections.ConfigDict):
    resolve_num_classes(config)
  problems = config_problems(config, num_devices, num_processes,
                             pretrained_fields)
  if problems:
    raise ConfigError(problems)
