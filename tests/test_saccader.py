"""The assembled model: glimpse logits, averaging, and frozen representation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

IMAGE_SHAPE = (2, 93, 93, 3)


def test_glimpse_logits_are_logits2d_at_the_chosen_locations(
    narrow_model, narrow_variables):
  images = jax.random.normal(jax.random.key(0), IMAGE_SHAPE)
  out = narrow_model.apply(narrow_variables, images, num_glimpses=4)
  flat = np.asarray(out.logits2d).reshape(2, 9, -1)
  for b in range(2):
    for t in range(4):
      np.testing.assert_array_equal(out.glimpse_logits[b, t],
                                    flat[b, out.locations[b, t]])
  np.testing.assert_allclose(out.logits, np.asarray(out.glimpse_logits).mean(1),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_freeze_representation_blocks_gradients_and_statistics(
    narrow_model, narrow_variables):
  images = jax.random.normal(jax.random.key(1), IMAGE_SHAPE)

  @functools.partial(jax.jit, static_argnums=1)
  @functools.partial(jax.grad, has_aux=True)
  def loss_grad(params, freeze):
    out, updates = narrow_model.apply(
        {"params": params, "batch_stats": narrow_variables["batch_stats"]},
        images, num_glimpses=3, train=True, freeze_representation=freeze,
        mutable=["batch_stats"])
    return jnp.sum(jax.nn.log_softmax(out.location_logits)[..., 0]) + jnp.sum(
        out.logits), updates

  grads, updates = loss_grad(narrow_variables["params"], True)
  rep_grads = jax.tree_util.tree_leaves(grads["representation"])
  assert all(np.all(np.asarray(g) == 0) for g in rep_grads)
  assert any(np.any(np.asarray(g) != 0)
             for g in jax.tree_util.tree_leaves(grads["attention"]))
  before = narrow_variables["batch_stats"]
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         updates["batch_stats"]["representation"],
                         before["representation"])
  assert not np.array_equal(
      updates["batch_stats"]["attention"]["group0_bn1x1"]["mean"],
      before["attention"]["group0_bn1x1"]["mean"])

  grads, _ = loss_grad(narrow_variables["params"], False)
  assert any(np.any(np.asarray(g) != 0)
             for g in jax.tree_util.tree_leaves(grads["representation"]))
