"""Occlusion (section 4.2): how much a full-image classifier needs the
glimpsed pixels.

The pixels inside the first t glimpse boxes are set to 0 in the
preprocessed space (the data mean; config.evals.occlusion.fill may give
another value) and a separately trained classifier
(config.evals.occlusion.classifier names its stage) classifies the rest.
The lower its accuracy, the more the policy's glimpses held what matters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from saccader_jax.evaluators import base


def occlude(images: jnp.ndarray, covered: jnp.ndarray,
            fill: float = 0.0) -> jnp.ndarray:
  """images [batch, H, W, C], covered [batch, H, W] bool -> images with the
  covered pixels set to fill (0: the data mean after normalisation)."""
  return jnp.where(covered[..., None], jnp.asarray(fill, images.dtype),
                   images)


def occluded_logits(classify, images: jnp.ndarray, boxes: jnp.ndarray,
                    fill: float = 0.0) -> jnp.ndarray:
  """classify: images -> logits; boxes [batch, T, 4] -> [batch, T, classes]:
  the logits with the first 1..T boxes set to fill."""
  _, height, width, _ = images.shape

  def step(covered, box):
    covered = covered | base.box_mask(box, height, width)
    return covered, classify(occlude(images, covered, fill))

  covered = jnp.zeros(images.shape[:3], bool)
  _, logits = jax.lax.scan(step, covered, jnp.swapaxes(boxes, 0, 1))
  return jnp.swapaxes(logits, 0, 1)


class Occlusion(base.Evaluator):
  """occluded_top1 [T], occluded_top5 [T], occluded_nonfinite [T]."""
  name = "occlusion"
  config_keys = ("classifier", "fill")
  keys = ("occluded_top1", "occluded_top5", "occluded_nonfinite")

  @property
  def classifier(self) -> str:
    return self.config.get("classifier", "classifier")

  @property
  def references(self):
    return (self.classifier,)

  def config_problems(self):
    fill = self.config.get("fill", "mean")
    try:
      valid = fill == "mean" or math.isfinite(float(fill))
    except (TypeError, ValueError):
      valid = False
    if valid:
      return []
    return [("fill", fill,
             "must be 'mean' or a finite number (preprocessed units)")]

  @property
  def fill(self) -> float:
    """config.fill: "mean" (0 in the preprocessed space, the paper's) or a
    value in preprocessed units (e.g. the background of the data)."""
    fill = self.config.get("fill", "mean")
    return 0.0 if fill == "mean" else float(fill)

  def batch_sums(self, context):
    logits = occluded_logits(context.references[self.classifier],
                             context.images, context.out.boxes, self.fill)
    return base.hit_sums(logits, context.labels[:, None], context.mask,
                         prefix="occluded_")

  def columns(self, results):
    return [("occluded top-1", np.asarray(results["occluded_top1"])),
            ("occluded top-5", np.asarray(results["occluded_top5"]))]
