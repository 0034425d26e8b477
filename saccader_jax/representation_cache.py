"""A frozen representation network's outputs on the train split, computed once.

A stage that runs the BagNet frozen in inference mode
(`objectives.Stage.frozen_representation`: stage 2 with
frozen_representation_bn="inference", stage 3 with train_representation=False)
reads the same per-location outputs of an image in every epoch. With
config.cache_frozen_representation = True, on a data set whose training
preprocessing draws nothing at random (`DatasetSpec.deterministic_train`),
the job computes them once per example when the stage starts, and each step
reads its rows by example index instead of running the network; the step
then costs what the location network costs. Everything else (batch order,
keys, the loss) is as without the cache.

The arrays live in this host's memory, for its share of the train split:
per example h * w * (features + what + classes) float32 values (the parts
config: 11 * 11 * (256 + 64 + 10) * 4 B = 160 KB; its 55,000 canvases
8.8 GB).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import time
from typing import Any

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from saccader_jax.data import common
from saccader_jax.data import input_pipeline
from saccader_jax.objectives.saccader import CACHED_REPRESENTATION
from saccader_jax.objectives.saccader import REPRESENTATION

OUTPUTS = ("features2d", "what_features", "logits2d")


@dataclasses.dataclass(frozen=True)
class RepresentationCache:
  """The representation's outputs of each example of this host's share.

  Attributes:
    arrays: {"features2d": [N, h, w, c], "what_features": [N, h, w, what],
      "logits2d": [N, h, w, classes]} float32, row i of example index i.
  """
  arrays: dict[str, np.ndarray]

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self.arrays.values())

  def lookup(self, batch: dict) -> dict:
    """A local training batch with "index" [b] -> the batch with the rows'
    outputs under "representation" in place of "image" and "index"."""
    index = batch["index"]
    out = {k: v for k, v in batch.items() if k not in ("image", "index")}
    out[CACHED_REPRESENTATION] = {name: array[index]
                                  for name, array in self.arrays.items()}
    return out


# The last cache computed, by what it was computed from: stage 2 and a frozen
# stage 3 read the same BagNet, as do runs of one stage 1 in one process.
_LAST: dict[tuple, RepresentationCache] = {}


def clear() -> None:
  """Frees the cache this process holds."""
  _LAST.clear()


def _fingerprint(variables: Any) -> str:
  digest = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(variables):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _padded(images: np.ndarray, rows: int) -> np.ndarray:
  """images [n, ...] with zero rows appended up to `rows`."""
  return np.concatenate([images, np.zeros((rows - len(images),) +
                                          images.shape[1:], images.dtype)])


def compute(model: Any, variables: Any, dataset_config: Any, builder: Any,
            batch_size: int, devices=None) -> RepresentationCache:
  """Runs `model.represent` (inference mode) on this host's share of the
  train split, each batch split over this host's devices; or returns the
  cache this process last computed if it came from the same model,
  variables and data (the process holds that one until the next is
  computed, or `clear`).

  The build is pipelined as evaluation is: the next batch is read and sent
  while the devices compute, and two batches' outputs are in flight to the
  host at a time, so that a host with N devices builds N times faster than
  with one. Images cross as uint8 pixels and are normalised on the devices
  where the pipeline does so (config.dataset.normalize_on_device).

  Args:
    model: a model with a `represent(images)` method returning the
      representation's outputs (`bagnet.RepresentationOutput`).
    variables: its {"params", "batch_stats"} (global or host arrays).
    dataset_config: config.dataset of the model's input.
    builder: its prepared TFDS builder.
    batch_size: images per forward pass of the whole job (this host's share
      of them per pass, rounded up to a multiple of its devices).
    devices: the devices to run on (default: this host's).
  """
  # Host copies: the forward runs on local data, whatever the mesh.
  variables = jax.device_get(variables)
  # What `represent` reads: the representation network's variables (the
  # rest, e.g. a location network trained in between, does not count).
  read = {collection: tree.get(REPRESENTATION, tree)
          for collection, tree in variables.items()}
  key = (repr(model), _fingerprint(read), dataset_config.to_json(),
         str(builder.data_dir))
  if key in _LAST:
    logging.info("Reusing the frozen representation's cached outputs (same "
                 "network and data).")
    return _LAST[key]
  clear()   # one cache at a time
  devices = list(devices or jax.local_devices())
  mesh = Mesh(np.asarray(devices), ("data",))
  rows, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  pixels = common.normalizes_on_device(dataset_config)
  mean, std = tuple(dataset_config.mean), tuple(dataset_config.std)

  def represent(v, images):
    if pixels:
      images = common.normalize_on_device(images, mean, std)
    return model.apply(v, images, method="represent")

  represent = jax.jit(represent, out_shardings=rows)
  on_devices = jax.device_put(variables, replicated)
  local = input_pipeline.local_batch_size(batch_size)
  per_pass = -(-local // len(devices)) * len(devices)
  size = input_pipeline.host_split_size(dataset_config, builder,
                                        dataset_config.train_split)
  arrays, done, started = {}, 0, time.time()
  in_flight = collections.deque()

  def store(index, rep):
    nonlocal arrays, done
    rep = {name: np.asarray(getattr(rep, name))[:len(index)]
           for name in OUTPUTS}
    if not arrays:
      arrays = {name: np.empty((size,) + rep[name].shape[1:], np.float32)
                for name in OUTPUTS}
      logging.info("Caching the frozen representation's outputs: %d "
                   "examples, %.2f GB, on %d device(s).", size,
                   sum(a.nbytes for a in arrays.values()) / 1e9,
                   len(devices))
    for name in OUTPUTS:
      arrays[name][index] = rep[name]
    done += len(index)
    if done // per_pass % 20 == 0:
      logging.info("Cached %d / %d examples (%.0f s).", done, size,
                   time.time() - started)

  for batch in input_pipeline.train_examples_in_order(
      dataset_config, builder, per_pass, pixels=pixels):
    images = jax.device_put(_padded(batch["image"], per_pass), rows)
    rep = represent(on_devices, images)
    for name in OUTPUTS:
      getattr(rep, name).copy_to_host_async()
    in_flight.append((batch["index"], rep))
    if len(in_flight) > 2:
      store(*in_flight.popleft())
  while in_flight:
    store(*in_flight.popleft())
  logging.info("Cached the frozen representation of %d examples in %.0f s.",
               done, time.time() - started)
  _LAST[key] = RepresentationCache(arrays)
  return _LAST[key]
