"""Each loss against a direct NumPy evaluation of its equation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saccader_jax import losses

RNG = np.random.default_rng(0)


def np_log_softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def test_eq4_geometric_mean_cross_entropy():
  logits = RNG.normal(size=(3, 6, 5)) * 3  # batch, h*w, classes
  labels = np.array([0, 4, 2])
  probs = np.exp(np_log_softmax(logits))
  geo = np.prod(probs ** (1 / 6), axis=1)  # [batch, classes]
  expected = -np.log(geo[np.arange(3), labels] / geo.sum(-1))
  got = losses.geometric_mean_cross_entropy(jnp.asarray(logits, jnp.float32),
                                            jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_eq4_equals_cross_entropy_of_mean_logits():
  # log_softmax differs from the logits by a per-location constant, so the
  # geometric mean's softmax is the softmax of the mean logits.
  logits = jnp.asarray(RNG.normal(size=(2, 9, 7)), jnp.float32)
  labels = jnp.array([1, 6])
  mean_ce = -jax.nn.log_softmax(logits.mean(1))[jnp.arange(2), labels]
  np.testing.assert_allclose(
      losses.geometric_mean_cross_entropy(logits, labels), mean_ce, rtol=1e-5)


def test_geometric_mean_cross_entropy_is_stable_for_huge_logits():
  logits = jnp.array([[[1e4, -1e4, 0.0], [2e4, 0.0, -3e4]]])
  loss = losses.geometric_mean_cross_entropy(logits, jnp.array([1]))
  assert np.isfinite(loss).all()
  np.testing.assert_allclose(loss, [(2e4 + 2e4) / 2], rtol=1e-6)


@pytest.mark.parametrize("ranking", ["max_logit", "predicted_class"])
def test_location_targets_rank_locations_descending(ranking):
  logits2d = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
  flat = logits2d.reshape(2, 12, 5)
  if ranking == "max_logit":
    scores = flat.max(-1)
  else:
    predicted = flat.mean(1).argmax(-1)
    scores = flat[np.arange(2), :, predicted]
  expected = np.argsort(-scores, axis=1)[:, :7]
  got = losses.location_targets(jnp.asarray(logits2d), 7, ranking)
  np.testing.assert_array_equal(got, expected)


def test_location_targets_reject_unknown_ranking():
  with pytest.raises(ValueError, match="max_logit"):
    losses.location_targets(jnp.zeros((1, 2, 2, 3)), 2, "min_logit")


def test_eq5_location_pretraining_loss():
  logits = RNG.normal(size=(2, 4, 6)).astype(np.float32)  # batch, T, L
  targets = np.array([[0, 5, 2, 1], [3, 3, 4, 0]])
  probs = np.exp(np_log_softmax(logits))
  picked = probs[np.arange(2)[:, None], np.arange(4)[None], targets]
  expected = -np.log(np.prod(picked, axis=1))
  got = losses.location_pretraining_loss(jnp.asarray(logits),
                                         jnp.asarray(targets))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  averaged = losses.location_pretraining_loss(
      jnp.asarray(logits), jnp.asarray(targets), average_over_steps=True)
  np.testing.assert_allclose(averaged, expected / 4, rtol=1e-5)


def test_eq6_reinforce_loss_value_and_gradient():
  num_samples, batch, steps, locs = 2, 3, 4, 5
  logits = RNG.normal(size=(num_samples, batch, steps, locs))
  locations = RNG.integers(0, locs, size=(num_samples, batch, steps))
  rewards = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
  baseline = rewards.mean()
  log_pi = np_log_softmax(logits)
  picked = np.take_along_axis(log_pi, locations[..., None], -1)[..., 0]
  expected = -np.sum(picked.sum(-1) * (rewards - baseline), axis=0)

  loss_fn = lambda lg, r: losses.reinforce_loss(
      lg, jnp.asarray(locations), r).mean()
  got = losses.reinforce_loss(jnp.asarray(logits, jnp.float32),
                              jnp.asarray(locations),
                              jnp.asarray(rewards, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  averaged = losses.reinforce_loss(jnp.asarray(logits, jnp.float32),
                                   jnp.asarray(locations),
                                   jnp.asarray(rewards, jnp.float32), True)
  np.testing.assert_allclose(averaged, expected / (num_samples * steps),
                             rtol=1e-5)

  # d/dlogits of -(r - b) log softmax(logits)[l] = -(r - b)(onehot(l) - p).
  grad = jax.grad(loss_fn)(jnp.asarray(logits, jnp.float32),
                           jnp.asarray(rewards, jnp.float32))
  onehot = np.eye(locs)[locations]
  advantage = (rewards - baseline)[..., None, None]
  expected_grad = -advantage * (onehot - np.exp(log_pi)) / batch
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
  # The rewards (and so the baseline) carry no gradient.
  reward_grad = jax.grad(loss_fn, argnums=1)(
      jnp.asarray(logits, jnp.float32), jnp.asarray(rewards, jnp.float32))
  np.testing.assert_array_equal(reward_grad, 0.0)


def test_correct_rewards():
  logits = jnp.array([[0.1, 2.0, 0.3], [3.0, 0.0, 1.0]])
  labels = jnp.array([1, 2])
  np.testing.assert_array_equal(losses.correct_rewards(logits, labels), [1, 0])
  np.testing.assert_array_equal(
      losses.correct_rewards(logits, labels, plus_minus_one=True), [1, -1])


def test_l2_penalty_modes_count_kernels_only():
  params = {"conv": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.ones(3)},
            "bn": {"scale": jnp.full((3,), 5.0)},
            "dense": {"kernel": jnp.full((4,), 1.0)}}
  total, count = 6 * 4.0 + 4 * 1.0, 10
  np.testing.assert_allclose(losses.l2_penalty(params, 8e-5, "normalized"),
                             8e-5 * total / count, rtol=1e-6)
  np.testing.assert_allclose(losses.l2_penalty(params, 8e-5, "plain"),
                             0.5 * 8e-5 * total, rtol=1e-6)
  assert float(losses.l2_penalty(params, 8e-5, "none")) == 0.0
  with pytest.raises(ValueError, match="normalized"):
    losses.l2_penalty(params, 8e-5, "l1")
