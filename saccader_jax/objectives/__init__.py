"""Training stages by name: each model family brings its own.

A new stage is a file here with a `STAGES` dict, merged below.
"""

from saccader_jax.objectives import classifier
from saccader_jax.objectives import classnet
from saccader_jax.objectives import dram
from saccader_jax.objectives import saccader
from saccader_jax.objectives.base import LossFn
from saccader_jax.objectives.base import Stage
from saccader_jax.objectives.saccader import FROZEN_REPRESENTATION_BN
from saccader_jax.objectives.saccader import location_loss
from saccader_jax.objectives.saccader import location_params
from saccader_jax.objectives.saccader import policy_loss
from saccader_jax.objectives.saccader import READINGS
from saccader_jax.objectives.saccader import REINFORCE_REDUCTIONS
from saccader_jax.objectives.saccader import REPRESENTATION
from saccader_jax.objectives.saccader import representation_loss

STAGES: dict[str, Stage] = {**saccader.STAGES, **classifier.STAGES,
                            **dram.STAGES, **classnet.STAGES}


def get_stage(name: str) -> Stage:
  if name not in STAGES:
    raise ValueError(f"Unknown stage {name!r}; valid: {sorted(STAGES)}.")
  return STAGES[name]
