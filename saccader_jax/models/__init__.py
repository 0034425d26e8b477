"""Model factory: builds a model from the `model` field of a config."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from saccader_jax.models.attention import AttentionNetwork
from saccader_jax.models.bagnet import BagNet
from saccader_jax.models.bagnet import PROJECTION_NORMS
from saccader_jax.models.dram import DRAM
from saccader_jax.models.dram import DRAMOutput
from saccader_jax.models.layers import BATCH_NORM_STATISTICS
from saccader_jax.models.layers import MATMUL_PRECISIONS
from saccader_jax.models.resnet_v2 import ResNetV2
from saccader_jax.models.saccader import Saccader
from saccader_jax.models.saccader import SaccaderOutput
from saccader_jax.models.saccader_classnet import SaccaderClassnet

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"Unknown compute dtype {name!r}; valid: "
                     f"{sorted(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]


# A model config's numerics: the valid names of each key, and its default.
NUMERICS = {"dtype": COMPUTE_DTYPES, "matmul_precision": MATMUL_PRECISIONS,
            "batch_norm_statistics": BATCH_NORM_STATISTICS}
DEFAULT_NUMERICS = {"dtype": "float32", "matmul_precision": "default",
                    "batch_norm_statistics": "global"}


def matmul_precision(config: ml_collections.ConfigDict) -> Any:
  """The jax.lax precision of config.matmul_precision (default "default")."""
  name = config.get("matmul_precision", DEFAULT_NUMERICS["matmul_precision"])
  if name not in MATMUL_PRECISIONS:
    raise ValueError(f"Unknown matmul precision {name!r}; valid: "
                     f"{sorted(MATMUL_PRECISIONS)}.")
  return MATMUL_PRECISIONS[name]


def batch_norm_groups(config: ml_collections.ConfigDict) -> int:
  """Slices of a training batch with their own batch-norm statistics:
  config.batch_norm_statistics "global" (the default) 1, "per_device" the
  number of devices the global batch is split over (`jax.device_count()`,
  every host's)."""
  name = config.get("batch_norm_statistics",
                    DEFAULT_NUMERICS["batch_norm_statistics"])
  if name not in BATCH_NORM_STATISTICS:
    raise ValueError(f"Unknown batch_norm_statistics {name!r}; valid: "
                     f"{list(BATCH_NORM_STATISTICS)}.")
  return jax.device_count() if name == "per_device" else 1


def _bagnet(config: ml_collections.ConfigDict) -> BagNet:
  rep = config.representation
  return BagNet(
      num_classes=config.num_classes,
      blocks=tuple(rep.blocks), planes=tuple(rep.planes),
      strides=tuple(rep.strides), kernel3=tuple(rep.kernel3),
      stem_channels=rep.stem_channels, expansion=rep.expansion,
      what_channels=rep.what_channels, bn_momentum=config.bn_momentum,
      bn_epsilon=config.bn_epsilon, dtype=compute_dtype(config.dtype),
      precision=matmul_precision(config), bn_groups=batch_norm_groups(config),
      projection_norm=rep.get("projection_norm", "shortcut"))


def _saccader(config: ml_collections.ConfigDict) -> Saccader:
  dtype, precision = compute_dtype(config.dtype), matmul_precision(config)
  return Saccader(
      representation=_bagnet(config),
      attention=AttentionNetwork(
          widths=tuple(config.attention.widths),
          dilation=config.attention.dilation,
          bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
          dtype=dtype, precision=precision,
          bn_groups=batch_norm_groups(config)),
      mixed_channels=config.mixed_channels, dtype=dtype, precision=precision)


def _resnet_v2(config: ml_collections.ConfigDict, **overrides) -> ResNetV2:
  """A ResNetV2 from config; overrides (e.g. num_classes=None for a
  headless network) take precedence over its fields."""
  fields = dict(
      num_classes=config.get("num_classes"), units=tuple(config.units),
      widths=tuple(config.widths), strides=tuple(config.strides),
      root_channels=config.root_channels, root_kernel=config.root_kernel,
      root_stride=config.root_stride, root_pool=config.root_pool,
      expansion=config.get("expansion", 4),
      dtype=compute_dtype(config.get("dtype", "float32")),
      precision=matmul_precision(config), bn_groups=batch_norm_groups(config))
  for name in ("bn_momentum", "bn_epsilon"):
    if name in config:
      fields[name] = config[name]
  fields.update(overrides)
  return ResNetV2(**fields)


def _dram(config: ml_collections.ConfigDict) -> DRAM:
  return DRAM(
      glimpse_network=_resnet_v2(
          config.glimpse_network, num_classes=None,
          bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
          dtype=compute_dtype(config.dtype),
          precision=matmul_precision(config),
          bn_groups=batch_norm_groups(config)),
      num_classes=config.num_classes, glimpse_size=config.glimpse_size,
      num_resolutions=config.num_resolutions,
      classification_units=config.classification_units,
      location_units=config.location_units,
      location_stddev=config.location_stddev,
      dtype=compute_dtype(config.dtype), precision=matmul_precision(config))


def _saccader_classnet(config: ml_collections.ConfigDict) -> SaccaderClassnet:
  return SaccaderClassnet(saccader=_saccader(config.saccader),
                          classifier=_resnet_v2(config.classifier),
                          image_size=config.saccader_image_size)


# A model that can act as a glimpse policy has `glimpse_fn` (a
# policy.GlimpseFn) and `grid_geometry`, or `rollout_fn` (a
# policy.RolloutFn), `finest_boxes` and `min_image_size`; any other is a
# whole-image classifier whose `apply(variables, images)` gives
# [batch, classes] logits.
MODELS: dict[str, Callable[[ml_collections.ConfigDict], Any]] = {
    "saccader": _saccader,
    "resnet_v2": _resnet_v2,
    "dram": _dram,
    "saccader_classnet": _saccader_classnet,
}


# The keys each model's config may have. A dict is a section with keys of its
# own; MODEL marks a section that is itself a model config (of any name).
MODEL = "model"
_COMMON_KEYS = dict.fromkeys(("name", "dtype", "matmul_precision",
                              "batch_norm_statistics", "num_classes",
                              "bn_momentum", "bn_epsilon"))
_RESNET_V2_KEYS = dict.fromkeys(("units", "widths", "strides",
                                 "root_channels", "root_kernel",
                                 "root_stride", "root_pool", "expansion"))
MODEL_KEYS: dict[str, dict[str, Any]] = {
    "saccader": {
        **_COMMON_KEYS, "mixed_channels": None,
        "representation": dict.fromkeys((
            "blocks", "planes", "strides", "kernel3", "stem_channels",
            "expansion", "what_channels", "projection_norm")),
        "attention": dict.fromkeys(("widths", "dilation"))},
    "resnet_v2": {**_COMMON_KEYS, **_RESNET_V2_KEYS},
    "dram": {**_COMMON_KEYS, "glimpse_network": _RESNET_V2_KEYS,
             **dict.fromkeys(("glimpse_size", "num_resolutions",
                              "classification_units", "location_units",
                              "location_stddev"))},
    "saccader_classnet": {"name": None, "input_size": None,
                          "saccader_image_size": None, "saccader": MODEL,
                          "classifier": MODEL},
}


def is_policy(model) -> bool:
  """Whether model chooses glimpses (else it classifies whole images): on a
  grid of locations (`glimpse_fn`, e.g. Saccader) or anywhere in the image
  (`rollout_fn`, e.g. DRAM)."""
  return hasattr(model, "glimpse_fn") or hasattr(model, "rollout_fn")


def classify_fn(model) -> Callable[[Any, jnp.ndarray], jnp.ndarray]:
  """(variables, images) -> [batch, classes] whole-image logits of model:
  a policy model's `whole_image_logits` (Saccader: its BagNet on every
  location), else the classifier itself."""
  if hasattr(model, "whole_image_logits"):
    return model.whole_image_logits
  return lambda variables, images: model.apply(variables, images)


def init_variables(model, dataset_config: ml_collections.ConfigDict,
                   key) -> dict:
  """{"params", "batch_stats"} of model for the configured images (traceable:
  jit it, or eval_shape it for shapes alone)."""
  size, channels = dataset_config.image_size, dataset_config.num_channels
  images = jnp.zeros((1, size, size, channels), jnp.float32)
  return model.init(key, images, **type(model).init_kwargs)


def abstract_variables(config: ml_collections.ConfigDict,
                       field: str = "model") -> dict:
  """ShapeDtypeStructs of {"params", "batch_stats"} of the model of
  config.<field> ("model", or e.g. "classifier")."""
  model = create_model(config[field])
  return jax.eval_shape(
      lambda key: init_variables(model, dataset_for(config, field), key),
      jax.random.key(0))


def dataset_for(config: ml_collections.ConfigDict,
                field: str = "model") -> ml_collections.ConfigDict:
  """config.dataset as the model of config.<field> reads it: at its own
  `input_size` if it has one (the Saccader + high-resolution classifier),
  else as configured."""
  size = config[field].get("input_size") if field in config else None
  if not size or size == config.dataset.image_size:
    return config.dataset
  dataset = config.dataset.copy_and_resolve_references()
  with dataset.unlocked():
    dataset.canvas_size = dataset.get("canvas_size") or dataset.image_size
    dataset.image_size = size
  return dataset


def create_model(config: ml_collections.ConfigDict):
  """Builds the model named by config.name (the `model` field of a config)."""
  if config.name not in MODELS:
    raise ValueError(f"Unknown model {config.name!r}; valid: {sorted(MODELS)}.")
  if config.get("num_classes") == 0:
    raise ValueError(
        "num_classes is 0, \"the data set's\": resolve it first with "
        "saccader_jax.config_checks.resolve_num_classes(config) on the whole "
        "config (main and Run do), or set the model's num_classes.")
  return MODELS[config.name](config)


__all__ = ["AttentionNetwork", "BagNet", "DRAM", "DRAMOutput", "ResNetV2",
           "Saccader", "SaccaderClassnet", "dataset_for",
           "SaccaderOutput", "classify_fn", "create_model", "compute_dtype", "init_variables",
           "is_policy"]
