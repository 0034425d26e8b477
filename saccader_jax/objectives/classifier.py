"""The full-image classifier's stage: cross entropy on whole images.

It trains `config.classifier` (e.g. a ResNet-v2), the network that the
occlusion analysis (section 4.2) asks how much the glimpsed pixels matter.
"""

from __future__ import annotations

import ml_collections
import optax

from saccader_jax import losses
from saccader_jax.objectives.base import accuracy
from saccader_jax.objectives.base import apply_mutable
from saccader_jax.objectives.base import LossFn
from saccader_jax.objectives.base import Stage


def classifier_loss(model, config: ml_collections.ConfigDict) -> LossFn:
  """Softmax cross entropy of the logits + L2 on every parameter."""

  def loss_fn(params, batch_stats, batch, key):
    del key
    logits, batch_stats = apply_mutable(model, params, batch_stats,
                                        batch["image"], True)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch["label"]).mean()
    l2 = losses.l2_penalty(params, config.l2_weight, config.l2_mode)
    loss = cross_entropy + l2
    return loss, (batch_stats, {
        "loss": loss, "cross_entropy": cross_entropy, "l2": l2,
        "accuracy": accuracy(logits, batch["label"])})

  return loss_fn


STAGES: dict[str, Stage] = {
    "classifier": Stage(classifier_loss, lambda part, config: True,
                        model_field="classifier",
                        reference="full-image classifier"),
}
