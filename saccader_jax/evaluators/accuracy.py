"""Top-1 / top-5 after t = 1..T_max glimpses.

The prediction after t glimpses is the mean of the first t glimpse logits;
a policy's first t glimpses do not depend on T_max (greedy, or sampled with
a key split per step), so one rollout of T_max glimpses gives every t.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from saccader_jax.evaluators import base


def running_logits(glimpse_logits: jnp.ndarray) -> jnp.ndarray:
  """[batch, T, C] -> [batch, T, C]: the prediction after 1..T glimpses."""
  steps = jnp.arange(1, glimpse_logits.shape[1] + 1, dtype=jnp.float32)
  return jnp.cumsum(glimpse_logits, axis=1) / steps[None, :, None]


class Accuracy(base.Evaluator):
  """top1 [T], top5 [T]; nonfinite [T] counts predictions with a
  non-finite logit (misses)."""
  name = "accuracy"
  keys = ("top1", "top5", "nonfinite")

  def batch_sums(self, context):
    return base.hit_sums(running_logits(context.out.glimpse_logits),
                         context.labels[:, None], context.mask)

  def columns(self, results):
    return [("top-1", np.asarray(results["top1"])),
            ("top-5", np.asarray(results["top5"]))]
