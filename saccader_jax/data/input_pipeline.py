"""tf.data input pipelines from TFDS, one host's share of each global batch.

Each dataset is registered by the name in `config.dataset.name` with how to
build it and how to preprocess its examples (`common.DatasetSpec`, defined
next to the data set: `cluttered_fashion_mnist.py`, `imagenet.py`). Batches are NumPy dicts:
  image [local_batch, height, width, channels] float32,
  label [local_batch] int32,
  mask  [local_batch] float32 (eval only: 0 marks padding).
"""

from __future__ import annotations

import collections
import itertools
import math
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from saccader_jax import errors
from saccader_jax.data import cluttered_fashion_mnist
from saccader_jax.data import common
from saccader_jax.data import image_folder
from saccader_jax.data import imagenet
from saccader_jax.data import integrity
from saccader_jax.data import reading
from saccader_jax.data import tfds_dataset

Batch = dict[str, np.ndarray]


DATASETS: dict[str, common.DatasetSpec] = {
    "cluttered_fashion_mnist": cluttered_fashion_mnist.SPEC,
    "imagenet2012": imagenet.SPEC,
    "image_folder": image_folder.SPEC,
    "tfds": tfds_dataset.SPEC,
}


def _spec(config: ml_collections.ConfigDict) -> common.DatasetSpec:
  if config.name not in DATASETS:
    raise ValueError(f"Unknown dataset {config.name!r}; valid: "
                     f"{sorted(DATASETS)}.")
  return DATASETS[config.name]


def get_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of config.dataset (prepares it if needed)."""
  return _spec(config).build(config)


def local_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise ValueError(f"Global batch size {global_batch_size} is not divisible "
                     f"by the {jax.process_count()} processes.")
  return global_batch_size // jax.process_count()


def _thread_options(config: ml_collections.ConfigDict) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  # tf.data and XLA share the host's cores; bound tf.data's share.
  if config.get("num_threads"):
    options.threading.private_threadpool_size = config.num_threads
    options.threading.max_intra_op_parallelism = 1
  return options


class _Features(Sequence):
  """A source's examples with only some of their features."""

  def __init__(self, source: Sequence[dict], keys: Sequence[str]):
    self._source, self._keys = source, tuple(keys)

  def _only(self, example: dict) -> dict:
    return {k: example[k] for k in self._keys}

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, key):
    return self._only(self._source[key])

  def __getitems__(self, keys: Sequence[int]) -> list[dict]:
    return [self._only(e) for e in self._source.__getitems__(keys)]


def data_source(builder: tfds.core.DatasetBuilder, split: str,
                spec: common.DatasetSpec,
                config: Optional[ml_collections.ConfigDict] = None
                ) -> Sequence[dict]:
  """Random access to a split: source[i] is example i, decoded except the
  images of datasets that decode in `preprocess`, with only the features
  `spec.read_keys(config)` names if it does (a data set by name may carry
  others of any shape)."""
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
        f"{builder.info.full_name} in {builder.data_dir} is stored as "
        f"{builder.info.file_format}; the input pipeline reads examples by "
        "index and needs array_record files. Prepare the dataset with "
        "file_format='array_record', or convert it in place: `tfds "
        f"convert_format --dataset_version_dir={builder.data_dir} "
        "--out_file_format=array_record`.")
  # Every image feature arrives encoded (whatever its name).
  decoders = ({name: tfds.decode.SkipDecoding()
               for name, feature in builder.info.features.items()
               if isinstance(feature, tfds.features.Image)}
              if spec.skip_decoding else None)
  latency_ms = float(config.get("read_latency_ms") or 0) if config else 0

  def open_source():
    source = builder.as_data_source(split=split, decoders=decoders or None)
    # A stand-in for remote storage (tests, benchmarks): every request
    # waits first.
    return (reading.DelayedSource(source, latency_ms / 1000) if latency_ms
            else source)

  # A damaged file is reported by name, with how to rebuild the data set.
  source = integrity.checked_source(open_source, builder, split)
  if config is not None and spec.read_keys is not None:
    return _Features(source, spec.read_keys(config))
  return source


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order in which epoch `epoch` visits the examples: a permutation that
  is a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_indices(seed: int, num_examples: int,
                  start: int = 0) -> Iterator[tuple[int, int]]:
  """(position, example index) of an endless stream of shuffled epochs,
  from stream position `start` on. Reaching position p costs one
  permutation of p's epoch, whatever p is."""
  position = start
  while True:
    epoch, offset = divmod(position, num_examples)
    for index in epoch_order(seed, epoch, num_examples)[offset:]:
      yield position, int(index)
      position += 1


def _signature(example: dict) -> dict:
  """tf.data's output signature of chunks of examples like `example`."""
  def spec(value):
    if isinstance(value, bytes):
      return tf.TensorSpec((None,), tf.string)
    value = np.asarray(value)
    return tf.TensorSpec((None,) + value.shape, tf.as_dtype(value.dtype))
  return {"position": tf.TensorSpec((None,), tf.int64),
          "index": tf.TensorSpec((None,), tf.int64),
          "example": {k: spec(v) for k, v in example.items()}}


def _stack(examples: Sequence[dict]) -> dict[str, np.ndarray]:
  """Examples -> {feature: [len(examples), ...] array} (bytes as objects)."""
  return {k: (np.asarray([e[k] for e in examples], object)
              if isinstance(examples[0][k], bytes)
              else np.stack([e[k] for e in examples]))
          for k in examples[0]}


# Splits read into memory (config.dataset.cache), by `_memory_key`: each is
# read once per process, however many stages and evaluations use it.
_IN_MEMORY: dict[tuple, dict[str, np.ndarray]] = {}


def _in_memory(source: Sequence[dict], key: tuple,
               config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The whole source as stacked arrays, read once per `_memory_key`: in
  batched reads of _MEMORY_CHUNK records, `read_threads(config)` of them in
  flight (from a bucket, one batch after another would take the split's
  record count times a request's latency)."""
  if key not in _IN_MEMORY:
    starts = range(0, len(source), _MEMORY_CHUNK)

    def read_chunk(start: int) -> dict[str, np.ndarray]:
      return _stack(source.__getitems__(
          list(range(start, min(start + _MEMORY_CHUNK, len(source))))))

    chunks = list(reading.ordered_reads(
        read_chunk, starts, min(read_threads(config), len(starts))))
    _IN_MEMORY[key] = {k: np.concatenate([c[k] for c in chunks])
                       for k in chunks[0]}
  return _IN_MEMORY[key]


# Records per batched read of a split read into memory.
_MEMORY_CHUNK = 512


def _memory_key(config: ml_collections.ConfigDict,
                builder: tfds.core.DatasetBuilder,
                split: Any) -> Optional[tuple]:
  """What a split held in memory is known by: the prepared files, and the
  data set reading them (two data sets may read one copy differently)."""
  if not config.get("cache"):
    return None
  spec = _spec(config)
  keys = tuple(spec.read_keys(config)) if spec.read_keys else None
  return (str(builder.data_dir), str(split), config.name, keys)


def read_threads(config: ml_collections.ConfigDict) -> int:
  """Threads reading records (config.dataset.read_threads; 0 or unset: the
  default, `reading.DEFAULT_READ_THREADS`)."""
  return int(config.get("read_threads") or reading.DEFAULT_READ_THREADS)


def ordered_records(source: Sequence[dict], keys: Iterable[int],
                    config: ml_collections.ConfigDict) -> Iterator[dict]:
  """source[key] for each key, in order, read by `read_threads(config)`
  threads as the pipeline reads them."""
  threads = read_threads(config)
  # The next chunk's reads under way while the generator takes this one:
  # tf.data waits on the generator at each chunk's end.
  return reading.ordered_reads(source.__getitem__, keys, threads,
                               ahead=_READ_CHUNK + 2 * threads)


class _ReadFailure:
  """The first read error of a stream, kept where tf.data cannot reach it:
  tf.data hands a generator's exception on as an `OpError` whose message
  holds a traceback, and `_surfacing` raises this one in its place."""

  def __init__(self):
    self.error: Optional[BaseException] = None


def _surfacing(batches: Iterator[Batch], failure: _ReadFailure
               ) -> Iterator[Batch]:
  """batches, with the read error that broke them raised as itself."""
  try:
    yield from batches
  except tf.errors.OpError as e:
    if failure.error is not None:
      raise failure.error from None
    raise


def _examples(source: Sequence[dict], config: ml_collections.ConfigDict,
              memory_key: Optional[tuple],
              indices: Iterable[tuple[int, int]],
              signature: dict, failure: _ReadFailure) -> tf.data.Dataset:
  """{"position", "index", "example"} for each (position, index).

  A split held in memory (memory_key) is indexed in chunks; otherwise its
  records are read by `read_threads(config)` threads, in order, many in
  flight (`ordered_records`). Either way the generator yields chunks
  (tf.data's per-element cost of a Python generator is paid per chunk);
  decoding belongs in the parallel map that follows. A read that fails
  raises a one-line `DataError` (kept in `failure` for `_surfacing`).
  """

  def chunked(pairs: Iterator[tuple[int, int]]):
    while chunk := list(itertools.islice(pairs, _READ_CHUNK)):
      yield chunk

  def from_memory():
    arrays = (_in_memory(source, memory_key, config) if len(source)
              else {})
    for chunk in chunked(iter(indices)):
      positions, keys = zip(*chunk)
      yield positions, keys, {k: v[list(keys)] for k, v in arrays.items()}

  def from_source():
    pairs, positions = iter(indices), collections.deque()

    def keys():
      for position, key in pairs:
        positions.append((position, key))
        yield key

    records = ordered_records(source, keys(), config)
    while chunk := list(itertools.islice(records, _READ_CHUNK)):
      done = [positions.popleft() for _ in chunk]
      yield [p for p, _ in done], [k for _, k in done], _stack(chunk)

  def generate():
    try:
      for positions, keys, example in (from_memory() if memory_key
                                       else from_source()):
        yield {"position": np.asarray(positions, np.int64),
               "index": np.asarray(keys, np.int64), "example": example}
    except Exception as e:  # pylint: disable=broad-except
      failure.error = (e if isinstance(e, errors.JobError) else
                       errors.DataError(
                           f"Reading {config.name} failed: "
                           f"{errors.read_failure(e)}. Run the same command "
                           "again to resume; if it fails again, check the "
                           "data files' storage."))
      raise failure.error from e

  chunks = tf.data.Dataset.from_generator(reading.stopping_at_exit(generate),
                                          output_signature=signature)
  return chunks.unbatch()


_READ_CHUNK = 128


def train_batches(config: ml_collections.ConfigDict,
                  builder: tfds.core.DatasetBuilder, global_batch_size: int,
                  seed: int, start_step: int = 0,
                  start_position: Optional[int] = None,
                  with_index: bool = False,
                  pixels: bool = False) -> Iterator[Batch]:
  """An endless iterator over this host's share of the training batches.

  It starts at stream position start_position, by default start_step x the
  local batch (the position a job that ran start_step steps has reached).
  with_index: each batch also carries "index" [local_batch] int64, each
  row's example index in this host's share of the split (what
  `train_examples_in_order` calls it). pixels: "image" uint8 [0, 255], to be
  normalised on the devices (`common.normalize_on_device`), rather than
  normalised float32.

  The examples of stream position p are a pure function of (seed, process
  index, p): each epoch is a seeded permutation of this host's examples and
  each example's augmentation is seeded by its position. A job that restarts
  at start_step sees the batches an uninterrupted job would have seen, and
  reaches them without reading the examples before them.
  """
  spec = _spec(config)
  seed = seed + 1000 * jax.process_index()
  split = tfds.split_for_jax_process(config.train_split)
  source = data_source(builder, split, spec, config)
  local_batch = local_batch_size(global_batch_size)
  if start_position is None:
    start_position = start_step * local_batch
  failure = _ReadFailure()
  ds = _examples(source, config, _memory_key(config, builder, split),
                 train_indices(seed, len(source), start_position),
                 _signature(source[0]), failure)

  # Plain functions, not lambdas: AutoGraph cannot read the source of a
  # lambda that spans lines and warns on every trace.
  @tf.autograph.experimental.do_not_convert
  def preprocess(item):
    seed_of_example = tf.stack([tf.constant(seed, tf.int64),
                                item["position"]])
    out = common.finish(spec.preprocess(
        dict(item["example"], seed=seed_of_example), config, train=True),
                        config, pixels)
    return dict(out, index=item["index"]) if with_index else out

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True)
  ds = ds.prefetch(config.get("prefetch", 2))
  return _surfacing(iter(tfds.as_numpy(ds.with_options(
      _thread_options(config)))), failure)


def host_split_size(config: ml_collections.ConfigDict,
                    builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Examples in this host's share of a split (as the training pipeline
  divides it)."""
  return len(data_source(builder, tfds.split_for_jax_process(split),
                         _spec(config), config))


def train_examples_in_order(config: ml_collections.ConfigDict,
                            builder: tfds.core.DatasetBuilder,
                            local_batch: int,
                            pixels: bool = False) -> Iterator[Batch]:
  """This host's share of the train split once, in index order, as training
  preprocesses it: {"image", "label", "index"} batches of local_batch rows
  (the last one shorter; pixels: images as in `train_batches`). Only for
  data sets whose training preprocessing is deterministic
  (`DatasetSpec.deterministic_train`): an image is then the one any epoch's
  batch carries for that index."""
  spec = _spec(config)
  if not spec.deterministic_train:
    raise ValueError(f"{config.name}'s training preprocessing is random per "
                     "epoch; its images have no fixed order to read.")
  split = tfds.split_for_jax_process(config.train_split)
  source = data_source(builder, split, spec, config)
  failure = _ReadFailure()
  ds = _examples(source, config, _memory_key(config, builder, split),
                 ((i, i) for i in range(len(source))), _signature(source[0]),
                 failure)

  @tf.autograph.experimental.do_not_convert
  def preprocess(item):
    seed_of_example = tf.stack([tf.constant(0, tf.int64), item["position"]])
    out = common.finish(spec.preprocess(
        dict(item["example"], seed=seed_of_example), config, train=True),
                        config, pixels)
    return dict(out, index=item["index"])

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch).prefetch(config.get("prefetch", 2))
  return _surfacing(iter(tfds.as_numpy(ds.with_options(
      _thread_options(config)))), failure)


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Examples in a split (or split spec such as "train[:50000]")."""
  return builder.info.splits[split].num_examples


def class_names(config: ml_collections.ConfigDict) -> Optional[list[str]]:
  """The class name of each label as the models see it (names[label]), or
  None if the data set's labels have none."""
  spec = _spec(config)
  return list(spec.class_names(config)) if spec.class_names else None


def preprocess_images(images: Any, config: ml_collections.ConfigDict
                      ) -> np.ndarray:
  """Images -> what the models read, as evaluation preprocesses them
  (config.dataset's data set: crop, resize, normalise).

  Args:
    images: [n, H, W, C] uint8 array, or a list of [H, W, C] uint8 arrays of
      any sizes, or of encoded files as the data set stores them (bytes:
      e.g. ImageNet JPEGs, preprocessed by the evaluation pipeline itself).
      ImageNet's pipeline decodes only the crop window of a JPEG, which can
      differ from a full decode by a few gray levels in the window's first
      row and column; encoded files avoid that difference.
    config: config.dataset.

  Returns:
    [n, image_size, image_size, C] float32.
  """
  spec = _spec(config)
  out = []
  for image in images:
    if isinstance(image, bytes) and spec.skip_decoding:
      example = {"image": tf.constant(image), "label": tf.constant(0)}
      out.append(common.normalize(
          spec.preprocess(example, config, False)["image"], config).numpy())
      continue
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
      raise ValueError(f"preprocess_images takes [H, W, C] uint8 images; got "
                       f"{image.dtype} of shape {image.shape}.")
    if image.shape[-1] != config.num_channels:
      raise ValueError(f"{config.name} images have {config.num_channels} "
                       f"channel(s); got shape {image.shape}.")
    out.append(common.normalize(spec.eval_image(tf.constant(image), config),
                                config).numpy())
  return np.stack(out).astype(np.float32)


def read_examples(config: ml_collections.ConfigDict, split: str, count: int,
                  builder: Optional[tfds.core.DatasetBuilder] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The first count examples of a split as evaluation reads them:
  ([n, S, S, C] float32 images, [n] int32 labels), n = min(count, split
  size). builder: config's prepared builder (default `get_builder(config)`,
  which prepares the data set if it is not yet)."""
  builder = builder or get_builder(config)
  count = min(count, num_examples(builder, split))
  batch = next(eval_batches(config, builder, split, count, count))
  real = batch["mask"] > 0
  return batch["image"][real], batch["label"][real]


def eval_batches(config: ml_collections.ConfigDict,
                 builder: tfds.core.DatasetBuilder, split: str,
                 global_batch_size: int,
                 max_examples: Optional[int] = None,
                 pixels: bool = False) -> Iterator[Batch]:
  """This host's share of a split, once, in fixed-size padded batches
  (pixels: images as in `train_batches`).

  Every host yields the same number of batches, so that the collective eval
  step runs in lockstep: the hosts agree on the largest share, and a host
  whose share is used up (or empty) yields batches of zeros with mask 0,
  shaped from the pipeline's element spec.
  """
  spec = _spec(config)
  local = local_batch_size(global_batch_size)
  # max_examples caps the split (a spec such as "train[:50000]" included);
  # each host reads its share of the cap.
  host_limit = (math.ceil(max_examples / jax.process_count())
                if max_examples else math.inf)
  host_split = tfds.split_for_jax_process(split, drop_remainder=False)
  try:
    source = data_source(builder, host_split, spec, config)
  except ValueError:  # TFDS refuses an empty share (fewer examples than hosts)
    source = []
  count = min(len(source), host_limit)
  largest = count
  if jax.process_count() > 1:
    largest = int(np.max(multihost_utils.process_allgather(np.int64(count))))
  # An empty share still needs the element signature: from the whole split.
  first = (source[0] if len(source)
           else data_source(builder, split, spec, config)[0])
  failure = _ReadFailure()
  ds = _examples(source, config, _memory_key(config, builder, host_split),
                 ((i, i) for i in range(count)), _signature(first), failure)

  @tf.autograph.experimental.do_not_convert
  def preprocess(item):
    return common.finish(spec.preprocess(item["example"], config,
                                         train=False), config, pixels)

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local).prefetch(config.get("prefetch", 2))
  ds = ds.with_options(_thread_options(config))
  batches = _surfacing(iter(tfds.as_numpy(ds)), failure)
  empty = {k: np.zeros((0,) + tuple(v.shape[1:]), v.dtype.as_numpy_dtype)
           for k, v in ds.element_spec.items()}
  for _ in range(math.ceil(largest / local)):
    yield pad_batch(next(batches, empty), local)


def pad_batch(batch: Batch, size: int) -> Batch:
  """Pads a short batch to `size` with zeros and adds its mask."""
  count = len(batch["label"])
  padded = {k: np.concatenate(
      [v, np.zeros((size - count,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}
  padded["mask"] = (np.arange(size) < count).astype(np.float32)
  return padded
