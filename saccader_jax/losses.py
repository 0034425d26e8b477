"""The terms of the three training objectives (paper section 3.2).

Every function is pure and returns per-example values (reduce with a mean
over the batch) unless it says otherwise. Log-probabilities always come from
`log_softmax`, never `log(softmax)`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

LOCATION_RANKINGS = ("max_logit", "predicted_class", "predicted_probability")
L2_MODES = ("normalized", "plain", "none")


def geometric_mean_cross_entropy(part_logits: jnp.ndarray,
                                 labels: jnp.ndarray) -> jnp.ndarray:
  """Cross entropy of the normalised geometric mean of per-part class
  probabilities: the first term of eq. 4 (parts = all h*w locations) and the
  last term of eq. 6 (parts = the T glimpses).

  prod_n P(y | X^n)^(1/N), renormalised over classes, is the softmax of the
  mean over n of log_softmax(logits_n); the softmax cross entropy applies that
  renormalisation.

  Args:
    part_logits: [batch, N, classes] logits of each part.
    labels: [batch] int class labels.

  Returns:
    [batch] losses.
  """
  mean_log_probs = jnp.mean(jax.nn.log_softmax(part_logits, axis=-1), axis=1)
  return optax.softmax_cross_entropy_with_integer_labels(mean_log_probs,
                                                         labels)


def location_targets(logits2d: jnp.ndarray, num_targets: int,
                     ranking: str = "max_logit") -> jnp.ndarray:
  """The T locations that location pretraining teaches, best first (eq. 5).

  Args:
    logits2d: [batch, h, w, classes] per-location logits.
    num_targets: T.
    ranking: "max_logit" (the paper's text): each location's largest logit
      over classes; "predicted_class" (the original code): each location's
      logit for the image's predicted class, argmax of the mean logits;
      "predicted_probability" (in neither): that class's softmax
      probability at each location, high only where no other class
      competes.

  Returns:
    [batch, T] int32 flat locations in descending order of the ranking score.
  """
  batch, height, width, classes = logits2d.shape
  flat = logits2d.reshape(batch, height * width, classes)
  if ranking == "max_logit":
    scores = jnp.max(flat, axis=-1)
  elif ranking == "predicted_class":
    predicted = jnp.argmax(jnp.mean(flat, axis=1), axis=-1)
    scores = jnp.take_along_axis(flat, predicted[:, None, None], axis=-1)[..., 0]
  elif ranking == "predicted_probability":
    predicted = jnp.argmax(jnp.mean(flat, axis=1), axis=-1)
    log_probs = jax.nn.log_softmax(flat.astype(jnp.float32), axis=-1)
    scores = jnp.take_along_axis(log_probs, predicted[:, None, None],
                                 axis=-1)[..., 0]
  else:
    raise ValueError(f"Unknown location ranking {ranking!r}; valid: "
                     f"{LOCATION_RANKINGS}.")
  return jax.lax.top_k(scores, num_targets)[1].astype(jnp.int32)


def location_log_probs(location_logits: jnp.ndarray,
                       locations: jnp.ndarray) -> jnp.ndarray:
  """log pi(l_t | X, C^{t-1}): [..., T, L] logits, [..., T] -> [..., T]."""
  log_probs = jax.nn.log_softmax(location_logits, axis=-1)
  return jnp.take_along_axis(log_probs, locations[..., None], axis=-1)[..., 0]


def location_entropy(location_logits: jnp.ndarray) -> jnp.ndarray:
  """Entropy (nats) of policy distributions over L locations: [..., L] ->
  [...] (e.g. [batch, T, L] -> [batch, T], one per step).

  Visited locations, masked at -1e5, have probability exactly 0 and add 0.
  """
  log_probs = jax.nn.log_softmax(location_logits, axis=-1)
  return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def location_pretraining_loss(location_logits: jnp.ndarray,
                              targets: jnp.ndarray,
                              average_over_steps: bool = False) -> jnp.ndarray:
  """Eq. 5 without its L2 term: -log prod_t pi(l_target^t | X, C^{t-1}).

  Args:
    location_logits: [batch, T, L] policy logits.
    targets: [batch, T] target locations.
    average_over_steps: divide by T, as the original code does.

  Returns:
    [batch] losses.
  """
  log_probs = location_log_probs(location_logits, targets)
  reduce = jnp.mean if average_over_steps else jnp.sum
  return -reduce(log_probs, axis=-1)


def correct_rewards(logits: jnp.ndarray, labels: jnp.ndarray,
                    plus_minus_one: bool = False) -> jnp.ndarray:
  """r = 1 where argmax(logits) is the label, else 0 (or -1).

  Args:
    logits: [..., classes] time-averaged logits of a trajectory.
    labels: int labels broadcastable to logits.shape[:-1].
  """
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return 2.0 * correct - 1.0 if plus_minus_one else correct


def reinforce_loss(location_logits: jnp.ndarray, locations: jnp.ndarray,
                   rewards: jnp.ndarray,
                   average_over_samples_and_steps: bool = False
                   ) -> jnp.ndarray:
  """First term of eq. 6: -sum_s log(prod_t pi(l_s^t | X, C_s^{t-1})) (r_s - b).

  The baseline b is the minibatch's mean reward (its accuracy for 0/1
  rewards); rewards and baseline carry no gradient.

  Args:
    location_logits: [S, batch, T, L] policy logits of S sampled trajectories.
    locations: [S, batch, T] the sampled locations.
    rewards: [S, batch] reward of each trajectory.
    average_over_samples_and_steps: divide by S * T, as the original code
      does (a mean over time and over the S copies of the batch).

  Returns:
    [batch] losses.
  """
  rewards = jax.lax.stop_gradient(rewards)
  advantage = rewards - jnp.mean(rewards)
  log_pi = location_log_probs(location_logits, locations)
  loss = -jnp.sum(jnp.sum(log_pi, axis=-1) * advantage, axis=0)
  if average_over_samples_and_steps:
    loss = loss / (log_pi.shape[0] * log_pi.shape[-1])
  return loss


def gaussian_log_probs(mean_locations: jnp.ndarray, locations: jnp.ndarray,
                       stddev: float) -> jnp.ndarray:
  """log N(l; mean, stddev^2 I) of 2-D locations: [..., 2], [..., 2] ->
  [...], summed over (y, x)."""
  z = (locations - mean_locations) / stddev
  return jnp.sum(-0.5 * jnp.square(z) - jnp.log(stddev)
                 - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_reinforce_loss(mean_locations: jnp.ndarray,
                            locations: jnp.ndarray, rewards: jnp.ndarray,
                            stddev: float,
                            average_over_steps: bool = True) -> jnp.ndarray:
  """REINFORCE for a Gaussian location policy (DRAM):
  -sum_t log N(l_t; mean_t, stddev^2) (r_t - b).

  The baseline b is the mean reward over the batch (and steps); rewards,
  baseline and the sampled locations carry no gradient, the means do.

  Args:
    mean_locations: [batch, T, 2] policy means.
    locations: [batch, T, 2] the sampled locations.
    rewards: [batch] (one reward for every step) or [batch, T].
    stddev: the policy's standard deviation.
    average_over_steps: divide by T, as the original code does (its loss is
      a mean over the batch and the T steps).

  Returns:
    [batch] losses.
  """
  rewards = jax.lax.stop_gradient(rewards.astype(jnp.float32))
  if rewards.ndim == 1:
    rewards = jnp.broadcast_to(rewards[:, None], locations.shape[:2])
  advantage = rewards - jnp.mean(rewards)
  log_probs = gaussian_log_probs(mean_locations,
                                 jax.lax.stop_gradient(locations), stddev)
  reduce = jnp.mean if average_over_steps else jnp.sum
  return -reduce(log_probs * advantage, axis=-1)


def kernels(params: Any) -> list[jnp.ndarray]:
  """Convolution and dense kernels: the weights that L2 regularises."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return [x for path, x in leaves
          if getattr(path[-1], "key", None) == "kernel"]


def l2_penalty(params: Any, weight: float, mode: str = "normalized") -> jnp.ndarray:
  """L2 regularisation of the kernels in params (no biases, no BN scales).

  Args:
    params: a parameter tree (one part of the model).
    weight: lambda (or nu).
    mode: "normalized" (the original code): weight * sum(k^2) / count(k);
      "plain" (the paper's eqs.): weight / 2 * sum(k^2); "none": 0, for use
      with decoupled weight decay in the optimizer.

  Returns:
    A scalar.
  """
  if mode not in L2_MODES:
    raise ValueError(f"Unknown L2 mode {mode!r}; valid: {L2_MODES}.")
  weights = kernels(params)
  if mode == "none" or not weights:
    return jnp.zeros((), jnp.float32)
  total = sum(jnp.sum(jnp.square(w.astype(jnp.float32))) for w in weights)
  if mode == "plain":
    return 0.5 * weight * total
  return weight * total / sum(w.size for w in weights)
