"""The high-resolution classifier's stage (Saccader + classifier, the
paper's Saccader-NASNet): cross entropy of the glimpse-averaged logits.

Only the classifier trains; the Saccader chooses the glimpses greedily, in
inference mode, as its own stages left it. The stage starts from the last
Saccader and full-image classifier that run_stages trained (`init_from`).
"""

from __future__ import annotations

import ml_collections
import optax

from saccader_jax import losses
from saccader_jax.models import saccader_classnet as classnet_lib
from saccader_jax.objectives.base import accuracy
from saccader_jax.objectives.base import apply_mutable
from saccader_jax.objectives.base import LossFn
from saccader_jax.objectives.base import Stage


def classnet_loss(model: classnet_lib.SaccaderClassnet,
                  config: ml_collections.ConfigDict) -> LossFn:
  """CE of the mean over config.num_glimpses crops + L2 on the classifier."""

  def loss_fn(params, batch_stats, batch, key):
    del key
    out, new_stats = apply_mutable(model, params, batch_stats, batch["image"],
                                   num_glimpses=config.num_glimpses,
                                   train=True)
    batch_stats = {**new_stats,
                   classnet_lib.SACCADER: batch_stats[classnet_lib.SACCADER]}
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(
        out.logits, batch["label"]).mean()
    l2 = losses.l2_penalty(params[classnet_lib.CLASSIFIER], config.l2_weight,
                           config.l2_mode)
    loss = cross_entropy + l2
    return loss, (batch_stats, {
        "loss": loss, "cross_entropy": cross_entropy, "l2": l2,
        "accuracy": accuracy(out.logits, batch["label"])})

  return loss_fn


STAGES: dict[str, Stage] = {
    "classnet": Stage(
        classnet_loss, lambda part, config: part == classnet_lib.CLASSIFIER,
        model_field="classnet",
        init_from={classnet_lib.SACCADER: "model",
                   classnet_lib.CLASSIFIER: "classifier"},
        positive_integer_fields=("num_glimpses",)),
}
