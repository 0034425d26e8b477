"""Stage 3's REINFORCE term, alone, trains the policy.

A task where only the choice of location decides the reward: each image is
noise with the class evidence (a horizontal or vertical bar) at one random
place and a decoy without it (a cross of both bars) at another. A BagNet
trained on it (stage 1) is right at the locations that see the bar and at
chance elsewhere. Stage 3 then runs with the representation frozen
(`train_representation=False`), so its cross entropy reaches no trained
parameter and REINFORCE alone trains the location network, with one glimpse:
the reward is the chance of landing on the bar.

The policy starts uniform by construction: the what/where mixing
convolution is zeroed, so F = 0 and every location's logit (eq. 3) is 0. A
randomly initialised location network is not a fair start: its logits are a
weighted sum of the BagNet's features, which are largest where the BagNet is
confident, so depending on the trained BagNet it may land on the bar most of
the time before any training.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.slow

from saccader_jax import models
from saccader_jax import stages
from saccader_jax import steps
from tests.helpers import tiny_train_config

SIZE = 64          # the tiny config's 17-px receptive field: a 12x12 grid
NUM_LOCATIONS = 144
BAR = 9


def bar_batch(rng: np.random.Generator, batch_size: int) -> dict:
  images = 0.3 * rng.normal(size=(batch_size, SIZE, SIZE, 1))
  labels = rng.integers(0, 2, batch_size)
  corners = rng.integers(0, SIZE - BAR + 1, size=(batch_size, 2, 2))
  for image, label, ((y, x), (v, u)) in zip(images, labels, corners):
    image[v:v + BAR, u + BAR // 2, 0] = 3.0      # the decoy
    image[v + BAR // 2, u:u + BAR, 0] = 3.0
    if label:
      image[y:y + BAR, x + BAR // 2, 0] = 3.0
    else:
      image[y + BAR // 2, x:x + BAR, 0] = 3.0
  return {"image": jnp.asarray(images, jnp.float32),
          "label": jnp.asarray(labels, jnp.int32)}


def run_stage(config, name, model, variables, num_steps, seed):
  setup = stages.create_stage(config, name, model, variables, num_steps)
  step = jax.jit(setup.train_step)
  state, rng, metrics = setup.state, np.random.default_rng(seed), []
  for _ in range(num_steps):
    state, step_metrics = step(state, bar_batch(rng, config.batch_size),
                               jax.random.key(seed))
    metrics.append(jax.device_get(step_metrics))
  return steps.model_variables(state), metrics


@pytest.fixture(scope="module")
def bar_bagnet(tmp_path_factory):
  """(config, model, variables): a BagNet trained on the bar task, and a
  fresh location network."""
  config = tiny_train_config(str(tmp_path_factory.mktemp("bars")),
                             canvas_size=SIZE)
  config.model.num_classes = 2
  config.batch_size = 32
  config.schedule.name = "constant"
  config.stages.representation.learning_rate = 0.1
  model = models.create_model(config.model)
  init = jax.jit(lambda key: models.init_variables(model, config.dataset,
                                                   key))
  variables = init(jax.random.key(0))
  variables, metrics = run_stage(config, "representation", model, variables,
                                 260, seed=1)
  assert np.mean([m["accuracy"] for m in metrics[-20:]]) > 0.9
  return config, model, variables


def uniform_policy(variables):
  """variables with the mixing convolution zeroed: F = 0, a uniform policy
  whose REINFORCE gradient is not zero (eq. 3 is linear in F)."""
  params = dict(variables["params"])
  params["mixing"] = jax.tree_util.tree_map(jnp.zeros_like, params["mixing"])
  return {**variables, "params": params}


def per_location_accuracy(model, variables, seed=3, batch_size=256):
  """The BagNet's accuracy at each location, averaged over the grid: the
  reward a uniform policy earns."""
  batch = bar_batch(np.random.default_rng(seed), batch_size)
  rep = model.apply(variables, batch["image"], False,
                    method=models.Saccader.represent)
  predictions = jnp.argmax(rep.logits2d, -1)
  return float(jnp.mean(predictions == batch["label"][:, None, None]))


def policy_config(config, reduction, learning_rate, reinforce_weight=1.0):
  config = config.copy_and_resolve_references()
  policy = config.stages.policy
  policy.train_representation = False
  policy.num_glimpses = 1
  policy.reinforce_reduction = reduction
  policy.reinforce_weight = reinforce_weight
  policy.learning_rate = learning_rate
  policy.location_l2_weight = 0.0
  config.optimizer.grad_clip_norm = 1.0
  return config


# "sum" multiplies the term by S * T = 2: about half the rate.
@pytest.mark.parametrize("reduction, learning_rate", [("mean", 0.03),
                                                      ("sum", 0.02)])
def test_reinforce_alone_raises_the_reward(bar_bagnet, reduction,
                                           learning_rate):
  config, model, variables = bar_bagnet
  config = policy_config(config, reduction, learning_rate)
  start = uniform_policy(variables)
  trained, metrics = run_stage(config, "policy", model, start, 100, seed=2)
  rewards = np.array([m["reward"] for m in metrics])
  entropy = np.array([m["entropy_first"] for m in metrics])
  # Step 0 (metrics of the parameters before its update): uniform, so the
  # reward is the BagNet's accuracy at a random location, about chance
  # (the bar covers few of the 144 receptive fields).
  np.testing.assert_allclose(entropy[0], np.log(NUM_LOCATIONS), atol=1e-3)
  uniform_reward = per_location_accuracy(model, variables)
  assert uniform_reward < 0.65, uniform_reward
  assert rewards[0] < uniform_reward + 0.15, (rewards[0], uniform_reward)
  # After 100 steps (S = 2 trajectories of 32 images each) nearly every
  # sample lands on the bar, and the policy has narrowed.
  last = rewards[-20:].mean()
  assert last > 0.9, (rewards[:5], last)
  assert last - uniform_reward > 0.3, (uniform_reward, last)
  assert entropy[-20:].mean() < np.log(NUM_LOCATIONS) - 1.5, entropy[-20:]
  # Only the location network moved.
  changes = steps.relative_change(start["params"], trained["params"])
  assert changes.pop("representation") == 0.0
  assert max(changes.values()) > 1e-2


def test_without_reinforce_nothing_trains_the_policy(bar_bagnet):
  """The control: the frozen representation's cross entropy gives the
  location network no gradient, so the reward rise above is REINFORCE's."""
  config, model, variables = bar_bagnet
  config = policy_config(config, "mean", 0.03, reinforce_weight=0.0)
  start = uniform_policy(variables)
  trained, metrics = run_stage(config, "policy", model, start, 20, seed=2)
  changes = steps.relative_change(start["params"], trained["params"])
  assert max(changes.values()) == 0.0, changes
  rewards = np.array([m["reward"] for m in metrics])
  entropy = np.array([m["entropy_first"] for m in metrics])
  np.testing.assert_allclose(entropy, np.log(NUM_LOCATIONS), atol=1e-3)
  assert rewards.mean() < per_location_accuracy(model, variables) + 0.1
