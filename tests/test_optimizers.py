"""Optimizers and schedules from config by name."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from saccader_jax import optimizers

PARAMS = {"conv": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))},
          "head": {"kernel": jnp.ones((3,))}}
GRADS = jax.tree_util.tree_map(lambda x: 0.5 * jnp.ones_like(x), PARAMS)


def optimizer_config(**fields):
  return ml_collections.ConfigDict(dict({"name": "sgd_nesterov"}, **fields))


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_every_optimizer_builds_and_descends(name):
  tx = optimizers.create_optimizer(optimizer_config(name=name), 0.1)
  state = tx.init(PARAMS)
  updates, _ = tx.update(GRADS, state, PARAMS)
  for update in jax.tree_util.tree_leaves(updates):
    assert np.all(np.asarray(update) < 0)  # against a positive gradient


def test_sgd_nesterov_matches_its_formula():
  tx = optimizers.create_optimizer(optimizer_config(momentum=0.9), 0.1)
  params, state = PARAMS, tx.init(PARAMS)
  velocity = 0.0
  for _ in range(3):
    updates, state = tx.update(GRADS, state, params)
    params = optax.apply_updates(params, updates)
    velocity = 0.9 * velocity + 0.5
    expected_update = -0.1 * (0.5 + 0.9 * velocity)  # Nesterov look-ahead
    np.testing.assert_allclose(updates["head"]["kernel"], expected_update,
                               rtol=1e-6)


def test_decoupled_weight_decay_touches_kernels_only():
  tx = optimizers.create_optimizer(
      optimizer_config(name="sgd", weight_decay=0.1), 1.0)
  zero = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates, _ = tx.update(zero, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1)
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)


def test_frozen_parameters_get_no_update_even_with_weight_decay():
  trainable = {"conv": {"kernel": False, "bias": False},
               "head": {"kernel": True}}
  tx = optimizers.create_optimizer(
      optimizer_config(name="adamw", weight_decay=0.1), 0.1, trainable)
  updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
  np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)
  np.testing.assert_array_equal(updates["conv"]["bias"], 0.0)
  assert np.all(np.asarray(updates["head"]["kernel"]) < 0)


def test_grad_clip_norm_scales_the_trained_gradients_only():
  # Trained: head kernel, gradient norm 0.5 * sqrt(3); the frozen conv
  # parameters carry a huge gradient that must not enter the norm.
  trainable = {"conv": {"kernel": False, "bias": False},
               "head": {"kernel": True}}
  grads = {"conv": {"kernel": jnp.full((3, 3), 1e6), "bias": jnp.ones((3,))},
           "head": {"kernel": 0.5 * jnp.ones((3,))}}
  norm = 0.5 * np.sqrt(3)
  for clip, scale in ((0.0, 1.0), (10.0, 1.0), (0.25, 0.25 / norm)):
    tx = optimizers.create_optimizer(
        optimizer_config(name="sgd", grad_clip_norm=clip), 1.0, trainable)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["head"]["kernel"], -0.5 * scale,
                               rtol=1e-6)
    np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(ValueError, match="adamw.*lamb.*lars.*sgd_nesterov.*"
                     r"close: \['lion'\]"):
    optimizers.create_optimizer(optimizer_config(name="lino"), 0.1)
  with pytest.raises(ValueError, match="constant.*step.*warmup_cosine"):
    optimizers.create_learning_rate_schedule(
        ml_collections.ConfigDict({"name": "exponential"}), 0.1, 100)


def test_warmup_cosine_schedule():
  schedule = optimizers.create_learning_rate_schedule(
      ml_collections.ConfigDict({"name": "warmup_cosine",
                                 "warmup_fraction": 0.1}), 1.0, 100)
  np.testing.assert_allclose(schedule(0), 0.0)
  np.testing.assert_allclose(schedule(5), 0.5)
  np.testing.assert_allclose(schedule(10), 1.0)
  np.testing.assert_allclose(schedule(55), 0.5, atol=1e-6)
  np.testing.assert_allclose(schedule(100), 0.0, atol=1e-6)


@pytest.mark.parametrize("total_steps", [1, 10, 19])
def test_warmup_cosine_without_warmup_steps_is_quiet_and_the_same(
    total_steps, caplog):
  """A stage too short for one warm-up step: the plain cosine, equal to
  optax's warm-up cosine with 0 warm-up steps, with no log line."""
  config = ml_collections.ConfigDict({"name": "warmup_cosine",
                                      "warmup_fraction": 0.05,
                                      "end_factor": 0.01})
  with caplog.at_level("INFO"):
    schedule = optimizers.create_learning_rate_schedule(config, 0.002,
                                                        total_steps)
  assert not caplog.records
  with caplog.at_level("INFO"):
    reference = optax.warmup_cosine_decay_schedule(
        0.0, 0.002, 0, total_steps, 0.002 * 0.01)
  assert "transition_steps" in caplog.text   # what the plain cosine avoids
  steps = np.arange(total_steps + 2)
  np.testing.assert_array_equal(jax.vmap(schedule)(steps),
                                jax.vmap(reference)(steps))


def test_step_schedule_decays_at_fractions():
  schedule = optimizers.create_learning_rate_schedule(
      ml_collections.ConfigDict({"name": "step", "decay_fractions": (0.5, 0.8),
                                 "decay_factor": 0.1}), 1.0, 100)
  np.testing.assert_allclose([schedule(s) for s in (0, 49, 50, 79, 80, 99)],
                             [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd_nesterov", "adam"])
def test_a_part_with_a_rate_factor_moves_that_much_further(name):
  factors = lambda params: {"conv": jax.tree_util.tree_map(
      lambda _: 10.0, params["conv"]), "head": {"kernel": 1.0}}
  plain = optimizers.create_optimizer(optimizer_config(name=name), 0.1,
                                      {"conv": True, "head": True})
  scaled = optimizers.create_optimizer(optimizer_config(name=name), 0.1,
                                       {"conv": True, "head": True}, factors)
  p_plain = p_scaled = PARAMS
  s_plain, s_scaled = plain.init(PARAMS), scaled.init(PARAMS)
  for _ in range(3):
    u_plain, s_plain = plain.update(GRADS, s_plain, p_plain)
    u_scaled, s_scaled = scaled.update(GRADS, s_scaled, p_scaled)
    np.testing.assert_allclose(u_scaled["conv"]["kernel"],
                               10 * u_plain["conv"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(u_scaled["head"]["kernel"],
                               u_plain["head"]["kernel"], rtol=1e-6)
    p_plain = optax.apply_updates(p_plain, u_plain)
    p_scaled = optax.apply_updates(p_scaled, u_scaled)


def test_stage_3_location_rate_factor_applies_to_the_location_network_only():
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  from saccader_jax import objectives  # pylint: disable=g-import-not-at-top
  from saccader_jax import stages  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_whole_items_saccader.get_config()
  config.schedule.name = "constant"     # no warm-up: step 0 updates
  params = {"representation": {"kernel": jnp.ones(3)},
            "attention": {"kernel": jnp.ones(3)}, "cell": {"a": jnp.ones(3)}}
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  stage = objectives.get_stage("policy")
  # At the default factor 1 the optimizer state is as without factors.
  assert not stage.has_rate_factors(config.stages.policy)
  base, _ = stages.stage_optimizer(config, "policy", 100)
  config.stages.policy.location_learning_rate_factor = 30.0
  scaled, _ = stages.stage_optimizer(config, "policy", 100)
  u_base, _ = base.update(grads, base.init(params), params)
  u_scaled, _ = scaled.update(grads, scaled.init(params), params)
  for part in ("attention", "cell"):
    np.testing.assert_allclose(jax.tree_util.tree_leaves(u_scaled[part]),
                               30 * np.asarray(jax.tree_util.tree_leaves(
                                   u_base[part])), rtol=1e-6)
  np.testing.assert_allclose(u_scaled["representation"]["kernel"],
                             u_base["representation"]["kernel"], rtol=1e-6)
  assert np.all(np.asarray(u_base["representation"]["kernel"]) < 0)


def _descend(tx, steps=30):
  """Minimises 0.5 * |x - 3|^2 from 0 with tx; the final x."""
  x = {"w": {"kernel": jnp.zeros(3)}}
  state = tx.init(x)
  for _ in range(steps):
    grads = jax.tree_util.tree_map(lambda p: p - 3.0, x)
    updates, state = tx.update(grads, state, x)
    x = optax.apply_updates(x, updates)
  return np.asarray(x["w"]["kernel"])


@pytest.mark.parametrize("name, kwargs", [
    ("lion", {"b1": 0.95}), ("optax.lion", {}), ("adafactor", {}),
    ("optax.contrib.prodigy", {}), ("contrib.prodigy", {"betas": (0.8, 0.99)}),
    ("scale_by_adam", {})])
def test_any_optax_factory_by_name(name, kwargs):
  config = optimizer_config(name=name, kwargs=kwargs)
  assert optimizers.optimizer_problem(config) is None
  before = np.abs(_descend(optimizers.create_optimizer(config, 0.1), 0) - 3)
  after = np.abs(_descend(optimizers.create_optimizer(config, 0.1)) - 3)
  assert np.all(after < before), (name, after)


def test_an_optax_factory_is_built_with_its_arguments_and_the_rate():
  config = optimizer_config(name="lion", kwargs={"b1": 0.5, "b2": 0.9})
  tx = optimizers.create_optimizer(config, 0.01)
  reference = optax.lion(0.01, b1=0.5, b2=0.9)
  grads = jax.tree_util.tree_map(lambda x: x * 0.5, PARAMS)
  mine, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  theirs, _ = reference.update(grads, reference.init(PARAMS), PARAMS)
  jax.tree_util.tree_map(np.testing.assert_array_equal, mine, theirs)
  # A transformation without a learning rate is followed by one.
  tx = optimizers.create_optimizer(optimizer_config(name="scale_by_adam"), 0.1)
  adam = optax.adam(0.1)
  mine, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
  theirs, _ = adam.update(GRADS, adam.init(PARAMS), PARAMS)
  jax.tree_util.tree_map(np.testing.assert_allclose, mine, theirs)
  assert optimizers.describe(config) == "lion(b1=0.5, b2=0.9)"


def test_an_optax_factorys_weight_decay_touches_kernels_only():
  tx = optimizers.create_optimizer(
      optimizer_config(name="lion", kwargs={"weight_decay": 0.1}), 1.0)
  zero = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates, _ = tx.update(zero, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1)
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)


def test_bad_optax_arguments_name_the_factorys_parameters():
  problem = optimizers.optimizer_problem(
      optimizer_config(name="lion", kwargs={"beta1": 0.9}))
  assert problem == ("kwargs", {"beta1": 0.9},
                     "['beta1'] not arguments of optax.lion, which takes "
                     "['b1', 'b2', 'mu_dtype', 'weight_decay', 'mask']")
  key, _, why = optimizers.optimizer_problem(
      optimizer_config(name="contrib.sam"))
  assert key == "kwargs" and "optax.contrib.sam raised TypeError" in why
  # An optax function that is not an optimizer or a transformation.
  key, value, why = optimizers.optimizer_problem(
      optimizer_config(name="softmax_cross_entropy"))
  assert (key, value) == ("name", "softmax_cross_entropy")
  assert why.startswith("neither a built-in optimizer")
  with pytest.raises(ValueError, match=r"^config.optimizer.kwargs="):
    optimizers.create_optimizer(
        optimizer_config(name="lion", kwargs={"beta1": 0.9}), 0.1)
