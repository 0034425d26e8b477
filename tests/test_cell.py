"""The Saccader cell: eqs. 1-3, the visited-state mask and the rollout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saccader_jax.models import cell

BATCH, HEIGHT, WIDTH, DEPTH = 3, 4, 5, 16
NUM_LOCATIONS = HEIGHT * WIDTH


def numpy_softmax(x, axis):
  x = x - x.max(axis=axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=axis, keepdims=True)


def numpy_policy_logits(features2d, a, visited2d):
  """Eqs. 1-3 written index for index: F [b, h, w, d], a [d], C [b, h, w]."""
  d = features2d.shape[-1]
  g = np.einsum("bijp,p->bij", features2d, a) / np.sqrt(d) - 1e5 * visited2d
  g_tilde = numpy_softmax(g.reshape(g.shape[0], -1), axis=1).reshape(g.shape)
  h = np.einsum("bijk,bij->bk", features2d, g_tilde)
  h_tilde = numpy_softmax(h, axis=1)
  return np.einsum("bijk,bk->bij", features2d, h_tilde) - 1e5 * visited2d


def random_features(seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return (scale * rng.normal(size=(BATCH, HEIGHT, WIDTH, DEPTH))).astype(
      np.float32)


def init_cell(features2d):
  module = cell.SaccaderCell()
  params = module.init(jax.random.key(0), features2d, 1)
  return module, params


def test_eqs_1_to_3_match_numpy():
  features2d = random_features()
  module, params = init_cell(features2d)
  a = np.asarray(params["params"]["attention_weights"]["kernel"])[:, 0]
  rng = np.random.default_rng(1)
  visited2d = (rng.random((BATCH, HEIGHT, WIDTH)) < 0.3).astype(np.float32)

  features = jnp.asarray(features2d).reshape(BATCH, NUM_LOCATIONS, DEPTH)
  scores = features @ a / np.sqrt(DEPTH)
  logits = cell.location_logits(features, scores,
                                jnp.asarray(visited2d).reshape(BATCH, -1))

  expected = numpy_policy_logits(features2d, a, visited2d)
  np.testing.assert_allclose(
      np.asarray(logits).reshape(expected.shape), expected, rtol=1e-5,
      atol=1e-3)  # the -1e5 offsets leave float32 ~1e-2 absolute resolution
  unvisited = visited2d == 0
  np.testing.assert_allclose(
      np.asarray(logits).reshape(expected.shape)[unvisited],
      expected[unvisited], rtol=1e-5, atol=1e-6)


def test_first_step_of_the_module_is_eq_3_from_empty_state():
  features2d = random_features(2)
  module, params = init_cell(features2d)
  a = np.asarray(params["params"]["attention_weights"]["kernel"])[:, 0]
  out = module.apply(params, features2d, 1)
  expected = numpy_policy_logits(features2d, a,
                                 np.zeros((BATCH, HEIGHT, WIDTH), np.float32))
  np.testing.assert_allclose(np.asarray(out.location_logits[:, 0]),
                             expected.reshape(BATCH, -1), rtol=1e-5, atol=1e-6)


def test_visited_locations_masked_by_1e5_not_infinity():
  features2d = random_features(3)
  module, params = init_cell(features2d)
  out = module.apply(params, features2d, 4)
  logits = np.asarray(out.location_logits)
  assert np.all(np.isfinite(logits))
  for b in range(BATCH):
    for t in range(1, 4):
      earlier = np.asarray(out.locations[b, :t])
      # Each earlier location carries the -1e5 offset; unvisited ones do not.
      assert np.all(logits[b, t, earlier] < -0.9e5)
      rest = np.setdiff1d(np.arange(NUM_LOCATIONS), earlier)
      assert np.all(logits[b, t, rest] > -1e3)
      probs = jax.nn.softmax(logits[b, t])
      np.testing.assert_array_equal(np.asarray(probs)[earlier], 0.0)


@pytest.mark.parametrize("sample", [False, True])
def test_no_location_is_chosen_twice_up_to_the_whole_grid(sample):
  # Large features make the policy peaked, the hardest case for the mask.
  features2d = random_features(4, scale=30.0)
  module, params = init_cell(features2d)
  key = jax.random.key(7) if sample else None
  out = module.apply(params, features2d, NUM_LOCATIONS, key)
  for row in np.asarray(out.locations):
    np.testing.assert_array_equal(np.sort(row), np.arange(NUM_LOCATIONS))


def test_greedy_is_deterministic_and_takes_the_argmax():
  features2d = random_features(5)
  module, params = init_cell(features2d)
  first = module.apply(params, features2d, 6)
  second = module.apply(params, features2d, 6)
  np.testing.assert_array_equal(first.locations, second.locations)
  np.testing.assert_array_equal(
      first.locations, np.argmax(np.asarray(first.location_logits), axis=-1))


def test_sampling_is_reproducible_per_key_and_differs_across_keys():
  features2d = random_features(6, scale=0.1)  # a flat policy: samples vary
  module, params = init_cell(features2d)
  run = lambda seed: np.asarray(
      module.apply(params, features2d, 8, jax.random.key(seed)).locations)
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.array_equal(run(0), run(1))


def test_samples_follow_the_policy_distribution():
  features2d = random_features(8, scale=0.5)[:1]
  module, params = init_cell(features2d)
  keys = jax.random.split(jax.random.key(0), 4000)
  sample = jax.vmap(lambda k: module.apply(params, features2d, 1, k))
  out = sample(keys)
  counts = np.bincount(np.asarray(out.locations).ravel(),
                       minlength=NUM_LOCATIONS) / len(keys)
  probs = np.asarray(jax.nn.softmax(out.location_logits[0, 0, 0]))
  np.testing.assert_allclose(counts, probs, atol=0.03)


def python_loop_rollout(features, scores, num_glimpses, key, forced=None):
  """The same cell, unrolled with a Python for loop."""
  keys = None if key is None else jax.random.split(key, num_glimpses)
  visited = jnp.zeros(scores.shape)
  all_locations, all_logits = [], []
  for t in range(num_glimpses):
    logits = cell.location_logits(features, scores, visited)
    if forced is not None:
      locations = forced[:, t]
    else:
      locations = cell.choose_locations(logits, None if keys is None
                                        else keys[t])
    visited = cell.mark_visited(visited, locations)
    all_locations.append(locations)
    all_logits.append(logits)
  return jnp.stack(all_locations, 1), jnp.stack(all_logits, 1)


@pytest.mark.parametrize("mode", ["greedy", "sampled", "forced"])
def test_scan_rollout_equals_python_loop(mode):
  rng = np.random.default_rng(9)
  features = jnp.asarray(rng.normal(size=(BATCH, NUM_LOCATIONS, DEPTH)),
                         jnp.float32)
  scores = jnp.asarray(rng.normal(size=(BATCH, NUM_LOCATIONS)), jnp.float32)
  key = jax.random.key(11) if mode == "sampled" else None
  forced = None
  if mode == "forced":
    forced = jnp.asarray(np.stack([rng.permutation(NUM_LOCATIONS)[:7]
                                   for _ in range(BATCH)]), jnp.int32)
  scanned = jax.jit(cell.rollout, static_argnums=2)(features, scores, 7, key,
                                                     forced)
  locations, logits = python_loop_rollout(features, scores, 7, key, forced)
  np.testing.assert_array_equal(scanned.locations, locations)
  np.testing.assert_allclose(scanned.location_logits, logits, rtol=1e-6,
                             atol=1e-6)


def test_teacher_forcing_masks_the_forced_locations():
  rng = np.random.default_rng(10)
  features = jnp.asarray(rng.normal(size=(1, NUM_LOCATIONS, DEPTH)),
                         jnp.float32)
  scores = jnp.zeros((1, NUM_LOCATIONS))
  forced = jnp.asarray([[5, 0, 19]])
  out = cell.rollout(features, scores, 3, None, forced)
  np.testing.assert_array_equal(out.locations, forced)
  logits = np.asarray(out.location_logits[0])
  assert logits[1, 5] < -0.9e5 and logits[2, 0] < -0.9e5
  assert logits[2, 19] > -1e3  # not yet visited at step 3
