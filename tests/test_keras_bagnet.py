"""The TF-Keras BagNet of benchmark_train is the project's network: the same
variables, the same function, the same stage-1 loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet_saccader
from saccader_jax import models
from saccader_jax.objectives import saccader as saccader_objectives

keras_bagnet = pytest.importorskip("experiments.keras_bagnet")


def test_imagenet_bagnet_has_the_projects_variable_counts():
  config = imagenet_saccader.get_config()
  keras_model = keras_bagnet.from_model_config(config.model, 224, 3)
  assert keras_bagnet.variable_counts(keras_model) == (20_574_249, 54_144)
  assert keras_bagnet.representation_variable_counts(config) == (20_574_249,
                                                                 54_144)


@pytest.mark.slow
def test_same_outputs_and_stage1_loss_given_the_same_variables():
  config = imagenet_saccader.get_config()
  config.model.num_classes = 11
  config.dataset.image_size = 96
  model = models.create_model(config.model)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(1))

  # Batch-norm scales, offsets and statistics away from their initial 1 / 0,
  # so that a swapped or ignored one shows.
  def perturb(path, x):
    if path[-1].key in ("scale", "bias", "mean", "var"):
      key = jax.random.fold_in(jax.random.key(2), len(str(path)) + x.size)
      return x + 0.2 * jax.random.uniform(key, x.shape)
    return x
  variables = jax.tree_util.tree_map_with_path(perturb, variables)
  keras_model = keras_bagnet.from_model_config(config.model, 96, 3)
  keras_bagnet.copy_flax_variables(keras_model,
                                   variables["params"]["representation"],
                                   variables["batch_stats"]["representation"])
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 96, 96, 3)).astype(np.float32)
  labels = np.array([3, 7], np.int32)

  expected = jax.jit(lambda v, x: model.apply(
      v, x, False, method=type(model).represent).logits2d)(
          variables, jnp.asarray(images))
  got = keras_model(images, training=False).numpy()
  assert got.shape == expected.shape == (2, 3, 3, 11)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

  stage = config.stages.representation
  loss_fn = saccader_objectives.representation_loss(model, stage)
  expected_loss, _ = jax.jit(loss_fn)(
      variables["params"], variables["batch_stats"],
      {"image": jnp.asarray(images), "label": jnp.asarray(labels)},
      jax.random.key(0))
  got_loss = keras_bagnet.stage1_loss(keras_model, stage.l2_weight)(
      images, labels).numpy()
  np.testing.assert_allclose(got_loss, expected_loss, rtol=1e-4)
