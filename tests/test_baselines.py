"""The baseline policies of section 4.1 against NumPy/SciPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from configs import fashion_mnist_whole_items_saccader
from saccader_jax import models
from saccader_jax import policies
from saccader_jax.policies import ordered_logits
from saccader_jax.policies import sobel
from saccader_jax.policies import uniform_random
from tests.helpers import with_unit_bn_scales

SIZE = 64   # the embedded model: receptive field 29, stride 4, 9x9 grid


@pytest.fixture(scope="module")
def setup():
  config = fashion_mnist_whole_items_saccader.get_config()
  # Narrow layers, the embedded geometry (receptive field 29, stride 4).
  rep = config.model.representation
  rep.planes, rep.stem_channels, rep.what_channels = (4, 8, 8), 8, 16
  config.model.attention.widths, config.model.mixed_channels = (16, 8), 8
  model = models.create_model(config.model)
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  # Unit scales so that the BagNet's logits differ between locations.
  variables = {"params": with_unit_bn_scales(variables["params"]),
               "batch_stats": variables["batch_stats"]}
  images = jax.random.normal(jax.random.key(1), (3, SIZE, SIZE, 1))
  return config, model, variables, images


def bagnet_logits2d(model, variables, images):
  return np.asarray(model.apply(variables, images,
                                method=models.Saccader.represent).logits2d)


@pytest.mark.parametrize("name", sorted(policies.BASELINES))
def test_all_locations_are_a_permutation_each_its_steps_argmax(setup, name):
  config, _, variables, images = setup
  policy = policies.make_baseline_policy(name, config, variables)
  grid = policy.geometry(SIZE, SIZE)
  out = policy(images, grid.num_locations, key=jax.random.key(3))
  flat = np.asarray(out.locations[..., 0] * grid.grid_width
                    + out.locations[..., 1])
  for row in flat:
    assert sorted(row.tolist()) == list(range(grid.num_locations))
  probs = np.asarray(out.location_probs).reshape(3, grid.num_locations, -1)
  if name != "random":
    np.testing.assert_array_equal(np.argmax(probs, axis=-1), flat)
  # Visited locations have (numerically) zero probability.
  for b in range(3):
    for t in range(1, grid.num_locations):
      assert probs[b, t, flat[b, :t]].max() < 1e-30


def test_glimpse_logits_are_the_bagnets_at_the_locations(setup):
  config, model, variables, images = setup
  out = policies.make_baseline_policy("sobel_mean", config, variables)(
      images, 5)
  logits2d = bagnet_logits2d(model, variables, images)
  for b in range(3):
    for t in range(5):
      row, col = np.asarray(out.locations[b, t])
      np.testing.assert_allclose(out.glimpse_logits[b, t],
                                 logits2d[b, row, col], rtol=1e-6)


def test_ordered_logits_is_an_argsort_of_the_predicted_class(setup):
  config, model, variables, images = setup
  out = policies.make_baseline_policy("ordered_logits", config, variables)(
      images, 81)
  logits2d = bagnet_logits2d(model, variables, images)
  for b in range(3):
    predicted = np.argmax(logits2d[b].mean(axis=(0, 1)))
    scores = logits2d[b, ..., predicted].ravel()
    expected = np.argsort(-scores, kind="stable")
    flat = np.asarray(out.locations[b, :, 0] * 9 + out.locations[b, :, 1])
    np.testing.assert_array_equal(flat, expected)


def test_ties_go_to_the_lower_flat_index():
  scores = jnp.array([[[1.0, 2.0, 2.0], [0.0, 2.0, 1.0]]])
  np.testing.assert_array_equal(
      ordered_logits.ordered_logits_scores(scores[..., None])[0], scores[0])
  from saccader_jax.policies import common  # pylint: disable=g-import-not-at-top
  locations, _ = common.top_t(scores.reshape(1, -1), 6)
  np.testing.assert_array_equal(locations, [[1, 2, 4, 0, 5, 3]])


def sobel_reference(images, rf, stride, grid, variance):
  """NumPy/SciPy float64: reflect-padded Sobel magnitude, box statistics."""
  images = np.asarray(images, np.float64)
  grey = images[..., 0] if images.shape[-1] == 1 else images @ np.asarray(
      sobel.GREY_WEIGHTS)
  out = np.zeros((images.shape[0], grid, grid))
  ky = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)
  for b, g in enumerate(grey):
    padded = np.pad(g, 1, mode="reflect")
    dy = ndimage.correlate(padded, ky)[1:-1, 1:-1]
    dx = ndimage.correlate(padded, ky.T)[1:-1, 1:-1]
    magnitude = np.sqrt(dy ** 2 + dx ** 2)
    for i in range(grid):
      for j in range(grid):
        box = magnitude[i * stride:i * stride + rf, j * stride:j * stride + rf]
        out[b, i, j] = box.var(ddof=1) if variance else box.mean()
  return out


@pytest.mark.parametrize("variance", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_sobel_statistics_match_scipy(setup, variance, channels):
  _, model, _, _ = setup
  images = jax.random.normal(jax.random.key(channels), (2, SIZE, SIZE,
                                                        channels))
  grid = model.grid_geometry(SIZE, SIZE)
  ours = sobel.box_statistics(sobel.sobel_magnitude(images), grid, variance)
  expected = sobel_reference(images, grid.receptive_field, grid.stride,
                             grid.grid_height, variance)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_sobel_policy_follows_its_score_map(setup):
  config, model, variables, images = setup
  out = policies.make_baseline_policy("sobel_variance", config, variables)(
      images, 81)
  grid = model.grid_geometry(SIZE, SIZE)
  scores = sobel_reference(images, grid.receptive_field, grid.stride, 9, True)
  for b in range(3):
    flat = np.asarray(out.locations[b, :, 0] * 9 + out.locations[b, :, 1])
    ranked = scores[b].ravel()[flat]
    assert np.all(np.diff(ranked) <= 1e-4 * np.abs(ranked).max())


def test_random_is_reproducible_per_key_and_uniform(setup):
  config, _, variables, images = setup
  policy = policies.make_baseline_policy("random", config, variables)
  first = policy(images, 6, key=jax.random.key(5)).locations
  np.testing.assert_array_equal(
      first, policy(images, 6, key=jax.random.key(5)).locations)
  assert not np.array_equal(first,
                            policy(images, 6, key=jax.random.key(6)).locations)
  with pytest.raises(ValueError, match="key must be a PRNG key"):
    policy(images, 6)
  # The policy's draws: first glimpses of 16,200 images over 81 locations,
  # 200 expected in each.
  locations, _ = uniform_random.random_locations(jax.random.key(100), 16200,
                                                 81, 1)
  counts = np.bincount(np.asarray(locations[:, 0]), minlength=81)
  expected = counts.sum() / 81
  sd = np.sqrt(expected * (1 - 1 / 81))
  assert np.all(np.abs(counts - expected) < 5 * sd), counts


def test_unknown_baseline_names_the_valid_ones(setup):
  config, _, variables, _ = setup
  with pytest.raises(ValueError, match="valid: .*sobel_mean"):
    policies.make_baseline_policy("sobel", config, variables)


def test_baselines_take_the_final_saccaders_variables_too(setup):
  config, _, variables, images = setup
  # Any Saccader variables work: only the representation is read.
  changed = jax.tree_util.tree_map(lambda x: x, variables)
  changed["params"]["cell"] = jax.tree_util.tree_map(
      lambda x: x + 1.0, changed["params"].get("cell", {}))
  a = policies.make_baseline_policy("ordered_logits", config, variables)(
      images, 4)
  b = policies.make_baseline_policy("ordered_logits", config, changed)(
      images, 4)
  np.testing.assert_array_equal(a.locations, b.locations)


def test_predicted_class_rules_score_the_whole_image_prediction():
  from saccader_jax.policies import predicted_class  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  logits2d = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
  c = np.argmax(logits2d.mean(axis=(1, 2)), axis=-1)
  shifted = logits2d - logits2d.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  others = logits2d.copy()
  for b in range(4):
    others[b, ..., c[b]] = -np.inf
  np.testing.assert_allclose(
      predicted_class.probability_scores(jnp.asarray(logits2d)),
      log_probs[np.arange(4), :, :, c], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      predicted_class.margin_scores(jnp.asarray(logits2d)),
      logits2d[np.arange(4), :, :, c] - others.max(-1), rtol=1e-6)


def test_diverse_ordered_logits_spreads_before_it_crowds():
  from saccader_jax.policies import diverse_ordered_logits as diverse  # pylint: disable=g-import-not-at-top
  # A 3x4 map: the best three scores are neighbours of each other.
  scores = np.array([[[9., 8., 0., 1.],
                      [7., 0., 0., 2.],
                      [0., 0., 0., 3.]]], np.float32)
  locations, logits = diverse.top_t_spread(jnp.asarray(scores), 6)
  # 9 first; 8 and 7 are its neighbours, so the best elsewhere: 3, then 1,
  # then the lower of the two 0s left outside every neighbourhood (8); then
  # only neighbours are left, best first: 8, 7.
  assert np.asarray(locations)[0].tolist() == [0, 11, 3, 8, 1, 4]
  logits = np.asarray(logits)[0]
  np.testing.assert_array_equal(np.argmax(logits, -1),
                                np.asarray(locations)[0])
  assert logits[1, 0] == -1e5 and logits[1, 1] < logits[1, 11]
