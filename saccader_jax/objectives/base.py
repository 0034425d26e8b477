"""What a training stage is: the model it trains, which parameters, its loss.

A loss is a pure function of the model's full parameter tree

    loss_fn(params, batch_stats, batch, key) -> (loss, (batch_stats, metrics))

and a stage trains the top-level parameter subtrees that `trains` accepts
(given the stage's config); the others get no update (`trainable_mask`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections

# Keys every config.stages.<name> may have.
STAGE_KEYS = ("num_steps", "num_epochs", "learning_rate", "l2_weight",
              "l2_mode", "grad_clip_norm")

LossFn = Callable[..., tuple[jnp.ndarray, tuple[Any, dict[str, jnp.ndarray]]]]


def apply_mutable(model, params, batch_stats, *args, method=None, **kwargs):
  """model.apply in training mode: (output, batch_stats after the call)."""
  out, updates = model.apply({"params": params, "batch_stats": batch_stats},
                             *args, method=method, mutable=["batch_stats"],
                             **kwargs)
  return out, {**batch_stats, **updates["batch_stats"]}


def accuracy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Top-1 accuracy of [batch, classes] logits."""
  return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Stage:
  """A training stage.

  Attributes:
    loss: (model, config.stages.<name>) -> LossFn.
    trains: (top-level parameter subtree name, config.stages.<name>) ->
      whether the stage trains it.
    model_field: the config field holding the model config it trains
      ("model": the policy model; "classifier": the full-image classifier).
      Stages of one field hand their variables on in run_stages order.
    reference: if set, the stage's network read out on whole images is a
      reference classifier under this label (its accuracy is reported beside
      the policies', and evaluators may use it).
    rate_factor: optional (top-level parameter subtree name, config) -> the
      factor on the stage's learning rate for that subtree (default 1);
      rate_factor_fields: the config fields it reads. Factors apply only
      when one of those fields is not 1 (otherwise the optimizer, and so its
      checkpointed state, is as without factors).
    init_from: for a model made of other fields' models: top-level
      parameter subtree -> the config field whose last trained variables
      initialise it (when no earlier stage trained this stage's field).
    choices, glimpse_fields, positive_integer_fields, weight_fields: how
      `config_checks` validates config.stages.<name> beyond the fields every
      stage has (STAGE_KEYS: learning rate, length, L2).
    defaults: the value the loss reads for a field a config lacks (e.g. a
      config recorded before the field existed); checked as given.
    other_fields: any other field of config.stages.<name> the stage reads
      (e.g. a boolean switch). With the above, these are the only keys its
      config may have (`config_keys`).
    frozen_representation: config.stages.<name> -> whether the stage runs
      its model's representation network frozen in inference mode (so that
      its outputs depend on the image alone). Its loss then also accepts a
      batch whose "representation" (features2d, what_features, logits2d)
      replaces "image" (`saccader_jax.representation_cache`).
  """
  loss: Callable[[Any, ml_collections.ConfigDict], LossFn]
  trains: Callable[[str, ml_collections.ConfigDict], bool]
  model_field: str = "model"
  reference: Optional[str] = None
  init_from: dict[str, str] = dataclasses.field(default_factory=dict)
  rate_factor: Optional[Callable[[str, ml_collections.ConfigDict],
                                 float]] = None
  rate_factor_fields: tuple[str, ...] = ()
  choices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
  glimpse_fields: tuple[str, ...] = ()
  positive_integer_fields: tuple[str, ...] = ()
  weight_fields: tuple[str, ...] = ()
  other_fields: tuple[str, ...] = ()
  frozen_representation: Optional[
      Callable[[ml_collections.ConfigDict], bool]] = None

  @property
  def config_keys(self) -> tuple[str, ...]:
    """Every key config.stages.<name> may have."""
    return tuple(dict.fromkeys(
        STAGE_KEYS + tuple(self.choices) + self.glimpse_fields
        + self.positive_integer_fields + self.weight_fields
        + self.rate_factor_fields + self.other_fields))

  def freezes_representation(self,
                             config: ml_collections.ConfigDict) -> bool:
    return bool(self.frozen_representation
                and self.frozen_representation(config))

  def trainable_mask(self, params: Any,
                     config: ml_collections.ConfigDict) -> Any:
    """A tree of bools like params: True where this stage trains."""
    return {part: jax.tree_util.tree_map(
        lambda _, t=self.trains(part, config): t, subtree)
            for part, subtree in params.items()}

  def has_rate_factors(self, config: ml_collections.ConfigDict) -> bool:
    return self.rate_factor is not None and any(
        config.get(field, 1.0) != 1.0 for field in self.rate_factor_fields)

  def rate_factors(self, params: Any,
                   config: ml_collections.ConfigDict) -> Any:
    """A tree of floats like params: each part's learning-rate factor."""
    return {part: jax.tree_util.tree_map(
        lambda _, f=float(self.rate_factor(part, config)): f, subtree)
            for part, subtree in params.items()}
