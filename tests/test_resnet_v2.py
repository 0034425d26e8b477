"""The full-image classifier: ResNet-v2 in the Keras ResNet50V2 layout, and
the stage that trains it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import fashion_mnist_whole_items_saccader
from configs import imagenet_saccader
from saccader_jax import models
from saccader_jax import stages
from saccader_jax.models.resnet_v2 import ResNetV2


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def abstract_counts(model, shape):
  variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape)),
                             jax.random.key(0))
  return count(variables["params"]), count(variables["batch_stats"])


def keras_counts(**kwargs):
  tf = pytest.importorskip("tensorflow")
  keras_model = tf.keras.applications.ResNet50V2(weights=None, **kwargs)
  return (count(keras_model.trainable_weights),
          count(keras_model.non_trainable_weights))


def test_resnet_v2_50_has_keras_resnet50v2s_variables():
  ours = abstract_counts(ResNetV2(num_classes=1000), (1, 224, 224, 3))
  assert ours == keras_counts() == (25_568_360, 45_440)


def test_headless_resnet_v2_50_on_15_channels_matches_keras():
  # DRAM's glimpse network: 77x77 glimpses of 3 resolutions x 5 channels.
  ours = abstract_counts(ResNetV2(num_classes=None), (1, 77, 77, 15))
  assert ours == keras_counts(include_top=False,
                              input_shape=(77, 77, 15)) == (23_556_992, 45_440)


def test_imagenet_config_classifier_is_resnet_v2_50_with_1001_classes():
  config = imagenet_saccader.get_config()
  model = models.create_model(config.classifier)
  params, stats = abstract_counts(model, (1, 224, 224, 3))
  assert (params, stats) == (25_568_360 + 2048 + 1, 45_440)


def test_classifier_stage_trains_the_classifier_alone():
  config = fashion_mnist_whole_items_saccader.get_config()
  config.classifier.units, config.classifier.widths = (1, 1), (4, 8)
  config.classifier.strides = (2, 1)
  model = stages.stage_model(config, "classifier")
  assert isinstance(model, ResNetV2)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(16, 64, 64, 1)),
                                jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
  setup = stages.create_stage(config, "classifier", model, variables, 40)
  step = jax.jit(setup.train_step)
  state, first = step(setup.state, batch, jax.random.key(0))
  for _ in range(30):
    state, metrics = step(state, batch, jax.random.key(0))
  # It fits a fixed batch: the loss falls, and every parameter moved.
  assert float(metrics["cross_entropy"]) < 0.8 * float(first["cross_entropy"])
  moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)),
                                 state.params, variables["params"])
  assert all(jax.tree_util.tree_leaves(moved))
