"""Saccader: hard visual attention (Elsayed, Kornblith & Le, NeurIPS 2019).

The public names below load on first use: `python -m saccader_jax.main`
imports this package before its entry point runs, and the entry point may
restart the process (`runtime.reexec_with_tcmalloc`) before TensorFlow and
JAX are worth loading.
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING

# Public name -> the module that defines it.
_EXPORTS = {
    "load_variables": "saccader_jax.checkpoints",
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
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
  from saccader_jax.checkpoints import load_variables
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
