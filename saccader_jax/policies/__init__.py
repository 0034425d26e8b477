"""Baseline glimpse policies of section 4.1, by name, as `Policy` objects.

    policy = make_baseline_policy("sobel_mean", config, variables)
    out = policy(images, num_glimpses=6)

Each reads its glimpse logits from a trained BagNet: `variables` are a
Saccader's (the `representation` stage's final checkpoint, or the final
model's). A new baseline is a file here and an entry in BASELINES.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import ml_collections

from saccader_jax import models
from saccader_jax.policies import diverse_ordered_logits
from saccader_jax.policies import ordered_logits
from saccader_jax.policies import predicted_class
from saccader_jax.policies import sobel
from saccader_jax.policies import uniform_random
from saccader_jax.policy import check_variables
from saccader_jax.policy import model_of
from saccader_jax.policy import Policy

# name -> (model -> GlimpseFn, whether it needs a key)
BASELINES: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "ordered_logits": (ordered_logits.glimpse_fn, False),
    "sobel_mean": (lambda model: sobel.glimpse_fn(model, variance=False),
                   False),
    "sobel_variance": (lambda model: sobel.glimpse_fn(model, variance=True),
                       False),
    "random": (uniform_random.glimpse_fn, True),
    # Greedy rules beyond the paper's, over the same BagNet: what a policy
    # that ranks locations otherwise could reach.
    "predicted_probability": (
        lambda model: predicted_class.glimpse_fn(
            model, predicted_class.probability_scores), False),
    "predicted_margin": (
        lambda model: predicted_class.glimpse_fn(
            model, predicted_class.margin_scores), False),
    "ordered_logits_diverse": (diverse_ordered_logits.glimpse_fn, False),
}


def make_baseline_policy(name: str, config: ml_collections.ConfigDict,
                         variables: Any,
                         num_channels: Optional[int] = None) -> Policy:
  """The baseline `name` over the BagNet of a Saccader.

  Args:
    name: one of BASELINES.
    config: a full config (model, dataset) or a Saccader model config.
    variables: the Saccader's {"params", "batch_stats"}; only the
      representation network is read.
    num_channels: image channels; read from a full config, else from the
      variables (checked against the model; None: given at each call).

  Returns:
    A Policy (deterministic ones ignore a key; "random" requires one).
  """
  if name not in BASELINES:
    raise ValueError(f"Unknown baseline policy {name!r}; valid: "
                     f"{sorted(BASELINES)}.")
  model, num_channels, _ = model_of(config, num_channels)
  if not isinstance(model, models.Saccader):
    raise ValueError(f"Baselines read a Saccader's BagNet; the config's "
                     f"model is a {type(model).__name__}.")
  make_fn, requires_key = BASELINES[name]
  num_channels = check_variables(model, variables, num_channels)
  return Policy(make_fn(model), variables, model.grid_geometry,
                num_channels, name=f"{name} policy",
                requires_key=requires_key)


__all__ = ["BASELINES", "make_baseline_policy"]
