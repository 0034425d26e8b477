"""Saccader + a separate high-resolution classifier (Saccader-NASNet)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saccader_jax
from configs import imagenet_saccader
from saccader_jax import models
from saccader_jax import stages
from saccader_jax.models import saccader_classnet as classnet_lib
from tests.helpers import count_variables as count
from tests.helpers import tiny_train_config
from tests.helpers import with_unit_bn_scales


def test_imagenet_crops_are_113_pixels_and_inside_the_331_image():
  config = imagenet_saccader.get_config()
  model = models.create_model(config.classnet)
  geometry = model.grid_geometry(331, 331)
  assert geometry.receptive_field == 113
  rows, cols = np.meshgrid(np.arange(geometry.grid_height),
                           np.arange(geometry.grid_width), indexing="ij")
  boxes = np.asarray(geometry.boxes(jnp.stack([rows, cols], -1)))
  np.testing.assert_array_equal(boxes[..., 2:] - boxes[..., :2], 113)
  assert boxes.min() >= 0 and boxes.max() <= 331
  # Top-left corners are the 224-px ones scaled: round(y_min 331 / 224).
  low = np.asarray(geometry.low_res.boxes(jnp.stack([rows, cols], -1)))
  expected = np.clip(np.round(low[..., :2] * 331 / 224), 0, 331 - 113)
  np.testing.assert_array_equal(boxes[..., :2], expected)
  assert models.dataset_for(config, "classnet").image_size == 331
  assert models.dataset_for(config, "model").image_size == 224


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """The tests' tiny config; a classnet at S = 36 and its variables."""
  config = tiny_train_config(str(tmp_path_factory.mktemp("classnet")))
  model = models.create_model(config.classnet)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 72, 72, 1)),
                         num_glimpses=1)
  variables = {"params": with_unit_bn_scales(variables["params"]),
               "batch_stats": variables["batch_stats"]}
  return config, model, variables


@pytest.mark.slow
def test_same_resolution_reproduces_the_saccaders_glimpses(tiny):
  config, model, variables = tiny
  images = jax.random.normal(jax.random.key(2), (3, 36, 36, 1))
  out = model.apply(variables, images, num_glimpses=4)
  saccader = models.create_model(config.model)
  own = saccader_jax.make_policy(saccader, {
      "params": variables["params"]["saccader"],
      "batch_stats": variables["batch_stats"]["saccader"]}, 1)(images, 4)
  grid = saccader.grid_geometry(36, 36)
  np.testing.assert_array_equal(grid.unflatten(out.locations), own.locations)
  np.testing.assert_array_equal(out.boxes, own.boxes)


def test_crops_of_the_high_resolution_image_go_to_the_classifier(tiny):
  config, model, variables = tiny
  images = jax.random.normal(jax.random.key(3), (2, 72, 72, 1))
  out = model.apply(variables, images, num_glimpses=3)
  rf = model.saccader.grid_geometry(36, 36).receptive_field
  side = (rf * 72) // 36
  boxes = np.asarray(out.boxes)
  np.testing.assert_array_equal(boxes[..., 2:] - boxes[..., :2], side)
  assert boxes.min() >= 0 and boxes.max() <= 72
  # The Saccader saw the image downsized to 36.
  low = models.create_model(config.model).apply(
      {"params": variables["params"]["saccader"],
       "batch_stats": variables["batch_stats"]["saccader"]},
      jax.image.resize(images, (2, 36, 36, 1), "bilinear", antialias=True),
      num_glimpses=3)
  np.testing.assert_array_equal(out.locations, low.locations)
  classifier = models.create_model(config.classifier)
  classifier_vars = {"params": variables["params"]["classifier"],
                     "batch_stats": variables["batch_stats"]["classifier"]}
  for b in range(2):
    for t in range(3):
      y0, x0, y1, x1 = boxes[b, t]
      crop = np.asarray(images)[b:b + 1, y0:y1, x0:x1]
      np.testing.assert_allclose(out.glimpse_logits[b, t],
                                 classifier.apply(classifier_vars, crop)[0],
                                 rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out.logits, out.glimpse_logits.mean(1),
                             rtol=1e-6)


def test_its_stage_trains_only_the_classifier(tiny):
  config, model, variables = tiny
  config = config.copy_and_resolve_references()
  config.stages.classnet.l2_mode = "plain"
  config.stages.classnet.l2_weight = 1e-2
  images = jax.random.normal(jax.random.key(4), (8, 72, 72, 1))
  batch = {"image": images, "label": jnp.arange(8) % 10}
  state, step, *_ = stages.create_stage(config, "classnet", model, variables,
                                        10)
  state, metrics = jax.jit(step)(state, batch, jax.random.key(0))
  assert np.isfinite(float(metrics["loss"]))
  for collection in ("params", "batch_stats"):
    new = getattr(state, collection)
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           new["saccader"], variables[collection]["saccader"])
    changed = [not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(new["classifier"]),
        jax.tree_util.tree_leaves(variables[collection]["classifier"]))]
    assert all(changed), collection


def test_policy_validates_high_resolution_images(tiny):
  _, model, variables = tiny
  policy = saccader_jax.make_policy(model, variables, 1)
  out = policy(jax.random.normal(jax.random.key(5), (2, 72, 72, 1)), 3)
  assert out.boxes.shape == (2, 3, 4)
  with pytest.raises(ValueError, match="num_glimpses must be in"):
    policy(jnp.zeros((1, 72, 72, 1)), 10_000)
  with pytest.raises(ValueError, match="3 channels|1 channels"):
    policy(jnp.zeros((1, 72, 72, 3)), 2)


def test_scaled_boxes_are_identity_at_the_same_resolution():
  boxes = jnp.array([[[0, 8, 29, 37], [35, 35, 64, 64]]], jnp.int32)
  np.testing.assert_array_equal(
      classnet_lib.scale_boxes(boxes, 29, 64, 64), boxes)
  np.testing.assert_array_equal(
      classnet_lib.scale_boxes(boxes, 29, 64, 128),
      [[[0, 16, 58, 74], [70, 70, 128, 128]]])


def test_imagenet_classnet_is_the_saccader_and_the_classifier_on_331_px():
  config = imagenet_saccader.get_config()
  model = models.create_model(config.classnet)
  dataset = models.dataset_for(config, "classnet")
  shapes = jax.eval_shape(lambda k: models.init_variables(model, dataset, k),
                          jax.random.key(0))

  # The paper's Saccader: 35,583,913 variables with 1001 classes.
  assert count({c: shapes[c]["saccader"] for c in shapes}) == 35_583_913
  classifier = jax.eval_shape(
      lambda k: models.init_variables(models.create_model(config.classifier),
                                      config.dataset, k), jax.random.key(0))
  assert count({c: shapes[c]["classifier"] for c in shapes}) == count(
      classifier)
  out = jax.eval_shape(
      lambda v, x: model.apply(v, x, num_glimpses=6), shapes,
      jax.ShapeDtypeStruct((2, 331, 331, 3), jnp.float32))
  assert out.glimpse_logits.shape == (2, 6, 1001)
  assert out.boxes.shape == (2, 6, 4)
