"""What an evaluator sees and returns.

Every evaluator of a policy reads one rollout per batch (the policy's
PolicyOutput for T_max glimpses) and returns sums over the batch's real
examples; the runner (`saccader_jax.evaluation`) adds them up over the split
and divides by the number of examples. Sums whose key ends in "nonfinite"
are counts and stay integers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import jax.numpy as jnp
import ml_collections
import numpy as np

from saccader_jax.policy import PolicyOutput

# (images [batch, height, width, channels]) -> logits [batch, classes].
BoundClassifier = Callable[[jnp.ndarray], jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class Context:
  """One batch, the policy's rollout on it, and the reference classifiers.

  Attributes:
    out: the policy's output for T_max glimpses.
    images: [batch, height, width, channels] preprocessed images.
    labels: [batch] int32.
    mask: [batch] float32, 0 on padding.
    references: reference classifiers by the name of the stage that trained
      them, bound to their variables (e.g. references["classifier"]).
  """
  out: PolicyOutput
  images: jnp.ndarray
  labels: jnp.ndarray
  mask: jnp.ndarray
  references: Mapping[str, BoundClassifier]


class Evaluator:
  """Base class: config.evals.<name> configures an instance.

  Subclasses set `name`, `keys` (what `batch_sums` returns) and
  `config_keys` (the keys config.evals.<name> may have), override
  `batch_sums`, and say how their results read (`columns`, `scalars`).
  `references` lists the reference stages the evaluator needs (e.g. the
  full-image classifier's); `config_problems` checks its config's values
  (the config check reports them with every other problem, before a run).
  """
  name: ClassVar[str] = ""
  keys: ClassVar[tuple[str, ...]] = ()
  config_keys: ClassVar[tuple[str, ...]] = ()

  def __init__(self, config: ml_collections.ConfigDict, num_glimpses: int):
    self.config = config
    self.num_glimpses = num_glimpses

  @property
  def references(self) -> tuple[str, ...]:
    return ()

  def config_problems(self) -> list[tuple[str, Any, str]]:
    """(key, value, what it must be) for each bad value of
    config.evals.<name>; [] when it can run."""
    return []

  def batch_sums(self, context: Context) -> dict[str, jnp.ndarray]:
    """Sums over the batch's real examples (traced inside jit)."""
    del context
    return {}

  def scalars(self, results: dict, prefix: str) -> dict[str, float]:
    """Flat scalars for a metric writer, per number of glimpses."""
    out = {}
    for header, values in self.columns(results):
      key = header.replace(" ", "_").replace("-", "")
      for t, value in enumerate(values, 1):
        out[f"{prefix}/{key}_glimpses{t:02d}"] = float(value)
    return out

  def columns(self, results: dict) -> list[tuple[str, np.ndarray]]:
    """(header, [T] fractions) columns of the results table."""
    del results
    return []


def finite(logits: jnp.ndarray) -> jnp.ndarray:
  """[..., C] logits -> [...] True where every logit is finite."""
  return jnp.all(jnp.isfinite(logits), axis=-1)


def topk_hits(logits: jnp.ndarray, labels: jnp.ndarray, k: int) -> jnp.ndarray:
  """[..., C] logits, [...] labels -> [...] 1.0 where the label is in the top
  k. A prediction with any non-finite logit is a miss: no comparison with a
  NaN is true, so it would otherwise rank every label first."""
  label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  in_top_k = jnp.sum(logits > label_logit, axis=-1) < k
  return (in_top_k & finite(logits)).astype(jnp.float32)


def masked_sum(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """values [batch, ...], mask [batch] -> sum over real examples [...]."""
  return jnp.tensordot(mask, values.astype(jnp.float32), axes=(0, 0))


def hit_sums(logits: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray,
             prefix: str = "") -> dict[str, jnp.ndarray]:
  """logits [batch, ..., C], labels [batch, ...] broadcastable -> summed
  <prefix>top1, <prefix>top5 and <prefix>nonfinite over real examples."""
  return {
      f"{prefix}top1": masked_sum(topk_hits(logits, labels, 1), mask),
      f"{prefix}top5": masked_sum(topk_hits(logits, labels, 5), mask),
      f"{prefix}nonfinite": masked_sum(~finite(logits), mask),
  }


def box_mask(boxes: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """Pixel boxes [batch, 4] (y_min, x_min, y_max, x_max; maxima exclusive)
  -> [batch, height, width] bool, True inside the box."""
  rows = jnp.arange(height)[None, :]
  cols = jnp.arange(width)[None, :]
  inside_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 2:3])
  inside_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])
  return inside_rows[:, :, None] & inside_cols[:, None, :]
