"""What every stage of a run shares: config, workdir, mesh, data, log writer.

A `Job` is made once per run (`Job.create`), after the whole config has been
checked and before any stage is resolved (`saccader_jax.stages`) or given
its place in the job (`saccader_jax.stage_run`). It holds
no training state, only what stages read:

  - the mesh: the global batch is split along its `data` axis over every
    device of every process, parameters are replicated;
  - the config, recorded in the workdir (`run_record`);
  - the data set's builder, prepared by process 0 before the others read it;
    each host's share of a batch becomes one global array (`global_batch`);
  - the modules of the config's model fields, built once;
  - the metric writer (TensorBoard on process 0, logging elsewhere).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterator, Optional

from clu import metric_writers
from etils import epath
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from saccader_jax import errors
from saccader_jax import models
from saccader_jax import paths
from saccader_jax import run_record
from saccader_jax import workdir_lease
from saccader_jax.data import common
from saccader_jax.data import input_pipeline


def create_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ("data",))


def check_workdir(workdir: epath.PathLike) -> epath.Path:
  """Fails before any training if workdir cannot hold checkpoints and logs.

  Returns it as an absolute epath.Path (local, or a URL such as gs://...).
  """
  path = paths.absolute_path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except
    # Local file systems raise OSError; cloud ones their own errors.
    raise errors.WorkdirError(
        f"workdir {str(workdir)!r} is not writable: {e}. Choose another "
        "--workdir.") from e
  return path


def prepare_data(dataset_config: ml_collections.ConfigDict):
  """The data set's TFDS builder; process 0 generates or prepares the data,
  the others read it after."""
  if jax.process_index() == 0:
    builder = input_pipeline.get_builder(dataset_config)
  multihost_utils.sync_global_devices("data prepared")
  if jax.process_index() != 0:
    builder = input_pipeline.get_builder(dataset_config)
  return builder


@dataclasses.dataclass
class Job:
  """The run-wide context of a training job (see the module docstring)."""
  config: ml_collections.ConfigDict
  workdir: epath.Path
  mesh: Mesh
  builder: Any
  writer: metric_writers.MetricWriter
  read_only: bool = False
  # Process 0's lease of the workdir when the job holds one (`open_job`).
  lease: Optional[workdir_lease.Lease] = None
  _closed: bool = dataclasses.field(default=False, init=False)
  _models: dict[str, Any] = dataclasses.field(default_factory=dict)
  _normalizers: dict[tuple, Callable] = dataclasses.field(
      default_factory=dict)

  @classmethod
  def create(cls, config: ml_collections.ConfigDict,
             workdir: epath.PathLike, builder: Any,
             read_only: bool = False) -> "Job":
    """The job of a checked config on workdir, whose data builder is
    prepared (`saccader_jax.opening.open_job` does both first): checks the workdir and that a
    run already there is this one, records config there, then makes the
    writer. read_only: a finished workdir that is only read: nothing is
    recorded and the writer only logs."""
    if read_only:
      workdir = paths.absolute_path(workdir)
      if not workdir.exists():
        raise errors.WorkdirError(f"workdir {str(workdir)!r} does not exist.")
    else:
      workdir = check_workdir(workdir)
    run_record.check_rerun(workdir, config)
    # Every process has compared with the old record before it is replaced.
    multihost_utils.sync_global_devices("config compared")
    if jax.process_index() == 0 and not read_only:
      run_record.record(workdir, config)
    writer = metric_writers.create_default_writer(
        workdir / "tensorboard",
        just_logging=read_only or jax.process_index() > 0)
    return cls(config, workdir, create_mesh(), builder, writer,
               read_only=read_only)

  def close(self) -> None:
    """Flushes and closes the writer, then gives back the workdir's lease
    (if the job holds one); a second call does nothing."""
    if self._closed:
      return
    self._closed = True
    try:
      self.writer.close()
    finally:
      if self.lease is not None:
        self.lease.release()
        self.lease = None

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def data_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P("data"))

  def model(self, field: str = "model"):
    """The module of config.<field> (built once)."""
    if field not in self._models:
      self._models[field] = models.create_model(self.config[field])
    return self._models[field]

  def global_batch(self, local_batch: dict,
                   dataset: Optional[ml_collections.ConfigDict] = None
                   ) -> dict:
    """This host's rows [local_batch, ...] -> global arrays split along
    `data`. uint8 "image" pixels are normalised on the devices with
    dataset's (default config.dataset's) mean and std."""
    batch = jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(self.data_sharding,
                                                         x), local_batch)
    if "image" in batch and batch["image"].dtype == np.uint8:
      batch["image"] = self._normalizer(dataset or self.config.dataset)(
          batch["image"])
    return batch

  def _normalizer(self, dataset: ml_collections.ConfigDict):
    """The jitted `common.normalize_on_device` of dataset's mean and std."""
    key = (tuple(dataset.mean), tuple(dataset.std))
    if key not in self._normalizers:
      self._normalizers[key] = jax.jit(
          functools.partial(common.normalize_on_device, mean=key[0],
                            std=key[1]),
          out_shardings=self.data_sharding)
    return self._normalizers[key]

  def stage_steps(self, stage_config: ml_collections.ConfigDict) -> int:
    """num_steps, or num_epochs over the train split at the global batch."""
    if stage_config.get("num_steps"):
      return int(stage_config.num_steps)
    examples = input_pipeline.num_examples(self.builder,
                                           self.config.dataset.train_split)
    return int(math.ceil(stage_config.num_epochs * examples /
                         self.config.batch_size))

  def init_variables(self, key: jax.Array, field: str = "model") -> dict:
    """Random {"params", "batch_stats"} of config.<field>'s model,
    replicated."""
    model = self.model(field)
    dataset = models.dataset_for(self.config, field)
    init = jax.jit(lambda k: models.init_variables(model, dataset, k),
                   out_shardings=self.replicated)
    return init(key)

  def train_batches(self, field: str, seed: int, start_position: int,
                    by_index: Optional[Callable[[dict], dict]] = None
                    ) -> Iterator[dict]:
    """Global training batches as config.<field>'s model reads them, this
    host's stream starting at start_position examples.

    by_index: if given, each local batch, with its rows' example indices
    ("index", see `input_pipeline.train_batches`), becomes by_index(batch)
    before it is made global (e.g. `RepresentationCache.lookup`).
    """
    dataset = models.dataset_for(self.config, field)
    batches = input_pipeline.train_batches(
        dataset, self.builder, self.config.batch_size, seed=seed,
        start_position=start_position, with_index=by_index is not None,
        pixels=common.normalizes_on_device(dataset))
    to_global = functools.partial(self.global_batch, dataset=dataset)
    return map(to_global, map(by_index, batches) if by_index else batches)

  def eval_batches(self, split: str, max_examples: Optional[int] = None,
                   field: str = "model") -> Iterator[dict]:
    """The split's global batches (padding masked out), as the model of
    config.<field> reads them (`models.dataset_for`)."""
    dataset = models.dataset_for(self.config, field)
    return map(functools.partial(self.global_batch, dataset=dataset),
               input_pipeline.eval_batches(
                   dataset, self.builder, split, self.config.eval_batch_size,
                   max_examples, pixels=common.normalizes_on_device(dataset)))

