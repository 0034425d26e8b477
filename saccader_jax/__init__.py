"""Saccader: hard visual attention (Elsayed, Kornblith & Le, NeurIPS 2019).

The public names below load on first use: `python -m saccader_jax.main`
imports this package before its entry point runs, and the entry point may
restart the process (`allocator.reexec_with_tcmalloc`) before TensorFlow and
JAX are worth loading.

Where things live:
  models/, policy.py, policies/      the networks and glimpse policies;
  objectives/, losses.py,            the stages by name, their losses, the
  optimizers.py                      optimizers and schedules by name;
  data/, evaluators/, evaluation.py  data sets, analyses of any policy;
  stages.py                          a stage's name resolved, once, into
                                     its value (`resolve_stage`);
  opening.py                         the one way a run is opened (config
                                     checked, data prepared, workdir leased);
  job.py, stage_run.py,              a training job: what stages share, a
  stage_start.py, loop.py,           stage in the job, where it starts, its
  run_evaluation.py, train.py        steps, its evaluation, the stage order;
  checkpoints.py, run_record.py      storage; a run's record and reading a
                                     finished run back;
  research.py                        `Run`: research code drives a run;
  pretrained.py                      the models shipped with the package
                                     (their workdirs: pretrained_workdirs/);
  config_checks.py, config_keys.py   the whole config checked before a run;
  cpu_kernels.py, allocator.py,      the process set up before the first
  library_setup.py                   computation;
  main.py                            the entry point.
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING

# Public name -> the module that defines it.
_EXPORTS = {
    "load_variables": "saccader_jax.run_record",
    "class_names": "saccader_jax.data.input_pipeline",
    "preprocess_images": "saccader_jax.data.input_pipeline",
    "read_examples": "saccader_jax.data.input_pipeline",
    "draw_glimpses": "saccader_jax.evaluators.glimpses",
    "create_model": "saccader_jax.models",
    "DRAM": "saccader_jax.models",
    "Saccader": "saccader_jax.models",
    "SaccaderOutput": "saccader_jax.models",
    "make_policy": "saccader_jax.policy",
    "Policy": "saccader_jax.policy",
    "PolicyOutput": "saccader_jax.policy",
    "RolloutPolicy": "saccader_jax.policy",
    "load_config": "saccader_jax.run_record",
    "load_pretrained": "saccader_jax.pretrained",
    "Run": "saccader_jax.research",
    "TrainedStage": "saccader_jax.research",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
  from saccader_jax.run_record import load_variables
  from saccader_jax.data.input_pipeline import class_names
  from saccader_jax.data.input_pipeline import preprocess_images
  from saccader_jax.data.input_pipeline import read_examples
  from saccader_jax.evaluators.glimpses import draw_glimpses
  from saccader_jax.models import create_model
  from saccader_jax.models import DRAM
  from saccader_jax.models import Saccader
  from saccader_jax.models import SaccaderOutput
  from saccader_jax.policy import make_policy
  from saccader_jax.policy import Policy
  from saccader_jax.policy import PolicyOutput
  from saccader_jax.policy import RolloutPolicy
  from saccader_jax.run_record import load_config
  from saccader_jax.pretrained import load_pretrained
  from saccader_jax.research import Run
  from saccader_jax.research import TrainedStage


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
  elif not name.startswith("_") and importlib.util.find_spec(
      f"{__name__}.{name}") is not None:
    value = importlib.import_module(f"{__name__}.{name}")  # a submodule
  else:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  globals()[name] = value  # Later look-ups skip this function.
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_EXPORTS))
