"""Where glimpses are decided, bfloat16 compute and the matmul precision
change nothing: every ranked or arg-maxed score is float32 at the highest
precision."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from saccader_jax import config_checks
from saccader_jax import losses
from saccader_jax import models
from saccader_jax.models import cell
from saccader_jax.policies import ordered_logits
from tests.helpers import narrow_model_config

# 221 pixels give the ImageNet grid: 19 x 19 = 361 locations.
IMAGE_SIZE = 221
NUM_TARGETS = 12


def _bf16_model():
  config = narrow_model_config()
  config.dtype = "bfloat16"
  return models.create_model(config)


def _with_tied_head(variables):
  """variables with per-location logits near 8 that differ by less than
  bf16's spacing there (2^-4), as in a trained BagNet whose logits all sit
  near one value: after bf16 rounding most images tie among their top 12."""
  head = variables["params"]["representation"]["logits2d"]
  head = {"kernel": 0.01 * jax.random.normal(jax.random.key(1),
                                             head["kernel"].shape),
          "bias": jnp.full(head["bias"].shape, 8.0)}
  representation = dict(variables["params"]["representation"], logits2d=head)
  return {"params": dict(variables["params"], representation=representation),
          "batch_stats": variables["batch_stats"]}


def _float64_logits(rep, variables) -> np.ndarray:
  """[batch, L, classes]: the per-location logits in float64 from the
  representation's (bf16) features."""
  head = variables["params"]["representation"]["logits2d"]
  what = np.asarray(rep.what_features, np.float64)
  logits = (what @ np.asarray(head["kernel"], np.float64).reshape(
      what.shape[-1], -1) + np.asarray(head["bias"], np.float64))
  return logits.reshape(logits.shape[0], -1, logits.shape[-1])


def _predicted_class_scores(flat: np.ndarray) -> np.ndarray:
  """[batch, L, classes] -> [batch, L]: each location's logit for the class
  of the largest mean logit."""
  predicted = flat.mean(axis=1).argmax(axis=-1)
  return np.take_along_axis(flat, predicted[:, None, None], axis=-1)[..., 0]


def _descending(scores: np.ndarray, count: int = NUM_TARGETS) -> np.ndarray:
  """[batch, L] -> [batch, count] indices of the largest, best first."""
  return np.argsort(-scores, axis=-1, kind="stable")[:, :count]


def test_bf16_targets_and_ordered_logits_rank_float32_scores(narrow_variables):
  model = _bf16_model()
  variables = _with_tied_head(narrow_variables)
  images = jax.random.normal(jax.random.key(2), (4, IMAGE_SIZE, IMAGE_SIZE, 3))
  rep = model.apply(variables, images, method=model.represent)
  assert rep.what_features.dtype == jnp.bfloat16
  assert rep.logits2d.dtype == jnp.float32
  # The same scores in float64 from the same bf16 features.
  flat = _float64_logits(rep, variables)
  batch = flat.shape[0]

  max_logit = flat.max(axis=-1)
  predicted_class = _predicted_class_scores(flat)
  for scores in (max_logit, predicted_class):
    top = -np.sort(-scores, axis=-1)[:, :NUM_TARGETS + 1]
    # float32 resolves the order: neighbours in the top 12 are well apart.
    assert np.min(-np.diff(top, axis=-1)) > 1e-5
    # In bf16 these scores tie: the batch tests what it should.
    rounded = np.asarray(jnp.asarray(top, jnp.bfloat16), np.float64)
    assert sum(len(set(r)) < len(r) for r in rounded) >= batch - 1

  targets = {ranking: np.asarray(losses.location_targets(
      rep.logits2d, NUM_TARGETS, ranking))
             for ranking in ("max_logit", "predicted_class")}
  np.testing.assert_array_equal(targets["max_logit"], _descending(max_logit))
  np.testing.assert_array_equal(targets["predicted_class"],
                                _descending(predicted_class))
  locations, _, _ = ordered_logits.glimpse_fn(model)(
      variables, images, NUM_TARGETS, None)
  np.testing.assert_array_equal(np.asarray(locations),
                                _descending(predicted_class))
  np.testing.assert_allclose(np.asarray(rep.logits2d).reshape(flat.shape),
                             flat, atol=1e-5)


def _dot_precisions(fn, *args) -> list:
  """The precision of every dot and convolution in fn's jaxpr."""
  found = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
        found.append(eqn.params["precision"])
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def _is_highest(precision) -> bool:
  return precision in (jax.lax.Precision.HIGHEST,
                       (jax.lax.Precision.HIGHEST,) * 2)


def test_the_cell_contracts_at_the_highest_precision():
  features = jax.random.normal(jax.random.key(0), (2, 9, 4))
  precisions = _dot_precisions(
      lambda f: cell.SaccaderCell().init_with_output(
          jax.random.key(1), f.reshape(2, 3, 3, 4), num_glimpses=3)[0]
      .location_logits, features)
  assert len(precisions) >= 3 and all(map(_is_highest, precisions))


@pytest.mark.parametrize("name", ["default", "high", "highest"])
def test_matmul_precision_reaches_the_networks_but_not_the_decisions(
    name, narrow_variables):
  config = narrow_model_config()
  config.matmul_precision = name
  model = models.create_model(config)
  images = jnp.zeros((1, 93, 93, 3))
  precisions = _dot_precisions(
      lambda v, x: model.apply(v, x, num_glimpses=2).locations,
      narrow_variables, images)
  chosen = models.MATMUL_PRECISIONS[name]
  expected = {None if chosen is None else (chosen, chosen), chosen}
  decisions = [p for p in precisions if _is_highest(p)]
  others = [p for p in precisions if not _is_highest(p)]
  if name == "highest":
    assert not others
  else:
    # The per-location logits, the cell's attention weights and its two
    # einsums per step (one step traced by scan) are the decisions.
    assert len(decisions) == 4 and others
    assert {p for p in others} <= expected


def test_an_unknown_matmul_precision_is_a_config_error():
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_whole_items_saccader.get_config()
  config.model.matmul_precision = "tf32"
  with pytest.raises(config_checks.ConfigError,
                     match=r"model.matmul_precision.*\['default', 'high', "
                           r"'highest'\]"):
    config_checks.check_config(config)


@pytest.mark.slow
def test_bf16_stages_train_and_then_rank_as_float32():
  """The tiny model in bf16 compute: stages 1 and 2 on a fixed batch give
  finite losses that fall; the trained BagNet, given near-equal logits,
  ranks its locations as float32 scores of the same features do."""
  from saccader_jax import stages  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  config = tiny_train_config("/nonexistent")   # the model and stages only
  config.model.dtype = "bfloat16"
  model = models.create_model(config.model)
  size = config.dataset.image_size
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  images = rng.normal(size=(16, size, size, 1)).astype(np.float32)
  images[np.arange(16), 2 + 3 * labels, :, 0] += 4.0   # a learnable bar
  batch = {"image": images, "label": labels}
  variables = jax.jit(lambda k: model.init(
      k, jnp.zeros((1, size, size, 1)), num_glimpses=1))(jax.random.key(0))
  for name, metric in (("representation", "cross_entropy"),
                       ("location", "location_nll")):
    setup = stages.create_stage(config, name, model, variables, 30)
    step = jax.jit(setup.train_step)
    state, history = setup.state, []
    for i in range(30):
      state, metrics = step(state, batch, jax.random.key(i))
      history.append(float(metrics[metric]))
    assert np.all(np.isfinite(history)), (name, history)
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:5]), (name, history)
    variables = {"params": state.params, "batch_stats": state.batch_stats}

  tied = _with_tied_head(variables)
  rep = model.apply(tied, images, method=model.represent)
  flat = _float64_logits(rep, tied)
  count = min(4, flat.shape[1])
  expected = _descending(_predicted_class_scores(flat), count)
  locations, _, _ = ordered_logits.glimpse_fn(model)(tied, images, count, None)
  np.testing.assert_array_equal(np.asarray(locations), expected)
  np.testing.assert_array_equal(
      np.asarray(losses.location_targets(rep.logits2d, count,
                                         "predicted_class")), expected)
