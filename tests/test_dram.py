"""DRAM: its retina, its variables, its rollout and its REINFORCE term."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saccader_jax
from configs import imagenet_saccader
from saccader_jax import losses
from saccader_jax import models
from saccader_jax.models import dram as dram_lib
from saccader_jax.models import foveation
from tests.helpers import with_unit_bn_scales


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def small_dram_config(image_size=48, glimpse_size=21):
  config = imagenet_saccader.get_dram_config()
  config.num_classes = 7
  config.glimpse_size = glimpse_size
  net = config.glimpse_network
  net.units, net.widths, net.strides = (1, 1), (4, 8), (2, 1)
  net.root_channels, net.root_kernel, net.root_stride = 8, 3, 2
  net.root_pool = False
  config.classification_units = 16
  config.location_units = 12
  return config


@pytest.fixture(scope="module")
def small():
  """A small DRAM on 48x48 RGB images, every batch-norm scale one."""
  config = small_dram_config()
  model = models.create_model(config)
  images = jax.random.normal(jax.random.key(1), (3, 48, 48, 3))
  variables = model.init(jax.random.key(0), images, num_glimpses=1)
  variables = {"params": with_unit_bn_scales(variables["params"]),
               "batch_stats": variables["batch_stats"]}
  return model, variables, images


@pytest.fixture(scope="module")
def imagenet_shapes():
  """ShapeDtypeStructs of the ImageNet config's DRAM variables."""
  config = imagenet_saccader.get_config()
  model = models.create_model(config.dram)
  return jax.eval_shape(
      lambda k: models.init_variables(model, config.dataset, k),
      jax.random.key(0))


def test_imagenet_dram_has_the_papers_variable_count(imagenet_shapes):
  params, stats = imagenet_shapes["params"], imagenet_shapes["batch_stats"]
  assert count(params) + count(stats) == 45_610_219
  assert count(params) == 45_564_779 and count(stats) == 45_440
  assert {part: count(tree) for part, tree in params.items()} == {
      dram_lib.GLIMPSE_NETWORK: 23_556_992,
      dram_lib.CLASSIFICATION_LSTM: 12_587_008,
      dram_lib.CLASSIFIER: 1_026_025,
      dram_lib.LOCATION_LSTM: 8_392_704,
      dram_lib.EMISSION: 2_050,
  }
  assert set(stats) == {dram_lib.GLIMPSE_NETWORK}


@pytest.mark.slow
def test_glimpse_network_counts_as_keras_resnet50v2_without_top(
    imagenet_shapes):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  keras = tf.keras.applications.ResNet50V2(
      include_top=False, weights=None, input_shape=(77, 77, 15))
  trainable = sum(int(np.prod(w.shape)) for w in keras.trainable_weights)
  frozen = sum(int(np.prod(w.shape)) for w in keras.non_trainable_weights)
  assert count(imagenet_shapes["params"][dram_lib.GLIMPSE_NETWORK]) == (
      trainable)
  assert count(imagenet_shapes["batch_stats"]) == frozen


@pytest.mark.parametrize("image_size, glimpse_size, sides", [
    (224, 77, (77, 150, 224)), (64, 29, (29, 46, 64))])
def test_fields_of_view(image_size, glimpse_size, sides):
  assert foveation.resolution_sides(glimpse_size, image_size, 3) == sides


def test_glimpse_network_sees_15_channels_on_imagenet(imagenet_shapes):
  root = imagenet_shapes["params"][dram_lib.GLIMPSE_NETWORK]["root_conv"]["kernel"]
  assert root.shape == (7, 7, 15, 64)


@pytest.mark.parametrize("image_size, side", [(224, 77), (64, 29), (48, 21),
                                              (37, 8)])
def test_finest_box_lies_inside_the_image_at_the_extreme_locations(
    image_size, side):
  scale = foveation.location_scale(side, image_size)
  corners = jnp.array([[-scale, -scale], [scale, scale], [-scale, scale],
                       [0.0, 0.0]], jnp.float32)
  boxes = np.asarray(foveation.boxes(corners, side, image_size))
  assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= image_size).all()
  np.testing.assert_array_equal(boxes[:, 2:] - boxes[:, :2], side)
  np.testing.assert_array_equal(boxes[0, :2], [0, 0])
  np.testing.assert_array_equal(boxes[1, 2:], [image_size, image_size])


def test_crop_is_a_numpy_slice_with_edges_repeated_outside():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(3, 20, 20, 2)).astype(np.float32)
  locations = np.array([[0.1, -0.3], [-1.0, 1.0], [0.9, 0.0]], np.float32)
  side = 7
  crops = np.asarray(foveation.extract(jnp.asarray(images),
                                       jnp.asarray(locations), side))
  padded = np.pad(images, ((0, 0), (side, side), (side, side), (0, 0)),
                  mode="edge")
  for b, (y, x) in enumerate(locations):
    top = math.floor((20 * (y + 1) - side) / 2)
    left = math.floor((20 * (x + 1) - side) / 2)
    expected = padded[b, top + side:top + 2 * side,
                      left + side:left + 2 * side]
    np.testing.assert_array_equal(crops[b], expected)
  # Inside the image it is exactly the slice.
  np.testing.assert_array_equal(crops[0], images[0, 7:14, 3:10])


def test_position_channels_span_rows_then_columns():
  channels = np.asarray(foveation.position_channels(1, 5, 3))
  np.testing.assert_allclose(channels[0, :, 0, 0], np.linspace(-1, 1, 5))
  np.testing.assert_allclose(channels[0, 0, :, 1], np.linspace(-1, 1, 3))
  np.testing.assert_allclose(channels[0, :, 2, 0], np.linspace(-1, 1, 5))


def test_step_logits_have_no_gradient_from_the_coarse_resolutions(small):
  model, variables, _ = small
  rng = np.random.default_rng(1)
  glimpses = [jnp.asarray(rng.normal(size=(2, 21, 21, 5)), jnp.float32)
              for _ in range(3)]
  net_vars = {"params": variables["params"][dram_lib.GLIMPSE_NETWORK],
              "batch_stats": variables["batch_stats"][dram_lib.GLIMPSE_NETWORK]}

  def features(glimpses, coarse):
    return jnp.sum(model.glimpse_network.apply(
        net_vars, foveation.network_input(glimpses, coarse)) ** 2)

  fine_only = jax.grad(features)(glimpses, False)
  assert np.abs(np.asarray(fine_only[0])).sum() > 0
  for coarse_grad in fine_only[1:]:
    np.testing.assert_array_equal(coarse_grad, 0.0)
  # The coarse inputs are their spatial means then.
  stacked = foveation.network_input(glimpses, False)
  np.testing.assert_allclose(
      stacked[..., 5:10],
      np.broadcast_to(np.asarray(glimpses[1]).mean(axis=(1, 2), keepdims=True),
                      (2, 21, 21, 5)), rtol=1e-5, atol=1e-7)
  # With all resolutions (the context step) every one has a gradient.
  every = jax.grad(features)(glimpses, True)
  assert all(np.abs(np.asarray(g)).sum() > 0 for g in every)


def test_rollout_runs_past_the_trained_length(small):
  model, variables, images = small
  out = model.apply(variables, images, num_glimpses=12)
  chex.assert_shape(out.locations, (3, 12, 2))
  chex.assert_shape(out.logits, (3, 12, 7))
  assert np.isfinite(np.asarray(out.logits)).all()
  scale = foveation.location_scale(21, 48)
  assert (np.abs(np.asarray(out.locations)) < scale).all()
  # Greedy: each glimpse is the policy's mean, and the first six do not
  # depend on how many follow.
  np.testing.assert_array_equal(out.locations, out.mean_locations)
  six = model.apply(variables, images, num_glimpses=6)
  np.testing.assert_allclose(six.logits, out.logits[:, :6], rtol=1e-5,
                             atol=1e-6)


def test_greedy_is_deterministic_and_sampling_reproducible_per_key(small):
  model, variables, images = small
  first = model.apply(variables, images, num_glimpses=5)
  second = model.apply(variables, images, num_glimpses=5)
  np.testing.assert_array_equal(first.locations, second.locations)
  np.testing.assert_array_equal(first.logits, second.logits)

  def sample(seed, steps=5):
    return model.apply(variables, images, num_glimpses=steps,
                       key=jax.random.key(seed))

  a, b, c = sample(3), sample(3), sample(4)
  np.testing.assert_array_equal(a.locations, b.locations)
  np.testing.assert_array_equal(a.logits, b.logits)
  assert not np.array_equal(a.locations, c.locations)
  # Samples lie within the glimpse range, about stddev from their means.
  scale = foveation.location_scale(21, 48)
  assert (np.abs(np.asarray(a.locations)) <= scale + 1e-7).all()
  spread = np.std(np.asarray(a.locations - a.mean_locations))
  assert 0.03 < spread < 0.2
  # The first t sampled glimpses do not depend on T (one key per step).
  np.testing.assert_array_equal(sample(3, 8).locations[:, :5], a.locations)


def test_lstm_cell_is_tfs_with_forget_bias_one():
  cell = dram_lib.LSTMCell(3)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 4)).astype(np.float32)
  c = rng.normal(size=(2, 3)).astype(np.float32)
  h = rng.normal(size=(2, 3)).astype(np.float32)
  params = cell.init(jax.random.key(0), (c, h), x)
  params = jax.tree_util.tree_map(
      lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
  (c_new, h_new), out = cell.apply(params, (c, h), x)
  kernel = np.asarray(params["params"]["gates"]["kernel"])
  bias = np.asarray(params["params"]["gates"]["bias"])
  assert kernel.shape == (7, 12)
  gates = np.concatenate([x, h], 1) @ kernel + bias
  i, j, f, o = np.split(gates, 4, axis=1)
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  expected_c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
  expected_h = sigmoid(o) * np.tanh(expected_c)
  np.testing.assert_allclose(c_new, expected_c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(h_new, expected_h, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out, h_new)


@pytest.mark.parametrize("average_over_steps", [True, False])
def test_reinforce_gradient_matches_its_analytic_value(average_over_steps):
  stddev = 0.1
  means = jnp.array([[[0.1, -0.2], [0.3, 0.0]],
                     [[-0.5, 0.4], [0.2, 0.2]],
                     [[0.0, 0.0], [-0.1, 0.6]]], jnp.float32)   # [3, 2, 2]
  samples = means + jnp.array([[[0.05, -0.1], [0.02, 0.1]],
                               [[-0.15, 0.0], [0.1, -0.05]],
                               [[0.2, 0.1], [0.0, -0.2]]], jnp.float32)
  rewards = jnp.array([1.0, 0.0, 1.0])

  def loss(m):
    return losses.gaussian_reinforce_loss(
        m, samples, rewards, stddev, average_over_steps).mean()

  grad = np.asarray(jax.grad(loss)(means))
  advantage = np.asarray(rewards) - np.mean(np.asarray(rewards))
  # d/dmean of -(r - b) log N(l; mean, s^2) = -(r - b) (l - mean) / s^2.
  expected = (-advantage[:, None, None] * np.asarray(samples - means)
              / stddev ** 2) / 3
  if average_over_steps:
    expected = expected / 2
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
  # And its value: log-densities summed over (y, x).
  z = np.asarray(samples - means) / stddev
  log_probs = (-0.5 * z ** 2 - math.log(stddev)
               - 0.5 * math.log(2 * math.pi)).sum(-1)
  value = -(log_probs * advantage[:, None])
  value = value.mean(1) if average_over_steps else value.sum(1)
  np.testing.assert_allclose(loss(means), value.mean(), rtol=1e-5)


def test_dram_policy_has_the_policy_checks_and_output(small):
  model, variables, images = small
  policy = saccader_jax.make_policy(model, variables, num_channels=3)
  assert isinstance(policy, saccader_jax.RolloutPolicy)
  out = policy(images, 9)
  direct = model.apply(variables, images, num_glimpses=9)
  # Jitted against op by op: equal up to float32 reassociation.
  np.testing.assert_allclose(out.locations, direct.locations, atol=1e-6)
  np.testing.assert_allclose(out.step_logits, direct.logits, atol=1e-5)
  np.testing.assert_array_equal(out.logits, out.step_logits[:, -1])
  np.testing.assert_array_equal(
      out.boxes, foveation.boxes(out.locations, 21, 48))
  assert out.location_probs is None
  sampled = policy(images, 4, key=jax.random.key(2))
  again = policy(images, 4, key=jax.random.key(2))
  np.testing.assert_array_equal(sampled.locations, again.locations)
  for bad, message in [
      ((images[:, :, :40], 3, None), "square"),
      ((images[:, :20, :20], 3, None), "smaller than its 21x21 glimpse"),
      ((images, 0, None), "at least 1"),
      ((images[..., :1], 3, None), "3 channels"),
      ((images, 3, 5), "PRNG key")]:
    with pytest.raises(ValueError, match=message):
      policy(*bad)
