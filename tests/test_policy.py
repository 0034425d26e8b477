"""The public policy API: outputs, compilation caching and input checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saccader_jax
from saccader_jax.models import geometry

IMAGE_SHAPE = (2, 93, 101, 3)  # a 3x4 grid


@pytest.fixture(scope="module")
def policy(narrow_config, narrow_variables):
  return saccader_jax.make_policy(narrow_config, narrow_variables)


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(0), IMAGE_SHAPE)


def test_greedy_output_is_consistent_with_the_model(policy, images,
                                                    narrow_model,
                                                    narrow_variables):
  out = policy(images, num_glimpses=5)
  chex.assert_shape(out.locations, (2, 5, 2))
  chex.assert_shape(out.boxes, (2, 5, 4))
  chex.assert_shape(out.location_probs, (2, 5, 3, 4))
  chex.assert_shape(out.glimpse_logits, (2, 5, 10))
  chex.assert_shape(out.logits, (2, 10))
  assert out.locations.dtype == jnp.int32 and out.boxes.dtype == jnp.int32

  model_out = narrow_model.apply(narrow_variables, images, num_glimpses=5)
  np.testing.assert_array_equal(
      out.locations[..., 0] * 4 + out.locations[..., 1], model_out.locations)
  np.testing.assert_allclose(out.logits, model_out.logits, rtol=1e-5,
                             atol=1e-5)
  # Greedy: each location is the mode of that step's distribution.
  probs = np.asarray(out.location_probs).reshape(2, 5, 12)
  np.testing.assert_array_equal(probs.argmax(-1), model_out.locations)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_boxes_are_the_receptive_fields_of_the_locations(policy, images):
  out = policy(images, num_glimpses=12)
  rows, cols = np.asarray(out.locations[..., 0]), np.asarray(
      out.locations[..., 1])
  expected = np.stack([8 * rows, 8 * cols, 8 * rows + 77, 8 * cols + 77], -1)
  np.testing.assert_array_equal(out.boxes, expected)
  assert out.boxes[..., 2].max() <= IMAGE_SHAPE[1]
  assert out.boxes[..., 3].max() <= IMAGE_SHAPE[2]
  # All 12 locations of the grid, each once.
  flat = np.sort(rows * 4 + cols, axis=1)
  np.testing.assert_array_equal(flat, np.tile(np.arange(12), (2, 1)))


def test_visited_locations_have_zero_probability(policy, images):
  out = policy(images, num_glimpses=6, key=jax.random.key(1))
  probs = np.asarray(out.location_probs).reshape(2, 6, 12)
  flat = np.asarray(out.locations[..., 0] * 4 + out.locations[..., 1])
  for b in range(2):
    for t in range(1, 6):
      np.testing.assert_array_equal(probs[b, t, flat[b, :t]], 0.0)


def test_sampled_policy_is_reproducible_per_key(policy, images):
  a = policy(images, num_glimpses=6, key=jax.random.key(3))
  b = policy(images, num_glimpses=6, key=jax.random.key(3))
  c = policy(images, num_glimpses=6, key=jax.random.PRNGKey(4))
  np.testing.assert_array_equal(a.locations, b.locations)
  assert not np.array_equal(a.locations, c.locations)


def test_compiles_once_per_shape_and_num_glimpses(narrow_model,
                                                  narrow_variables, images):

  @chex.assert_max_traces(n=4)
  def glimpse_fn(variables, images, num_glimpses, key):
    out = narrow_model.apply(variables, images, num_glimpses=num_glimpses,
                             key=key)
    return out.locations, out.location_logits, out.glimpse_logits

  policy = saccader_jax.Policy(glimpse_fn, narrow_variables,
                               narrow_model.grid_geometry, num_channels=3)
  for seed in range(3):  # new values and keys reuse the compiled function
    policy(images + seed, num_glimpses=3)
    policy(images * seed, num_glimpses=3, key=jax.random.key(seed))
  policy(np.asarray(images), num_glimpses=3)  # NumPy input: same trace
  policy(images, num_glimpses=4)              # new T: one more trace
  policy(images[:1], num_glimpses=4)          # new shape: one more trace
  with pytest.raises(AssertionError, match="traced > 4 times"):
    policy(images[:, :90], num_glimpses=4)


@pytest.mark.parametrize("images_shape, dtype, num_glimpses, key, message", [
    ((93, 93, 3), jnp.float32, 2, None, "rank 4"),
    ((1, 93, 93, 1), jnp.float32, 2, None, "3 channels"),
    ((1, 93, 93, 3), jnp.uint8, 2, None, "floating point"),
    ((1, 70, 93, 3), jnp.float32, 2, None, "smaller than the receptive field"),
    ((0, 93, 93, 3), jnp.float32, 2, None, "no image"),
    ((1, 93, 93, 3), jnp.float32, 10, None, r"\[1, 9\]"),
    ((1, 93, 93, 3), jnp.float32, 0, None, r"\[1, 9\]"),
    ((1, 93, 93, 3), jnp.float32, 2.0, None, "Python int"),
    ((1, 93, 93, 3), jnp.float32, 2, 42, "PRNG key"),
])
def test_bad_input_is_a_clear_error_before_tracing(
    narrow_model, narrow_variables, images_shape, dtype, num_glimpses, key,
    message):
  traced = []

  def glimpse_fn(*args):
    traced.append(args)
    raise AssertionError("must not trace")

  policy = saccader_jax.Policy(glimpse_fn, narrow_variables,
                               narrow_model.grid_geometry, num_channels=3)
  with pytest.raises(ValueError, match=message):
    policy(jnp.zeros(images_shape, dtype), num_glimpses=num_glimpses, key=key)
  assert not traced


def test_non_array_images_are_rejected(policy):
  with pytest.raises(ValueError, match="array"):
    policy([[1.0, 2.0]], num_glimpses=1)


def test_make_policy_accepts_model_or_model_config(narrow_model, narrow_config,
                                                   narrow_variables, images):
  from_model = saccader_jax.make_policy(narrow_model, narrow_variables)
  from_config = saccader_jax.make_policy(narrow_config, narrow_variables)
  np.testing.assert_array_equal(from_model(images, 3).locations,
                                from_config(images, 3).locations)
  with pytest.raises(ValueError, match="Saccader"):
    saccader_jax.make_policy(object(), narrow_variables)


def test_geometry_unflatten_and_boxes_round_trip():
  grid = geometry.GridGeometry(224, 224, 77, 8, 19, 19)
  flat = jnp.arange(361)
  rc = grid.unflatten(flat)
  np.testing.assert_array_equal(rc[:, 0] * 19 + rc[:, 1], flat)
  np.testing.assert_array_equal(grid.boxes(jnp.array([18, 0])),
                                [144, 0, 221, 77])


def test_make_policy_reads_the_channel_count_from_the_variables(
    narrow_config, narrow_variables):
  """narrow_variables are for 3-channel images: a model config alone gives
  a 3-channel policy, and a contradicting num_channels is refused."""
  assert saccader_jax.make_policy(narrow_config,
                                  narrow_variables).num_channels == 3
  with pytest.raises(ValueError, match=r"variables are for 3-channel images "
                     r"\(params/representation/stem_conv/kernel has shape "
                     r"\(\d+, \d+, 3, \d+\)\), but num_channels is 1\."):
    saccader_jax.make_policy(narrow_config, narrow_variables, num_channels=1)


def test_make_policy_refuses_variables_of_another_model(narrow_config,
                                                        narrow_variables):
  other = narrow_config.copy_and_resolve_references()
  other.representation.what_channels = 12
  with pytest.raises(ValueError, match=(
      r"^make_policy: the variables are not those of this Saccader: "
      r"params/\S+ has shape \(.*\), the model's \(.*\)\. Pass the config "
      r"they were trained with \(saccader_jax.load_config\(workdir\)\)\.$")):
    saccader_jax.make_policy(other, narrow_variables)
  with pytest.raises(ValueError, match=r"batch_stats/\S+ is missing"):
    saccader_jax.make_policy(narrow_config,
                             {"params": narrow_variables["params"]})
