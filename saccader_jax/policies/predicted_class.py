"""Greedy rules over the predicted class beyond ordered logits (not in the
paper): rank locations by how well each one alone supports the whole-image
prediction.

  - "predicted_probability": the softmax probability of the predicted class
    at the location (a logit large in absolute terms can still be shared
    with other classes; the probability is not);
  - "predicted_margin": the predicted class's logit minus the largest other
    logit at the location.

The predicted class c is the argmax of the spatial mean of the BagNet's
logits, as for ordered logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from saccader_jax.policies import common


def predicted_class(logits2d: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w, C] -> [batch] the whole-image prediction."""
  return jnp.argmax(jnp.mean(logits2d, axis=(1, 2)), axis=-1)


def probability_scores(logits2d: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w, C] -> [batch, h, w] log p(c | location), c predicted
  (the log is monotone in p and keeps small probabilities apart)."""
  log_probs = jax.nn.log_softmax(logits2d.astype(jnp.float32), axis=-1)
  c = predicted_class(logits2d)
  return jnp.take_along_axis(log_probs, c[:, None, None, None],
                             axis=-1)[..., 0]


def margin_scores(logits2d: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w, C] -> [batch, h, w] logit_c - max_{k != c} logit_k."""
  logits2d = logits2d.astype(jnp.float32)
  c = predicted_class(logits2d)
  chosen = jnp.take_along_axis(logits2d, c[:, None, None, None],
                               axis=-1)[..., 0]
  others = jnp.where(jax.nn.one_hot(c, logits2d.shape[-1], dtype=bool)
                     [:, None, None, :], -jnp.inf, logits2d)
  return chosen - jnp.max(others, axis=-1)


def glimpse_fn(model, scores_fn):
  def fn(variables, images, num_glimpses, key):
    del key  # deterministic
    logits2d = common.bagnet_logits2d(model, variables, images)
    return common.score_map_glimpses(model, variables, images,
                                     scores_fn(logits2d), num_glimpses,
                                     logits2d)
  return fn
