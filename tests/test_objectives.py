"""Stage 2 (eq. 5) as an objective: what it trains, and the original code's
reading of it against NumPy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from saccader_jax import objectives

IMAGE_SHAPE = (3, 93, 93, 3)  # the narrow model's 3x3 grid


def location_config(**overrides):
  config = dict(num_glimpses=4, reading="paper", l2_weight=0.0,
                l2_mode="none", frozen_representation_bn="inference")
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def flat_leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("reading", ["paper", "code"])
@pytest.mark.parametrize("batch_norm", ["inference", "batch"])
def test_eq5_alone_trains_every_location_parameter_and_no_representation(
    narrow_model, narrow_variables, reading, batch_norm):
  loss_fn = objectives.location_loss(
      narrow_model, location_config(reading=reading,
                                    frozen_representation_bn=batch_norm))
  images = jax.random.normal(jax.random.key(3), IMAGE_SHAPE)
  batch = {"image": images, "label": jnp.array([0, 1, 2])}
  grads, (new_stats, metrics) = jax.jit(jax.grad(loss_fn, has_aux=True))(
      narrow_variables["params"], narrow_variables["batch_stats"], batch,
      jax.random.key(4))
  assert float(metrics["l2"]) == 0.0
  for name, grad in flat_leaves(objectives.location_params(grads)).items():
    assert np.any(grad != 0), name
  for name, grad in flat_leaves(grads["representation"]).items():
    assert np.all(grad == 0), name
  # Frozen, whichever statistics it normalised with.
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         new_stats["representation"],
                         narrow_variables["batch_stats"]["representation"])


@pytest.mark.slow
def test_frozen_representation_bn_batch_uses_the_batch_statistics(
    narrow_model, narrow_variables):
  images = 3.0 + 2.0 * jax.random.normal(jax.random.key(5), IMAGE_SHAPE)
  batch = {"image": images, "label": jnp.array([0, 1, 2])}
  metrics = {}
  for mode in ("inference", "batch"):
    loss_fn = objectives.location_loss(
        narrow_model, location_config(frozen_representation_bn=mode))
    metrics[mode] = loss_fn(narrow_variables["params"],
                            narrow_variables["batch_stats"], batch,
                            jax.random.key(0))[1][1]
  # The stored averages are those of N(0, 1) inputs; these images are not.
  assert not np.isclose(float(metrics["inference"]["location_nll"]),
                        float(metrics["batch"]["location_nll"]))


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_code_reading_matches_numpy(narrow_model, narrow_variables):
  """The original code's eq. 5: targets ranked by the predicted class's
  logit, the state following the model's own samples, loss averaged over
  steps."""
  num_glimpses = 4
  loss_fn = objectives.location_loss(
      narrow_model, location_config(reading="code",
                                    num_glimpses=num_glimpses))
  images = jax.random.normal(jax.random.key(6), IMAGE_SHAPE)
  key = jax.random.key(7)
  _, (_, metrics) = loss_fn(narrow_variables["params"],
                            narrow_variables["batch_stats"],
                            {"image": images, "label": jnp.zeros(3, jnp.int32)},
                            key)

  logits2d = np.asarray(narrow_model.apply(
      narrow_variables, images, method=type(narrow_model).represent).logits2d)
  out, _ = narrow_model.apply(
      narrow_variables, images, num_glimpses=num_glimpses, key=key, train=True,
      freeze_representation=True, mutable=["batch_stats"])
  location_logits = np.asarray(out.location_logits, np.float64)
  sampled = np.asarray(out.locations)

  batch, height, width, classes = logits2d.shape
  flat = logits2d.reshape(batch, height * width, classes)
  predicted = flat.mean(1).argmax(-1)
  scores = flat[np.arange(batch), :, predicted]
  targets = np.argsort(-scores, axis=1, kind="stable")[:, :num_glimpses]
  log_probs = np_log_softmax(location_logits)
  expected = -np.mean([[log_probs[b, t, targets[b, t]]
                        for t in range(num_glimpses)] for b in range(batch)])
  np.testing.assert_allclose(float(metrics["location_nll"]), expected,
                             rtol=1e-5)
  # The state follows the samples: step t masks what was sampled before it.
  for b in range(batch):
    for t in range(1, num_glimpses):
      assert np.all(location_logits[b, t, sampled[b, :t]] < -1e4)
      unvisited = np.setdiff1d(np.arange(height * width), sampled[b, :t])
      assert np.all(location_logits[b, t, unvisited] > -1e4)


@pytest.mark.parametrize("ranking", ["reading",
                                     "predicted_probability_beyond_paper"])
def test_code_targets_with_teacher_forcing_match_numpy(narrow_model,
                                                      narrow_variables,
                                                      ranking):
  """The code's targets (or the predicted class's probability) and
  averaging, the paper's teacher-forced state: step t masks the targets
  before it, whatever the model would sample."""
  num_glimpses = 4
  loss_fn = objectives.location_loss(
      narrow_model, location_config(reading="code_teacher_forced",
                                    num_glimpses=num_glimpses,
                                    target_ranking=ranking))
  images = jax.random.normal(jax.random.key(8), IMAGE_SHAPE)
  _, (_, metrics) = loss_fn(narrow_variables["params"],
                            narrow_variables["batch_stats"],
                            {"image": images, "label": jnp.zeros(3, jnp.int32)},
                            jax.random.key(9))
  logits2d = np.asarray(narrow_model.apply(
      narrow_variables, images, method=type(narrow_model).represent).logits2d)
  batch, height, width, classes = logits2d.shape
  flat = logits2d.reshape(batch, height * width, classes)
  predicted = flat.mean(1).argmax(-1)
  scores = (flat if ranking == "reading" else np_log_softmax(flat))
  targets = np.argsort(-scores[np.arange(batch), :, predicted], axis=1,
                       kind="stable")[:, :num_glimpses]
  out, _ = narrow_model.apply(
      narrow_variables, images, num_glimpses=num_glimpses, train=True,
      freeze_representation=True, forced_locations=jnp.asarray(targets),
      mutable=["batch_stats"])
  log_probs = np_log_softmax(np.asarray(out.location_logits, np.float64))
  expected = -np.mean([[log_probs[b, t, targets[b, t]]
                        for t in range(num_glimpses)] for b in range(batch)])
  np.testing.assert_allclose(float(metrics["location_nll"]), expected,
                             rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(out.locations), targets)


def test_with_location_network_swaps_all_but_the_representation():
  from saccader_jax.objectives import saccader as saccader_objectives  # pylint: disable=g-import-not-at-top
  def model(value):
    return {c: {p: {"w": jnp.full((2,), value)}
                for p in ("representation", "attention", "mixing", "cell")}
            for c in ("params", "batch_stats")}
  swapped = saccader_objectives.with_location_network(model(3.0), model(2.0))
  for collection in ("params", "batch_stats"):
    assert float(swapped[collection]["representation"]["w"][0]) == 3.0
    for part in ("attention", "mixing", "cell"):
      assert float(swapped[collection][part]["w"][0]) == 2.0
