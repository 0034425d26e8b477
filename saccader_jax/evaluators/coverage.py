"""Coverage: the fraction of the image inside the union of the first t
glimpse boxes (the paper's figures 3b and 5a), averaged over images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from saccader_jax.evaluators import base


def union_coverage(boxes: jnp.ndarray, height: int,
                   width: int) -> jnp.ndarray:
  """boxes [batch, T, 4] -> [batch, T]: |union of boxes 1..t| / (H * W).

  Boxes may extend past the image; only pixels inside count.
  """

  def step(covered, box):
    covered = covered | base.box_mask(box, height, width)
    return covered, jnp.mean(covered, axis=(1, 2))

  covered = jnp.zeros((boxes.shape[0], height, width), bool)
  _, fractions = jax.lax.scan(step, covered, jnp.swapaxes(boxes, 0, 1))
  return jnp.swapaxes(fractions, 0, 1)


class Coverage(base.Evaluator):
  """coverage [T]: mean fraction of the image covered after t glimpses."""
  name = "coverage"
  keys = ("coverage",)

  def batch_sums(self, context):
    _, height, width, _ = context.images.shape
    return {"coverage": base.masked_sum(
        union_coverage(context.out.boxes, height, width), context.mask)}

  def columns(self, results):
    return [("coverage", np.asarray(results["coverage"]))]
