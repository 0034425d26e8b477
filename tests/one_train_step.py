"""One train step of every stage on a fixed global batch; writes the results.

Run by tests/test_sharding.py in fresh processes, so that each can set its own
device count (XLA_FLAGS) or join a multi-process job:

  python -m tests.one_train_step --out=FILE
      [--coordinator_address=localhost:PORT --num_processes=2 --process_id=I]

Each process feeds its slice of the same global batch, so every run, whatever
its devices and processes, trains on identical data.
"""


from absl import app
from absl import flags

from tests import process_flags


import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

flags.DEFINE_string("out", None, "Where process 0 writes its .npz.")
flags.DEFINE_string("cpu_ynn_fusions", "",
                    "YNNPACK fusions (saccader_jax.cpu_kernels), applied first.")
FLAGS = flags.FLAGS

GLOBAL_BATCH = 16


def main(argv):
  del argv
  from saccader_jax import cpu_kernels  # pylint: disable=g-import-not-at-top
  fusions = cpu_kernels.use_cpu_ynn_fusions(FLAGS.cpu_ynn_fusions)
  process_flags.initialize()
  from tests.helpers import tiny_train_config, with_unit_bn_scales  # pylint: disable=g-import-not-at-top,g-multiple-import
  from saccader_jax import job, models, stages, steps  # pylint: disable=g-import-not-at-top,g-multiple-import

  config = tiny_train_config("/nonexistent")  # the model and stages only
  model = models.create_model(config.model)
  mesh = job.create_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

  rng = np.random.default_rng(0)
  images = rng.normal(size=(GLOBAL_BATCH, 36, 36, 1)).astype(np.float32)
  labels = rng.integers(0, 10, size=GLOBAL_BATCH).astype(np.int32)
  local = GLOBAL_BATCH // jax.process_count()
  rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
  batch = {k: jax.make_array_from_process_local_data(data, v[rows])
           for k, v in (("image", images), ("label", labels))}

  def init(key):
    variables = model.init(key, jnp.zeros((1, 36, 36, 1)), num_glimpses=1)
    return {"params": with_unit_bn_scales(variables["params"]),
            "batch_stats": variables["batch_stats"]}

  variables = jax.jit(init, out_shardings=replicated)(jax.random.key(0))
  results = {}
  for name in ("representation", "location", "policy"):
    setup = stages.create_stage(config, name, model, variables, 10)
    # A copy: the step donates its state, and `variables` start every stage.
    state = jax.jit(lambda s: jax.tree_util.tree_map(jnp.copy, s),
                    out_shardings=replicated)(setup.state)
    step = steps.jit_train_step(setup.loss_fn, setup.schedule, mesh)
    state, metrics = step(state, batch, jax.random.key(1))
    fetch = lambda x: np.asarray(x.addressable_data(0))
    results[f"{name}/loss"] = fetch(metrics["loss"])
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        {"params": state.params, "batch_stats": state.batch_stats})[0]:
      key = "/".join(str(getattr(k, "key", k)) for k in path)
      results[f"{name}/{key}"] = fetch(leaf)
  if jax.process_index() == 0:
    np.savez(FLAGS.out, devices=jax.device_count(), cpu_ynn_fusions=fusions,
             **results)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
