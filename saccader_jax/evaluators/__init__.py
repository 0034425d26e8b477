"""Evaluators of any glimpse policy, chosen by name in config.evals.

    config.evals = {"accuracy": {}, "coverage": {},
                    "occlusion": {"classifier": "classifier"},
                    "glimpses": {"num_images": 8}}

A new evaluation is one file here (a `base.Evaluator` subclass) and its
entry in EVALUATORS.
"""

from __future__ import annotations

import ml_collections

from saccader_jax.evaluators import base
from saccader_jax.evaluators.accuracy import Accuracy
from saccader_jax.evaluators.coverage import Coverage
from saccader_jax.evaluators.glimpses import Glimpses
from saccader_jax.evaluators.occlusion import Occlusion

Context = base.Context
Evaluator = base.Evaluator

EVALUATORS: dict[str, type[base.Evaluator]] = {
    cls.name: cls for cls in (Accuracy, Coverage, Occlusion, Glimpses)}


def create_evaluators(evals: ml_collections.ConfigDict,
                      num_glimpses: int) -> list[base.Evaluator]:
  """One evaluator per entry of config.evals, in order."""
  created = []
  for name, config in evals.items():
    if name not in EVALUATORS:
      raise ValueError(f"Unknown evaluator {name!r}; valid: "
                       f"{sorted(EVALUATORS)}.")
    created.append(EVALUATORS[name](config or ml_collections.ConfigDict(),
                                    num_glimpses))
  return created


__all__ = ["Accuracy", "Context", "Coverage", "EVALUATORS", "Evaluator",
           "Glimpses", "Occlusion", "create_evaluators"]
