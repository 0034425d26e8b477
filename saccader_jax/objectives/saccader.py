"""The three training stages of section 3.2 as objectives over Saccader.

Parameters a stage does not train get no update, and frozen parts run in
inference mode, so their batch statistics are left as they were.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from saccader_jax import losses
from saccader_jax.models import Saccader
from saccader_jax.objectives.base import accuracy as _accuracy
from saccader_jax.objectives.base import apply_mutable as _apply
from saccader_jax.objectives.base import LossFn
from saccader_jax.objectives.base import Stage

REPRESENTATION = "representation"
READINGS = ("paper", "code", "code_teacher_forced")
# Stage 2's target ranking: the reading's own, or beyond the paper.
TARGET_RANKINGS = {"reading": None,
                   "predicted_probability_beyond_paper":
                       "predicted_probability"}
# How stage 2 normalises the frozen representation: with its moving averages
# (inference mode), or with the batch's statistics as the original code does.
FROZEN_REPRESENTATION_BN = ("inference", "batch")
REINFORCE_REDUCTIONS = ("mean", "sum")


def location_params(params: Any) -> Any:
  """The location network: attention network, mixing conv and cell (eta)."""
  return {k: v for k, v in params.items() if k != REPRESENTATION}


def with_location_network(variables: dict, location_variables: dict) -> dict:
  """A Saccader's {"params", "batch_stats"} with every part but the
  representation network taken from location_variables (e.g. the stage-3
  model with the stage-2 location network put back: what stage 3's BagNet
  alone changed)."""
  return {collection: {
      part: (tree if part == REPRESENTATION
             else location_variables[collection][part])
      for part, tree in variables[collection].items()}
          for collection in ("params", "batch_stats")}


# The batch key of a frozen representation's precomputed outputs.
CACHED_REPRESENTATION = "representation"


def _inputs(batch: dict) -> Any:
  """What a stage's forward encodes: the frozen representation's cached
  outputs where the batch has them, else the images."""
  return batch.get(CACHED_REPRESENTATION, batch.get("image"))


def _encode(module: Saccader, inputs: Any, train: bool,
            freeze_representation: bool,
            frozen_batch_statistics: bool = False):
  """`Saccader.encode` of images, or of cached outputs (a dict of
  features2d, what_features, logits2d) of the frozen representation."""
  if isinstance(inputs, dict):
    return module.encode_representation(**inputs, train=train)
  return module.encode(inputs, train=train,
                       freeze_representation=freeze_representation,
                       frozen_batch_statistics=frozen_batch_statistics)


def representation_loss(model: Saccader,
                        config: ml_collections.ConfigDict) -> LossFn:
  """Stage 1, eq. 4: the BagNet alone, on the geometric mean over locations."""

  def loss_fn(params, batch_stats, batch, key):
    del key
    rep, batch_stats = _apply(model, params, batch_stats, batch["image"],
                              True, method=Saccader.represent)
    batch_size, _, _, classes = rep.logits2d.shape
    cross_entropy = losses.geometric_mean_cross_entropy(
        rep.logits2d.reshape(batch_size, -1, classes), batch["label"]).mean()
    l2 = losses.l2_penalty(params[REPRESENTATION], config.l2_weight,
                           config.l2_mode)
    loss = cross_entropy + l2
    return loss, (batch_stats, {
        "loss": loss, "cross_entropy": cross_entropy, "l2": l2,
        "accuracy": _accuracy(rep.logits, batch["label"])})

  return loss_fn


def location_loss(model: Saccader,
                  config: ml_collections.ConfigDict) -> LossFn:
  """Stage 2, eq. 5: location pretraining with the representation frozen.

  config.frozen_representation_bn = "inference" runs the frozen
  representation with its moving averages; "batch" with the batch's
  statistics (the original code). Neither updates its parameters or
  averages.
  config.reading = "paper": targets ranked by each location's maximum logit,
  teacher-forced state, -sum_t log pi. "code" (the original implementation):
  targets ranked by the predicted class's logit, the state follows the
  model's own sampled locations, loss averaged over steps.
  "code_teacher_forced" (in neither the paper nor the code): the code's
  targets and averaging with the paper's teacher-forced state, so that the
  two readings differ by one choice at a time.
  config.target_ranking = "predicted_probability_beyond_paper" ranks the
  targets by the predicted class's softmax probability instead (any
  reading's state and averaging).
  """
  if config.reading not in READINGS:
    raise ValueError(f"Unknown location-pretraining reading "
                     f"{config.reading!r}; valid: {READINGS}.")
  paper = config.reading == "paper"
  ranking = (TARGET_RANKINGS[config.get("target_ranking", "reading")]
             or ("max_logit" if paper else "predicted_class"))
  teacher_forced = config.reading in ("paper", "code_teacher_forced")
  batch_statistics = config.get("frozen_representation_bn",
                                "inference") == "batch"

  def forward(module, inputs, key):
    logits2d, mixed = _encode(module, inputs, train=True,
                              freeze_representation=True,
                              frozen_batch_statistics=batch_statistics)
    targets = losses.location_targets(logits2d, config.num_glimpses, ranking)
    if teacher_forced:
      out = module.glimpse(logits2d, mixed, config.num_glimpses,
                           forced_locations=targets)
    else:
      out = module.glimpse(logits2d, mixed, config.num_glimpses, key=key)
    return out, targets

  def loss_fn(params, batch_stats, batch, key):
    (out, targets), new_stats = _apply(model, params, batch_stats,
                                       _inputs(batch), key, method=forward)
    # Frozen: the representation's moving averages stay as stage 1 left them.
    batch_stats = {**new_stats,
                   REPRESENTATION: batch_stats[REPRESENTATION]}
    pretraining = losses.location_pretraining_loss(
        out.location_logits, targets, average_over_steps=not paper).mean()
    l2 = losses.l2_penalty(location_params(params), config.l2_weight,
                           config.l2_mode)
    loss = pretraining + l2
    first_hit = jnp.mean((jnp.argmax(out.location_logits[:, 0], -1)
                          == targets[:, 0]).astype(jnp.float32))
    return loss, (batch_stats, {
        "loss": loss, "location_nll": pretraining, "l2": l2,
        "first_target_accuracy": first_hit})

  return loss_fn


def policy_loss(model: Saccader, config: ml_collections.ConfigDict) -> LossFn:
  """Stage 3, eq. 6: REINFORCE over S sampled trajectories + glimpse CE.

  config.reinforce_reduction = "mean" (the original code) averages the
  REINFORCE term over the S * T log-probabilities; "sum" is eq. 6 as printed,
  S * T times larger next to the cross entropy.
  config.train_representation = False keeps the BagNet as stages 1-2 left it
  (inference mode, no update): only REINFORCE trains, the location network.
  """
  if config.reinforce_reduction not in REINFORCE_REDUCTIONS:
    raise ValueError(f"Unknown reinforce_reduction "
                     f"{config.reinforce_reduction!r}; valid: "
                     f"{REINFORCE_REDUCTIONS}.")

  frozen = not config.get("train_representation", True)

  def forward(module, inputs, key):
    logits2d, mixed = _encode(module, inputs, train=True,
                              freeze_representation=frozen)
    keys = jax.random.split(key, config.num_trajectories)
    outs = [module.glimpse(logits2d, mixed, config.num_glimpses, key=k)
            for k in keys]
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *outs)

  def loss_fn(params, batch_stats, batch, key):
    out, new_stats = _apply(model, params, batch_stats, _inputs(batch), key,
                            method=forward)
    if frozen:
      new_stats = {**new_stats, REPRESENTATION: batch_stats[REPRESENTATION]}
    batch_stats = new_stats
    labels = batch["label"]
    rewards = losses.correct_rewards(out.logits, labels[None],
                                     config.plus_minus_one_rewards)
    reinforce = losses.reinforce_loss(
        out.location_logits, out.locations, rewards,
        average_over_samples_and_steps=config.reinforce_reduction == "mean"
    ).mean()
    cross_entropy = jnp.mean(jax.vmap(
        lambda g: losses.geometric_mean_cross_entropy(g, labels))(
            out.glimpse_logits))
    l2 = (losses.l2_penalty(params[REPRESENTATION], config.l2_weight,
                            config.l2_mode)
          + losses.l2_penalty(location_params(params),
                              config.location_l2_weight, config.l2_mode))
    loss = config.reinforce_weight * reinforce + cross_entropy + l2
    return loss, (batch_stats, {
        "loss": loss, "reinforce": reinforce, "cross_entropy": cross_entropy,
        "l2": l2, "accuracy": _accuracy(out.logits[0], labels),
        "reward": jnp.mean(rewards),
        # How decided the sampling policy is: at the first glimpse, and over
        # all T (nats; log L for a uniform policy over L locations).
        "entropy_first": jnp.mean(
            losses.location_entropy(out.location_logits[..., 0, :])),
        "entropy": jnp.mean(losses.location_entropy(out.location_logits))})

  return loss_fn


def _trains_representation(part: str, config) -> bool:
  del config
  return part == REPRESENTATION


def _trains_location(part: str, config) -> bool:
  del config
  return part != REPRESENTATION


def _policy_trains(part: str, config) -> bool:
  return part != REPRESENTATION or config.get("train_representation", True)


def _policy_rate_factor(part: str, config) -> float:
  """The location network may learn at a rate of its own in stage 3: its
  REINFORCE gradient is far smaller than the BagNet's cross entropy's."""
  return 1.0 if part == REPRESENTATION else config.get(
      "location_learning_rate_factor", 1.0)


STAGES: dict[str, Stage] = {
    "representation": Stage(representation_loss, _trains_representation,
                            reference="BagNet, all locations"),
    "location": Stage(location_loss, _trains_location,
                      choices={"reading": READINGS,
                               "target_ranking": tuple(TARGET_RANKINGS),
                               "frozen_representation_bn":
                                   FROZEN_REPRESENTATION_BN},
                      defaults={"target_ranking": "reading"},
                      glimpse_fields=("num_glimpses",),
                      frozen_representation=lambda config: config.get(
                          "frozen_representation_bn",
                          "inference") == "inference"),
    "policy": Stage(policy_loss, _policy_trains,
                    rate_factor=_policy_rate_factor,
                    rate_factor_fields=("location_learning_rate_factor",),
                    choices={"reinforce_reduction": REINFORCE_REDUCTIONS},
                    glimpse_fields=("num_glimpses",),
                    positive_integer_fields=("num_trajectories",),
                    weight_fields=("reinforce_weight", "location_l2_weight",
                                   "location_learning_rate_factor"),
                    other_fields=("plus_minus_one_rewards",
                                  "train_representation"),
                    frozen_representation=lambda config: not config.get(
                        "train_representation", True)),
}
