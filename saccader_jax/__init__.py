"""Saccader: hard visual attention (Elsayed, Kornblith & Le, NeurIPS 2019)."""

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

__all__ = ["DRAM", "Policy", "PolicyOutput", "RolloutPolicy", "Saccader",
           "SaccaderOutput", "class_names", "create_model", "draw_glimpses",
           "load_config", "load_variables", "make_policy",
           "preprocess_images", "read_examples"]
