"""Batches in chunks inside jit: the same results as whole batches."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import saccader_jax
from saccader_jax import chunking
from tests.helpers import xla_flags_with
from saccader_jax import evaluation
from saccader_jax import evaluators

IMAGE_SHAPE = (7, 93, 101, 3)  # 7 images: chunks of 3 leave a ragged one


def test_auto_chunk_size_bounds_the_pixels_per_chunk_on_cpu_only():
  assert chunking.resolve("auto", 224, 224, backend="cpu") == 8
  assert chunking.resolve("auto", 64, 64, backend="cpu") == 64
  assert chunking.resolve("auto", 331, 331, backend="cpu") == 2
  assert chunking.resolve("auto", 2000, 2000, backend="cpu") == 1
  assert chunking.resolve("auto", 224, 224, backend="tpu") == 0
  assert chunking.resolve(None, 224, 224) == 0
  assert chunking.resolve(5, 224, 224) == 5
  for bad in (-1, 2.0, "8", True):
    with pytest.raises(ValueError, match="chunk_size must be"):
      chunking.resolve(bad, 224, 224)


def test_map_batch_keeps_rows_in_order_with_a_ragged_last_chunk():
  rows = jnp.arange(7 * 2, dtype=jnp.float32).reshape(7, 2)

  def fn(batch, key):
    del key
    return {"double": 2 * batch["x"], "first": batch["x"][:, 0]}

  out = jax.jit(lambda b: chunking.map_batch(fn, b, 3))({"x": rows})
  np.testing.assert_array_equal(out["double"], 2 * rows)
  np.testing.assert_array_equal(out["first"], rows[:, 0])


def test_map_batch_gives_each_chunk_its_own_key():
  def fn(batch, key):
    return jax.random.uniform(key, batch.shape)

  key = jax.random.key(0)
  a = chunking.map_batch(fn, jnp.zeros((6,)), 2, key)
  b = chunking.map_batch(fn, jnp.zeros((6,)), 2, key)
  np.testing.assert_array_equal(a, b)
  # chunk j holds rows j, j + 3: rows 0 and 3 come from chunk 0's key, 1 and
  # 4 from chunk 1's.
  chunk0 = fn(jnp.zeros((2,)), jax.random.fold_in(key, 0))
  np.testing.assert_array_equal(a[jnp.array([0, 3])], chunk0)
  assert a[0] != a[1]


def test_sum_batch_adds_the_chunks_sums_and_ignores_padding():
  x = jnp.arange(1.0, 8.0)
  batch = {"x": x, "mask": jnp.ones((7,))}

  def sums(b, key):
    del key
    return {"total": jnp.sum(b["x"] * b["mask"]), "count": jnp.sum(b["mask"])}

  out = chunking.sum_batch(sums, batch, 3)
  assert float(out["total"]) == float(jnp.sum(x))
  assert float(out["count"]) == 7.0


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(0), IMAGE_SHAPE)


def test_chunked_policy_equals_the_whole_batch(narrow_config,
                                               narrow_variables, images):
  whole = saccader_jax.make_policy(narrow_config, narrow_variables,
                                   chunk_size=0)
  chunked = saccader_jax.make_policy(narrow_config, narrow_variables,
                                     chunk_size=3)
  a = whole(images, num_glimpses=5)
  b = chunked(images, num_glimpses=5)
  np.testing.assert_array_equal(a.locations, b.locations)
  np.testing.assert_allclose(a.glimpse_logits, b.glimpse_logits, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(a.location_probs, b.location_probs, rtol=1e-4,
                             atol=1e-6)
  # Sampled: reproducible per key, chunked as well.
  key = jax.random.key(2)
  np.testing.assert_array_equal(
      chunked(images, num_glimpses=5, key=key).locations,
      chunked(images, num_glimpses=5, key=key).locations)


def test_chunked_eval_step_equals_the_whole_batch(narrow_config,
                                                  narrow_variables, images):
  policy = saccader_jax.make_policy(narrow_config, narrow_variables)
  evals = evaluators.create_evaluators(
      ml_collections.ConfigDict({"accuracy": {}, "coverage": {}}), 4)
  batch = {"image": images,
           "label": jnp.arange(7, dtype=jnp.int32) % 10,
           "mask": jnp.array([1, 1, 1, 1, 1, 0, 0], jnp.float32)}
  results = [jax.jit(evaluation.make_policy_eval_step(
      policy, evals, 4, {}, chunk_size))(narrow_variables, {}, batch, None)
             for chunk_size in (0, 2)]
  assert set(results[0]) == set(results[1])
  for name in results[0]:
    np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-5,
                               err_msg=name)
  assert float(results[1]["count"]) == 5.0


_ON_FOUR_DEVICES = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from saccader_jax import chunking
mesh = Mesh(np.array(jax.devices()), ("data",))
rows = NamedSharding(mesh, P("data"))
x = jax.device_put(jnp.arange(16 * 3, dtype=jnp.float32).reshape(16, 3), rows)
fn = lambda b, key: {"y": jnp.tanh(b) * 2, "s": jnp.sum(b, axis=1)}
whole = fn(np.asarray(x), None)
mapped = jax.jit(lambda b: chunking.map_batch(fn, b, 8))(x)
summed = jax.jit(lambda b: chunking.sum_batch(
    lambda c, key: {"total": jnp.sum(c)}, b, 8))(x)
np.testing.assert_allclose(mapped["y"], whole["y"], rtol=1e-6)
np.testing.assert_allclose(mapped["s"], whole["s"], rtol=1e-6)
np.testing.assert_allclose(summed["total"], np.sum(np.asarray(x)), rtol=1e-6)
assert len(jax.devices()) == 4
# The rows stay spread over the devices: each works on its share of every
# chunk.
assert mapped["y"].sharding.spec[0] == "data", mapped["y"].sharding
print("ok")
"""


def test_chunks_of_a_sharded_batch_keep_its_rows_on_their_devices():
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags_with(
                 "--xla_force_host_platform_device_count=4"))
  result = subprocess.run([sys.executable, "-c", _ON_FOUR_DEVICES], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("ok")
