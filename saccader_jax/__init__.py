"""Saccader: hard visual attention (Elsayed, Kornblith & Le, NeurIPS 2019)."""

from saccader_jax.checkpoints import load_variables
from saccader_jax.models import create_model
from saccader_jax.models import DRAM
from saccader_jax.models import Saccader
from saccader_jax.models import SaccaderOutput
from saccader_jax.policy import make_policy
from saccader_jax.policy import Policy
from saccader_jax.policy import PolicyOutput
from saccader_jax.policy import RolloutPolicy
from saccader_jax.run_record import load_config

__all__ = ["DRAM", "Policy", "PolicyOutput", "RolloutPolicy", "Saccader",
           "SaccaderOutput",
           "create_model", "load_config", "load_variables", "make_policy"]
