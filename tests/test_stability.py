"""Location pretraining (eq. 5) at the ImageNet config's settings stays
stable: its loss finite, its weights bounded.

Eq. 5 sums the NLL of T = 12 steps over unnormalised policy logits, so at the
ImageNet learning rate (0.1) the location network's weights grow fast once
the representation has trained. The ImageNet config clips the stage's
gradient norm; this runs that stage on the embedded data, after a short stage
1, with and without the clip.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet_saccader
from saccader_jax import losses
from saccader_jax import models
from saccader_jax import objectives
from saccader_jax import stages
from saccader_jax import steps as steps_lib
from saccader_jax.data import input_pipeline

BATCH = 32
STAGE1_STEPS = 100
STAGE2_STEPS = 80


def location_kernel_norm(params):
  kernels = losses.kernels(objectives.location_params(params))
  return float(jnp.sqrt(sum(jnp.sum(k ** 2) for k in kernels)))


def run_stage(config, name, model, variables, steps, seed):
  state, step, *_ = stages.create_stage(config, name, model, variables, steps)
  step = jax.jit(step)
  batches = input_pipeline.train_batches(config.dataset, builder_of(config),
                                         BATCH, seed=seed)
  history = []
  for _ in range(steps):
    state, metrics = step(state, next(batches), jax.random.key(seed))
    history.append(jax.device_get(metrics))
  return steps_lib.model_variables(state), history


_BUILDERS = {}


def builder_of(config):
  return _BUILDERS[config.dataset.data_dir]


@pytest.fixture(scope="module")
def after_stage1(embedded_data):
  config, builder = embedded_data
  _BUILDERS[config.dataset.data_dir] = builder
  model = models.create_model(config.model)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)),
                         num_glimpses=1)
  variables, history = run_stage(config, "representation", model, variables,
                                 STAGE1_STEPS, seed=0)
  assert np.mean([m["accuracy"] for m in history[-20:]]) > 0.3
  return config, model, variables


def imagenet_location_settings(config, clip):
  """The embedded config with the ImageNet config's stage-2 settings."""
  imagenet = imagenet_saccader.get_config()
  config = config.copy_and_resolve_references()
  config.optimizer = imagenet.optimizer
  config.schedule = imagenet.schedule
  config.stages.location = imagenet.stages.location
  if not clip:
    config.stages.location.grad_clip_norm = 0.0
  return config


@pytest.mark.slow
def test_location_pretraining_is_stable_at_the_imagenet_settings(after_stage1):
  config, model, variables = after_stage1
  clipped = imagenet_location_settings(config, clip=True)
  assert clipped.stages.location.learning_rate == 0.1
  assert clipped.stages.location.grad_clip_norm == 1.0
  start = location_kernel_norm(variables["params"])
  norms = {}
  for clip in (True, False):
    trained, history = run_stage(imagenet_location_settings(config, clip),
                                 "location", model, variables, STAGE2_STEPS,
                                 seed=1)
    nll = np.array([m["location_nll"] for m in history])
    norms[clip] = location_kernel_norm(trained["params"]) / start
    if clip:
      assert np.all(np.isfinite(nll))
      assert np.mean(nll[-25:]) < np.mean(nll[:25])  # it learns
      assert norms[True] < 1.25, norms
  # Without the clip the same run moves the weights far more: what the clip
  # is there for.
  assert norms[False] > 1.5 * norms[True], norms
