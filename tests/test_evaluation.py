"""Accuracy counting: top-k hits, and non-finite predictions as misses."""

import jax
import jax.numpy as jnp
import numpy as np

from saccader_jax import evaluation


def test_topk_hits_rank_the_label():
  logits = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
  labels = jnp.array([1, 1])
  np.testing.assert_array_equal(evaluation._topk_hits(logits, labels, 1),
                                [0.0, 0.0])
  np.testing.assert_array_equal(evaluation._topk_hits(logits, labels, 2),
                                [1.0, 0.0])
  np.testing.assert_array_equal(evaluation._topk_hits(logits, labels, 3),
                                [1.0, 1.0])


def test_nonfinite_logits_are_misses_never_hits():
  nan, inf = float("nan"), float("inf")
  logits = jnp.array([[nan] * 4, [0.0, nan, 1.0, 2.0], [inf, 0.0, 0.0, 0.0],
                      [0.0, 5.0, 0.0, 0.0]])
  labels = jnp.array([0, 1, 0, 1])
  for k in (1, 5):
    np.testing.assert_array_equal(evaluation._topk_hits(logits, labels, k),
                                  [0.0, 0.0, 0.0, 1.0])


class NanModel:
  """Stands in for Saccader: glimpse and location logits all NaN in the
  first image, finite and right in the second."""

  def apply(self, variables, images, num_glimpses):
    del variables
    batch, classes = images.shape[0], 3
    good = jax.nn.one_hot(jnp.ones((num_glimpses,), jnp.int32), classes)
    glimpse_logits = jnp.stack([jnp.full((num_glimpses, classes), jnp.nan),
                                good])[:batch]
    logits2d = jnp.broadcast_to(glimpse_logits[:, :1, None, :],
                                (batch, 2, 2, classes))
    return type("Out", (), {"glimpse_logits": glimpse_logits,
                            "logits2d": logits2d})


def test_evaluation_reports_nonfinite_predictions():
  step = jax.jit(evaluation.make_eval_step(NanModel(), num_glimpses=3))
  batch = {"image": jnp.zeros((2, 4, 4, 1)), "label": jnp.array([1, 1]),
           "mask": jnp.ones((2,))}
  results = evaluation.evaluate(step, {}, [batch])
  np.testing.assert_array_equal(results["top1"], [0.5, 0.5, 0.5])
  np.testing.assert_array_equal(results["top5"], [0.5, 0.5, 0.5])
  assert results["bagnet_top1"] == 0.5
  np.testing.assert_array_equal(results["nonfinite"], [1, 1, 1])
  assert results["bagnet_nonfinite"] == 1
  table = evaluation.format_table(results, "t")
  assert ("1 of 2 predictions had non-finite logits and count as misses"
          in table)
  scalars = evaluation.scalars(results, "dev")
  assert scalars["dev/nonfinite_predictions"] == 1.0


def test_finite_results_say_nothing_about_nonfinite_predictions():
  results = {"top1": np.array([0.5]), "top5": np.array([1.0]),
             "bagnet_top1": 0.5, "bagnet_top5": 1.0,
             "nonfinite": np.array([0]), "bagnet_nonfinite": 0, "count": 4}
  assert "non-finite" not in evaluation.format_table(results, "t")
