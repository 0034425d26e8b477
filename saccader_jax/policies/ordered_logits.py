"""Ordered logits: glimpse where the BagNet is most confident of the class
it predicts for the whole image (section 4.1)."""

from __future__ import annotations

import jax.numpy as jnp

from saccader_jax.policies import common


def ordered_logits_scores(logits2d: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w, C] -> [batch, h, w]: logits2d[..., c] with c the argmax
  of the spatial mean of logits2d."""
  predicted = jnp.argmax(jnp.mean(logits2d, axis=(1, 2)), axis=-1)
  return jnp.take_along_axis(logits2d, predicted[:, None, None, None],
                             axis=-1)[..., 0]


def glimpse_fn(model):
  def fn(variables, images, num_glimpses, key):
    del key  # deterministic
    logits2d = common.bagnet_logits2d(model, variables, images)
    return common.score_map_glimpses(model, variables, images,
                                     ordered_logits_scores(logits2d),
                                     num_glimpses, logits2d)
  return fn
