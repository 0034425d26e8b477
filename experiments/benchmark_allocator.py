"""The ImageNet stage-1 train step from a plain research script, on the
system allocator and on tcmalloc through `allocator.reexec_with_tcmalloc()`.

    python -m experiments.benchmark_allocator [--batch=8] [--repeats=3]

Runs the same plain script twice, each in a fresh Python: once as written
(glibc's malloc, what a script or notebook that imports the package gets),
and once with `from saccader_jax import allocator;
allocator.reexec_with_tcmalloc()` as its first line (what `main` and the
experiment scripts do). Prints a Markdown table of the median step time.
"""

import os
import subprocess
import sys

from absl import app
from absl import flags

from experiments import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 8, "Images per step (224x224).")
flags.DEFINE_integer("repeats", 3, "Timed steps (median).")

# A research script: the stage from the config, jitted, timed.
_SCRIPT = """
{preamble}
import time
import jax, jax.numpy as jnp, numpy as np
from configs import imagenet_saccader
from saccader_jax import allocator, cpu_kernels, models, stages
cpu_kernels.use_cpu_ynn_fusions({fusions!r})
config = imagenet_saccader.get_config()
stage = stages.resolve_stage(config, "representation")
variables = jax.jit(lambda k: models.init_variables(
    stage.model, config.dataset, k))(jax.random.key(0))
setup = stage.create(variables, total_steps=1000)
step = jax.jit(setup.train_step, donate_argnums=0)
rng = np.random.default_rng(0)
batch = {{"image": jnp.asarray(rng.normal(size=({batch}, 224, 224, 3)),
                              jnp.float32),
         "label": jnp.asarray(rng.integers(0, 1000, {batch}), jnp.int32)}}
state, key = setup.state, jax.random.key(1)
state, metrics = step(state, batch, key)          # compile
jax.block_until_ready(metrics)
times = []
for _ in range({repeats}):
  start = time.perf_counter()
  state, metrics = step(state, batch, key)
  jax.block_until_ready(metrics)
  times.append(time.perf_counter() - start)
print("RESULT", allocator.loaded_allocator(), 1000 * float(np.median(times)))
"""
_HELPER = ("from saccader_jax import allocator\n"
           "allocator.reexec_with_tcmalloc()")


def time_script(preamble: str) -> tuple[str, float]:
  code = _SCRIPT.format(preamble=preamble, fusions=timing.CPU_YNN_FUSIONS.value,
                        batch=FLAGS.batch, repeats=FLAGS.repeats)
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  result = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))))
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")][-1]
  _, allocator, ms = line.split()
  return allocator, float(ms)


def main(argv):
  del argv
  rows = [("plain script", *time_script("")),
          ("plain script + reexec_with_tcmalloc()", *time_script(_HELPER))]
  print(f"ImageNet stage-1 train step, batch {FLAGS.batch} at 224x224, "
        f"median of {FLAGS.repeats}, cpu_ynn_fusions "
        f"{timing.CPU_YNN_FUSIONS.value!r}; {timing.machine()} (this "
        "process; the scripts' own allocator is in the table)\n")
  print("| research code | allocator | ms/step |\n|---|---|---:|")
  for name, allocator, ms in rows:
    print(f"| {name} | {allocator} | {ms:,.0f} |")
  print(f"\nplain / with the helper: {rows[0][2] / rows[1][2]:.2f}x")


if __name__ == "__main__":
  app.run(main)
