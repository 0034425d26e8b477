"""The stage-1 step of the tiny model on every device (run by
tests/test_batch_norm_statistics.py with XLA_FLAGS setting a device count).

Prints `all-reduces <mode> <count>` for the compiled step under each
config.model.batch_norm_statistics, and, for "per_device", whether one step
on the mesh equals the same grouped step on one device.
"""

import jax
import jax.numpy as jnp
import numpy as np


def main():
  from experiments.benchmark_accelerator import count_all_reduces  # pylint: disable=g-import-not-at-top
  from saccader_jax import job, models, stages, steps  # pylint: disable=g-import-not-at-top,g-multiple-import
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top

  devices = jax.device_count()
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(4 * devices, 36, 36, 1)
                               ).astype(np.float32),
           "label": rng.integers(0, 10, 4 * devices).astype(np.int32)}
  trained = {}
  for mode in ("global", "per_device"):
    config = tiny_train_config("/nonexistent")   # the model and stages only
    config.model.batch_norm_statistics = mode
    model = models.create_model(config.model)
    variables = jax.jit(lambda k, m=model: m.init(
        k, jnp.zeros((1, 36, 36, 1)), num_glimpses=1))(jax.random.key(0))
    for mesh in (job.create_mesh(),
                 jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))):
      setup = stages.create_stage(config, "representation", model, variables,
                                  10)
      state = jax.tree_util.tree_map(jnp.copy, setup.state)
      step = steps.jit_train_step(setup.loss_fn, setup.schedule, mesh)
      compiled = step.lower(state, batch, jax.random.key(1)).compile()
      if mesh.devices.size == devices:
        print(f"all-reduces {mode} {count_all_reduces(compiled.as_text())}")
      state, _ = compiled(state, batch, jax.random.key(1))
      trained[mode, mesh.devices.size] = jax.device_get(
          {"params": state.params, "batch_stats": state.batch_stats})
  for a, b in zip(jax.tree_util.tree_leaves(trained["per_device", devices]),
                  jax.tree_util.tree_leaves(trained["per_device", 1])):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
  print("per_device on the mesh: same as grouped on one device")
  differs = any(not np.allclose(a, b, atol=1e-6) for a, b in zip(
      jax.tree_util.tree_leaves(trained["per_device", devices]),
      jax.tree_util.tree_leaves(trained["global", devices])))
  assert differs, "per-device statistics trained as the global ones"


if __name__ == "__main__":
  main()
