"""Top-1 / top-5 after t = 1..T_max glimpses.

The prediction after t glimpses is the policy's `step_logits[:, t - 1]`
(grid policies: the mean of the first t glimpse logits; DRAM: step t's
logits). A policy's first t glimpses do not depend on T_max (greedy, or
sampled with a key split per step), so one rollout of T_max glimpses gives
every t.
"""

from __future__ import annotations

import numpy as np

from saccader_jax.evaluators import base


class Accuracy(base.Evaluator):
  """top1 [T], top5 [T]; nonfinite [T] counts predictions with a
  non-finite logit (misses)."""
  name = "accuracy"
  keys = ("top1", "top5", "nonfinite")

  def batch_sums(self, context):
    return base.hit_sums(context.out.step_logits, context.labels[:, None],
                         context.mask)

  def columns(self, results):
    return [("top-1", np.asarray(results["top1"])),
            ("top-5", np.asarray(results["top5"]))]
