"""Records read by many threads: the serial reader's stream, errors, exit."""

import itertools
import threading
import time

import numpy as np
import pytest

from saccader_jax import errors
from saccader_jax.data import input_pipeline
from saccader_jax.data import reading



@pytest.fixture
def tiny_data(tiny_config):
  return tiny_config, input_pipeline.get_builder(tiny_config.dataset)


@pytest.mark.parametrize("threads", [1, 3, 8, 64])
def test_ordered_reads_keep_the_keys_order_when_reads_end_out_of_order(
    threads):
  rng = np.random.default_rng(threads)
  delays = rng.uniform(0, 0.004, 200)
  done_order = []

  def read_one(key):
    time.sleep(delays[key % 200])
    done_order.append(key)
    return key * 10

  keys = list(rng.permutation(500))
  assert list(reading.ordered_reads(read_one, iter(keys), threads)) == [
      k * 10 for k in keys]
  if threads > 1:   # the reads did overlap and end in another order
    assert done_order != keys


def test_ordered_reads_keep_at_most_twice_the_threads_in_flight():
  lock, in_flight, most = threading.Lock(), [0], [0]

  def read_one(key):
    with lock:
      in_flight[0] += 1
      most[0] = max(most[0], in_flight[0])
    time.sleep(0.002)
    with lock:
      in_flight[0] -= 1
    return key

  consumed = []
  for record in reading.ordered_reads(read_one, iter(range(300)), 4):
    consumed.append(record)
    time.sleep(0.001)   # a slow consumer: the window fills
  assert consumed == list(range(300))
  assert most[0] == 4   # every thread busy, no more


def _stream(config, builder, threads, batches=6, **kwargs):
  config = config.copy_and_resolve_references()
  config.dataset.cache = False
  config.dataset.read_threads = threads
  stream = input_pipeline.train_batches(config.dataset, builder, 16, seed=3,
                                        **kwargs)
  return [next(stream) for _ in range(batches)]


def test_threaded_reads_give_the_serial_stream_and_resume_inside_it(
    tiny_data):
  """Several thread counts, from the start and from a resumed position,
  equal the one-thread (serial) reader's stream bit for bit; so does the
  split held in memory."""
  config, builder = tiny_data
  serial = _stream(config, builder, 1, batches=20)   # past one epoch (200)
  in_memory = config.copy_and_resolve_references()
  in_memory.dataset.cache = True
  stream = input_pipeline.train_batches(in_memory.dataset, builder, 16,
                                        seed=3)
  for threads, rows in [(8, _stream(config, builder, 8, batches=20)),
                        (64, _stream(config, builder, 64, batches=20)),
                        ("memory", [next(stream) for _ in range(20)])]:
    for expected, batch in zip(serial, rows):
      np.testing.assert_array_equal(batch["image"], expected["image"],
                                    err_msg=str(threads))
      np.testing.assert_array_equal(batch["label"], expected["label"])
  resumed = _stream(config, builder, 8, batches=5, start_step=13)
  for expected, batch in zip(serial[13:], resumed):
    np.testing.assert_array_equal(batch["image"], expected["image"])


def test_a_split_held_in_memory_is_read_by_batched_reads_in_flight_together(
    tiny_data, monkeypatch):
  """From a bucket, batched reads one after another would cost the split's
  record count times a request's latency: several are in flight at once,
  and the arrays are the records in index order."""
  config, builder = tiny_data
  source = input_pipeline.data_source(
      builder, config.dataset.train_split,
      input_pipeline.DATASETS[config.dataset.name], config.dataset)
  lock, in_flight, most, sizes = threading.Lock(), [0], [0], []

  class Tracked:
    def __len__(self):
      return len(source)

    def __getitems__(self, keys):
      with lock:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        sizes.append(len(keys))
      time.sleep(0.02)
      with lock:
        in_flight[0] -= 1
      return source.__getitems__(keys)

  monkeypatch.setattr(input_pipeline, "_MEMORY_CHUNK", 16)
  monkeypatch.setattr(input_pipeline, "_IN_MEMORY", {})
  arrays = input_pipeline._in_memory(Tracked(), ("tracked",), config.dataset)
  expected = input_pipeline._stack([source[i] for i in range(len(source))])
  assert arrays.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(arrays[key], value, err_msg=key)
  assert sum(sizes) == len(source) and max(sizes) == 16
  assert most[0] > 1


class _FailingSource:
  """A split's source whose reads of one key fail, as a lost connection's
  would."""

  def __init__(self, source, bad_key):
    self._source, self._bad_key = source, bad_key

  def __len__(self):
    return len(self._source)

  def __getitem__(self, key):
    if key == self._bad_key:
      raise ConnectionResetError(104, "Connection reset by peer")
    return self._source[key]


@pytest.mark.parametrize("threads", [1, 8])
def test_a_failed_read_in_one_thread_is_one_data_error_not_a_hang(
    tiny_data, monkeypatch, threads):
  config, builder = tiny_data
  real_source = input_pipeline.data_source
  order = input_pipeline.epoch_order(3, 0, 200)
  bad_key = int(order[70])   # in the fifth batch of 16
  monkeypatch.setattr(input_pipeline, "data_source",
                      lambda *a: _FailingSource(real_source(*a), bad_key))
  outcome = {}

  def consume():
    try:
      outcome["batches"] = len(_stream(config, builder, threads, batches=12))
    except Exception as e:  # pylint: disable=broad-except
      outcome["error"] = e

  consumer = threading.Thread(target=consume, daemon=True)
  consumer.start()
  consumer.join(timeout=120)
  assert not consumer.is_alive(), "the pipeline hung on a failed read"
  error = outcome.get("error")
  assert isinstance(error, errors.DataError), outcome
  message = str(error)
  assert message.startswith("Reading cluttered_fashion_mnist failed: "
                            "Connection reset by peer [errno 104]")
  assert "\n" not in message


def test_the_latency_stand_in_delays_every_request(tiny_data):
  config, builder = tiny_data
  dataset = config.dataset.copy_and_resolve_references()
  dataset.read_latency_ms = 30.0
  spec = input_pipeline.DATASETS[dataset.name]
  source = input_pipeline.data_source(builder, "train", spec, dataset)
  plain = input_pipeline.data_source(builder, "train", spec, config.dataset)
  started = time.perf_counter()
  records = [source[k] for k in range(5)]
  assert time.perf_counter() - started >= 5 * 0.030
  for record, k in zip(records, range(5)):
    np.testing.assert_array_equal(record["image"], plain[k]["image"])


@pytest.mark.parametrize("threads", [1, 4])
def test_streams_end_when_the_interpreter_begins_to_exit(tiny_data,
                                                         monkeypatch, threads):
  """The exit hook ends a live stream, mid-read, at its next record and
  returns only when no generator is inside a call (a call still running
  when Python finalises hangs or aborts the process)."""
  monkeypatch.setattr(reading, "_EXITING", threading.Event())
  config, builder = tiny_data
  config = config.copy_and_resolve_references()
  config.dataset.cache, config.dataset.read_threads = False, threads
  config.dataset.read_latency_ms = 5.0
  stream = input_pipeline.train_batches(config.dataset, builder, 16, seed=0)
  next(stream)
  time.sleep(0.05)   # the generator is reading ahead
  started = time.monotonic()
  reading._end_streams()  # pylint: disable=protected-access
  assert reading._calls_in_progress == 0  # pylint: disable=protected-access
  assert time.monotonic() - started < 5
  # What tf.data had buffered, then the end (a stream that goes on would
  # give all 100).
  left = sum(1 for _ in itertools.islice(stream, 100))
  assert left < 40
