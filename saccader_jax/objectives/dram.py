"""DRAM's one training stage: cross entropy + REINFORCE for the locations.

loss = CE + reinforce_weight * REINFORCE + L2 on the glimpse network, the
classification LSTM and the classifier (the location LSTM and the emission
layer are not regularised, as in the original code).

Where the original leaves a choice open, config.stages.dram says:
  cross_entropy_steps: "last" (default: the step-T logits) or "all" (the
    mean of every step's cross entropy);
  reward_steps: "last" (default: every location is rewarded by whether the
    step-T prediction is right) or "each" (location l_t by step t's);
  reinforce_reduction: "mean" (default, the original: over the T steps) or
    "sum".
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from saccader_jax import losses
from saccader_jax.models import dram as dram_lib
from saccader_jax.objectives.base import accuracy
from saccader_jax.objectives.base import apply_mutable
from saccader_jax.objectives.base import LossFn
from saccader_jax.objectives.base import Stage

STEP_CHOICES = ("last", "all")
REWARD_STEPS = ("last", "each")
REINFORCE_REDUCTIONS = ("mean", "sum")
REGULARISED = (dram_lib.GLIMPSE_NETWORK, dram_lib.CLASSIFICATION_LSTM,
               dram_lib.CLASSIFIER)


def dram_loss(model: dram_lib.DRAM,
              config: ml_collections.ConfigDict) -> LossFn:
  """The loss of one sampled rollout of config.num_glimpses steps."""
  for field, valid in (("cross_entropy_steps", STEP_CHOICES),
                       ("reward_steps", REWARD_STEPS),
                       ("reinforce_reduction", REINFORCE_REDUCTIONS)):
    if config[field] not in valid:
      raise ValueError(f"Unknown stages.dram.{field} {config[field]!r}; "
                       f"valid: {valid}.")

  def loss_fn(params, batch_stats, batch, key):
    out, batch_stats = apply_mutable(
        model, params, batch_stats, batch["image"],
        num_glimpses=config.num_glimpses, key=key, train=True)
    labels = batch["label"]
    step_losses = optax.softmax_cross_entropy_with_integer_labels(
        out.logits, labels[:, None])                          # [batch, T]
    cross_entropy = (jnp.mean(step_losses[:, -1])
                     if config.cross_entropy_steps == "last"
                     else jnp.mean(step_losses))
    if config.reward_steps == "last":
      rewards = losses.correct_rewards(out.logits[:, -1], labels,
                                       config.plus_minus_one_rewards)
    else:
      rewards = losses.correct_rewards(out.logits, labels[:, None],
                                       config.plus_minus_one_rewards)
    reinforce = losses.gaussian_reinforce_loss(
        out.mean_locations, out.locations, rewards, model.location_stddev,
        average_over_steps=config.reinforce_reduction == "mean").mean()
    l2 = losses.l2_penalty({part: params[part] for part in REGULARISED},
                           config.l2_weight, config.l2_mode)
    loss = cross_entropy + config.reinforce_weight * reinforce + l2
    return loss, (batch_stats, {
        "loss": loss, "cross_entropy": cross_entropy, "reinforce": reinforce,
        "l2": l2, "accuracy": accuracy(out.logits[:, -1], labels),
        "reward": jnp.mean(rewards),
        "location_spread": jnp.mean(jnp.std(out.mean_locations, axis=0))})

  return loss_fn


STAGES: dict[str, Stage] = {
    "dram": Stage(dram_loss, lambda part, config: True, model_field="dram",
                  choices={"cross_entropy_steps": STEP_CHOICES,
                           "reward_steps": REWARD_STEPS,
                           "reinforce_reduction": REINFORCE_REDUCTIONS},
                  glimpse_fields=("num_glimpses",),
                  weight_fields=("reinforce_weight",),
                  other_fields=("plus_minus_one_rewards",)),
}
