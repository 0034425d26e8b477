"""Evaluators of any policy: accuracy counting (non-finite predictions are
misses), coverage and occlusion against hand-computed values."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from saccader_jax import evaluation
from saccader_jax import evaluators
from saccader_jax.evaluators import base
from saccader_jax.evaluators import coverage
from saccader_jax.evaluators import occlusion
from saccader_jax.models import geometry
from saccader_jax.policy import Policy


def test_topk_hits_rank_the_label():
  logits = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
  labels = jnp.array([1, 1])
  np.testing.assert_array_equal(base.topk_hits(logits, labels, 1), [0.0, 0.0])
  np.testing.assert_array_equal(base.topk_hits(logits, labels, 2), [1.0, 0.0])
  np.testing.assert_array_equal(base.topk_hits(logits, labels, 3), [1.0, 1.0])


def test_nonfinite_logits_are_misses_never_hits():
  nan, inf = float("nan"), float("inf")
  logits = jnp.array([[nan] * 4, [0.0, nan, 1.0, 2.0], [inf, 0.0, 0.0, 0.0],
                      [0.0, 5.0, 0.0, 0.0]])
  labels = jnp.array([0, 1, 0, 1])
  for k in (1, 5):
    np.testing.assert_array_equal(base.topk_hits(logits, labels, k),
                                  [0.0, 0.0, 0.0, 1.0])


def grid_3x3(height, width):
  """A 3x3 grid of 4x4 boxes every 2 pixels on an 8x8 image."""
  return geometry.GridGeometry(height, width, receptive_field=4, stride=2,
                               grid_height=3, grid_width=3)


def fixed_policy(glimpse_logits, locations):
  """A Policy whose glimpses and logits are given (per image)."""
  def glimpse_fn(variables, images, num_glimpses, key):
    del variables, key
    batch = images.shape[0]
    logits = jnp.zeros((batch, num_glimpses, 9))
    return (locations[:batch, :num_glimpses], logits,
            glimpse_logits[:batch, :num_glimpses])
  return Policy(glimpse_fn, {}, grid_3x3, num_channels=1, name="fixed")


def test_policy_evaluation_counts_nonfinite_predictions_as_misses():
  good = jax.nn.one_hot(jnp.ones((3,), jnp.int32), 3)
  glimpse_logits = jnp.stack([jnp.full((3, 3), jnp.nan), good])
  policy = fixed_policy(glimpse_logits, jnp.array([[0, 1, 2], [3, 4, 5]]))
  run = evaluation.PolicyEvaluator(
      policy, evaluators.create_evaluators(
          ml_collections.ConfigDict({"accuracy": {}}), 3), 3)
  batch = {"image": jnp.zeros((2, 8, 8, 1)), "label": jnp.array([1, 1]),
           "mask": jnp.ones((2,))}
  results = run([batch])
  np.testing.assert_array_equal(results["top1"], [0.5, 0.5, 0.5])
  np.testing.assert_array_equal(results["top5"], [0.5, 0.5, 0.5])
  np.testing.assert_array_equal(results["nonfinite"], [1, 1, 1])
  table = evaluation.format_table(results, "t", run.evaluators)
  assert ("1 of 2 predictions had non-finite logits and count as misses"
          in table)
  scalars = evaluation.scalars(results, run.evaluators, "dev")
  assert scalars["dev/nonfinite_predictions"] == 1.0
  assert scalars["dev/top1_glimpses02"] == 0.5


def test_finite_results_say_nothing_about_nonfinite_predictions():
  results = {"top1": np.array([0.5]), "top5": np.array([1.0]),
             "nonfinite": np.array([0]), "count": 4,
             "references": {"representation": {
                 "label": "BagNet", "top1": 0.5, "top5": 1.0, "nonfinite": 0,
                 "count": 4}}}
  table = evaluation.format_table(results, "t", [evaluators.Accuracy({}, 1)])
  assert "non-finite" not in table
  assert "| BagNet (stage representation) | 50.00 | 100.00 |" in table


def test_coverage_of_two_overlapping_boxes():
  boxes = jnp.array([[[0, 0, 77, 77], [0, 8, 77, 85]]])
  fractions = coverage.union_coverage(boxes, 224, 224)
  np.testing.assert_allclose(fractions, [[77 * 77 / 50176, 6545 / 50176]],
                             rtol=1e-6)


def test_coverage_counts_only_pixels_inside_the_image():
  boxes = jnp.array([[[-2, -2, 2, 2], [6, 6, 12, 12]]])
  np.testing.assert_allclose(coverage.union_coverage(boxes, 8, 8),
                             [[4 / 64, 8 / 64]])


def test_occlusion_zeroes_exactly_the_pixels_inside_the_boxes():
  images = np.asarray(jax.random.normal(jax.random.key(0), (2, 10, 12, 3)))
  images = images + 5.0   # no pixel is 0 before occlusion
  boxes = jnp.array([[[1, 2, 4, 6], [3, 5, 8, 7]],
                     [[0, 0, 2, 2], [0, 0, 2, 2]]])
  # The classifier returns the occluded images themselves, flattened.
  seen = occlusion.occluded_logits(lambda x: x.reshape(x.shape[0], -1),
                                   jnp.asarray(images), boxes)
  covered = np.zeros((2, 10, 12, 3), bool)
  for t in range(2):
    for b in range(2):
      y0, x0, y1, x1 = np.asarray(boxes[b, t])
      covered[b, y0:y1, x0:x1] = True
    expected = np.where(covered, 0.0, images).reshape(2, -1)
    np.testing.assert_array_equal(seen[:, t], expected)
  filled = occlusion.occluded_logits(lambda x: x.reshape(x.shape[0], -1),
                                     jnp.asarray(images), boxes, fill=-0.5)
  np.testing.assert_array_equal(
      filled[:, 1], np.where(covered, -0.5, images).reshape(2, -1))
  # Union after both steps: 12 + 10 - 1 overlapping pixels, and 4.
  assert covered[..., 0].sum(axis=(1, 2)).tolist() == [21, 4]


def test_occlusion_evaluator_uses_the_named_classifier():
  # The classifier says class 0 while pixel (0, 0) is visible, else class 1.
  def classify(images):
    visible = images[:, 0, 0, 0] != 0
    return jnp.stack([visible, ~visible], -1).astype(jnp.float32)

  locations = jnp.array([[4, 0]])   # centre box first, then the corner box
  policy = fixed_policy(jnp.zeros((1, 2, 3)), locations)
  run = evaluation.PolicyEvaluator(
      policy, evaluators.create_evaluators(ml_collections.ConfigDict(
          {"occlusion": {"classifier": "whole"}}), 2), 2,
      classify_fns={"whole": lambda variables, images: classify(images)})
  batch = {"image": jnp.ones((1, 8, 8, 1)), "label": jnp.array([0]),
           "mask": jnp.ones((1,))}
  results = run([batch], reference_variables={"whole": {}})
  np.testing.assert_array_equal(results["occluded_top1"], [1.0, 0.0])


def test_the_comparison_table_shows_each_policy_and_the_paired_difference():
  results = {"top1": np.array([0.75, 0.8]), "coverage": np.array([0.2, 0.3]),
             "count": 4,
             "baselines": {
                 "ordered_logits": {"top1": np.array([0.5, 0.85]),
                                    "coverage": np.array([0.2, 0.25])},
                 "random": {"top1": np.array([0.25, 0.25])}},
             "references": {"representation": {
                 "label": "BagNet", "top1": 0.9, "top5": 1.0}}}
  table = evaluation.format_comparison(results, "t").splitlines()
  assert table[2] == ("| glimpses | Saccader top-1 | ordered logits top-1 | "
                      "random top-1 | Saccader - ordered logits | "
                      "Saccader coverage | ordered logits coverage |")
  assert table[4] == "| 1 | 75.00 | 50.00 | 25.00 | +25.00 | 20.00 | 20.00 |"
  assert table[5] == "| 2 | 80.00 | 85.00 | 25.00 | -5.00 | 30.00 | 25.00 |"
  assert "| BagNet (stage representation) | 90.00 | 100.00 |" in table
