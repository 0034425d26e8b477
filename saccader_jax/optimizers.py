"""Optimizers and learning-rate schedules built from config by name.

    config.optimizer.name = "sgd_nesterov"   # or momentum, sgd, adam, adamw, lamb, lars
    config.schedule.name = "warmup_cosine"   # or constant, step

A config edit (or `--config.optimizer.name=adamw` on the command line) swaps
them; nothing else changes. Any other optax optimizer or transformation
factory is named the same way, its arguments in `config.optimizer.kwargs`:

    config.optimizer.name = "lion"                   # optax.lion
    config.optimizer.name = "optax.contrib.prodigy"  # or "contrib.prodigy"
    config.optimizer.kwargs = {"b1": 0.95, "weight_decay": 1e-2}

The stage's schedule is its `learning_rate`; a factory without one (a
transformation such as "scale_by_adam") is followed by
`optax.scale_by_learning_rate`. Decoupled weight decay, where the factory
has a `mask`, applies to kernels only, as in the built-in seven.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Callable, Optional

import jax
import ml_collections
import optax


def _kernel_mask(params: Any) -> Any:
  """True for conv and dense kernels: decoupled weight decay applies there."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def _weight_decay(config):
  return config.get("weight_decay", 0.0) or 0.0


def _sgd_family(nesterov: bool, uses_momentum: bool):
  def build(config, learning_rate):
    momentum = config.get("momentum", 0.9) if uses_momentum else None
    return optax.chain(
        optax.add_decayed_weights(_weight_decay(config), mask=_kernel_mask),
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov))
  return build


def _adam(config, learning_rate):
  return optax.adam(learning_rate, b1=config.get("b1", 0.9),
                    b2=config.get("b2", 0.999), eps=config.get("eps", 1e-8))


def _adamw(config, learning_rate):
  return optax.adamw(learning_rate, b1=config.get("b1", 0.9),
                     b2=config.get("b2", 0.999), eps=config.get("eps", 1e-8),
                     weight_decay=_weight_decay(config), mask=_kernel_mask)


def _lamb(config, learning_rate):
  return optax.lamb(learning_rate, b1=config.get("b1", 0.9),
                    b2=config.get("b2", 0.999), eps=config.get("eps", 1e-6),
                    weight_decay=_weight_decay(config), mask=_kernel_mask)


def _lars(config, learning_rate):
  return optax.lars(learning_rate, weight_decay=_weight_decay(config),
                    weight_decay_mask=_kernel_mask,
                    trust_ratio_mask=_kernel_mask,
                    trust_coefficient=config.get("trust_coefficient", 0.001),
                    momentum=config.get("momentum", 0.9),
                    nesterov=config.get("nesterov", False))


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": _sgd_family(nesterov=False, uses_momentum=False),
    "momentum": _sgd_family(nesterov=False, uses_momentum=True),
    "sgd_nesterov": _sgd_family(nesterov=True, uses_momentum=True),
    "adam": _adam,
    "adamw": _adamw,
    "lamb": _lamb,
    "lars": _lars,
}
# The keys config.optimizer may have: every built-in optimizer's
# hyperparameters, so that one config swaps optimizers by name alone, and
# the arguments of an optax factory named instead (`kwargs`).
OPTIMIZER_KEYS = ("name", "grad_clip_norm", "momentum", "nesterov",
                  "weight_decay", "b1", "b2", "eps", "trust_coefficient",
                  "kwargs")


def optax_factory(name: str) -> Optional[Callable[..., Any]]:
  """The optax function `name` ("lion", "optax.lion", "contrib.prodigy",
  "optax.contrib.prodigy"), or None if there is none."""
  path = name.removeprefix("optax.") if isinstance(name, str) else ""
  module = optax
  if path.startswith("contrib."):
    module, path = optax.contrib, path.removeprefix("contrib.")
  if not path or "." in path or path.startswith("_"):
    return None
  factory = getattr(module, path, None)
  if not inspect.isfunction(factory):
    return None
  return factory


@functools.cache
def _optax_names() -> list[str]:
  """The optax (and optax.contrib) functions annotated to return a
  GradientTransformation: the names config.optimizer.name may take beside
  the built-in seven (optax annotates every optimizer and transformation)."""
  names = dir(optax) + [f"contrib.{n}" for n in dir(optax.contrib)]
  factories = {n: optax_factory(n) for n in names}
  return [n for n, f in factories.items() if f and "GradientTransformation"
          in str(inspect.signature(f).return_annotation)]


def _optax_kwargs(config) -> dict[str, Any]:
  kwargs = config.get("kwargs") or {}
  return dict(kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict)
              else kwargs)


def _from_optax(config, learning_rate):
  factory = optax_factory(config.name)
  kwargs = _optax_kwargs(config)
  parameters = inspect.signature(factory).parameters
  if "weight_decay" in kwargs and "mask" in parameters and "mask" not in kwargs:
    kwargs["mask"] = _kernel_mask
  if "learning_rate" in parameters:
    return factory(learning_rate=learning_rate, **kwargs)
  return optax.chain(factory(**kwargs),
                     optax.scale_by_learning_rate(learning_rate))


def optimizer_problem(config: ml_collections.ConfigDict
                      ) -> Optional[tuple[str, Any, str]]:
  """What is wrong with config.optimizer's name or kwargs, as (key, value,
  why), or None."""
  name = config.get("name")
  kwargs = _optax_kwargs(config)
  if name in OPTIMIZERS:
    if kwargs:
      return ("kwargs", kwargs,
              f"the built-in {name!r} reads optimizer.momentum, b1, b2, eps, "
              "weight_decay, nesterov and trust_coefficient; kwargs are the "
              "arguments of an optax factory")
    return None
  factory = optax_factory(name)
  names = _optax_names()
  if factory is None or str(name).removeprefix("optax.") not in names:
    close = difflib.get_close_matches(str(name), sorted(OPTIMIZERS) + names,
                                      n=3, cutoff=0.6)
    hint = f"; close: {close}" if close else ""
    return ("name", name,
            f"neither a built-in optimizer {sorted(OPTIMIZERS)} nor an optax "
            f"factory (optax.<name>, optax.contrib.<name>){hint}")
  label = f"optax.{name.removeprefix('optax.')}"
  accepted = [p for p in inspect.signature(factory).parameters
              if p != "learning_rate"]
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    return ("kwargs", kwargs,
            f"{unknown} not arguments of {label}, which takes {accepted}")
  try:
    _from_optax(config, 0.1)
  except Exception as e:  # pylint: disable=broad-except
    return ("kwargs", kwargs, f"{label} raised {type(e).__name__}: {e}")
  return None


def describe(config: Any) -> str:
  """The optimizer's name and, for an optax factory, its arguments (config:
  config.optimizer, or its dict)."""
  kwargs = _optax_kwargs(config)
  arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
  return f"{config['name']}({arguments})" if kwargs else str(config["name"])


def _constant(config, base_lr, total_steps):
  del config, total_steps
  return optax.constant_schedule(base_lr)


def _warmup_cosine(config, base_lr, total_steps):
  warmup = int(config.get("warmup_fraction", 0.05) * total_steps)
  end_value = base_lr * config.get("end_factor", 0.0)
  if not warmup:
    # The same schedule without its empty warm-up (optax logs a linear
    # schedule of no steps as a mistake).
    return optax.cosine_decay_schedule(
        base_lr, max(total_steps, 1),
        alpha=0.0 if base_lr == 0 else end_value / base_lr)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=base_lr, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=end_value)


def _step(config, base_lr, total_steps):
  warmup = int(config.get("warmup_fraction", 0.0) * total_steps)
  boundaries = {int(f * total_steps): config.get("decay_factor", 0.1)
                for f in config.get("decay_fractions", (0.5, 0.75))}
  decay = optax.piecewise_constant_schedule(base_lr, boundaries)
  if not warmup:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base_lr, warmup),
       lambda step: decay(step + warmup)], [warmup])


SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": _constant,
    "warmup_cosine": _warmup_cosine,
    "step": _step,
}
SCHEDULE_KEYS = ("name", "warmup_fraction", "end_factor", "decay_fractions",
                 "decay_factor")


def create_learning_rate_schedule(config: ml_collections.ConfigDict,
                                  base_lr: float,
                                  total_steps: int) -> optax.Schedule:
  """The schedule named by config.name, peaking at base_lr."""
  if config.name not in SCHEDULES:
    raise ValueError(f"Unknown learning-rate schedule {config.name!r}; "
                     f"valid: {sorted(SCHEDULES)}.")
  return SCHEDULES[config.name](config, base_lr, total_steps)


def scale_by_tree(scales: Callable[[Any], Any]
                  ) -> optax.GradientTransformation:
  """Multiplies each update by its entry of scales(params), a tree of
  floats like the parameters (e.g. a learning-rate factor per part)."""

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    factors = scales(params)
    return jax.tree_util.tree_map(lambda u, f: u * f, updates,
                                  factors), state

  return optax.GradientTransformation(init, update)


def create_optimizer(config: ml_collections.ConfigDict,
                     learning_rate: optax.ScalarOrSchedule,
                     trainable: Any = None,
                     rate_factors: Optional[Callable[[Any], Any]] = None
                     ) -> optax.GradientTransformation:
  """The optimizer named by config.name.

  Args:
    config: optimizer config: name, and the fields that optimizer reads
      (momentum, b1, b2, eps, weight_decay, trust_coefficient, nesterov,
      grad_clip_norm; an optax factory's arguments in kwargs).
    learning_rate: a float or a schedule.
    trainable: optional tree of bools matching the parameters (or a function
      of the parameters returning one); False entries get no update at all,
      not even weight decay.
    rate_factors: optional function of the parameters returning a tree of
      floats like them: each update is multiplied by its factor (a
      learning rate of its own per part, for the optimizers here, whose
      updates scale with the rate). Adds an empty state to the chain.

  Returns:
    An optax GradientTransformation.
  """
  problem = optimizer_problem(config)
  if problem:
    key, value, why = problem
    raise ValueError(f"config.optimizer.{key}={value!r}: {why}.")
  build = OPTIMIZERS.get(config.name, _from_optax)
  tx = build(config, learning_rate)
  if config.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  if rate_factors is not None:
    tx = optax.chain(tx, scale_by_tree(rate_factors))
  if trainable is None:
    return tx

  def labels(params):
    mask = trainable(params) if callable(trainable) else trainable
    return jax.tree_util.tree_map(lambda t: "trained" if t else "frozen", mask)

  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()},
                               labels)

