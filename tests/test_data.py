"""Cluttered Fashion-MNIST and the tf.data input pipelines."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.helpers import mock_imagenet
from tests.helpers import tiny_train_config
from tests.helpers import write_fake_fashion_mnist
from saccader_jax.data import cluttered_fashion_mnist as cfm
from saccader_jax.data import imagenet
from saccader_jax.data import input_pipeline


def test_idx_round_trip(tmp_path):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  cfm.write_idx(str(tmp_path / "a.gz"), array)
  np.testing.assert_array_equal(cfm.read_idx(str(tmp_path / "a.gz")), array)
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
  with pytest.raises(ValueError, match="not an IDX"):
    cfm.read_idx(str(tmp_path / "bad"))


def test_canvases_hold_the_item_at_its_position_plus_clutter():
  rng = np.random.default_rng(0)
  items = rng.integers(1, 256, size=(50, 28, 28)).astype(np.uint8)
  canvases, positions = cfm.clutter_canvases(items, seed=3, canvas_size=60,
                                             num_clutter=4, clutter_size=8)
  assert canvases.shape == (50, 60, 60)
  outside_has_clutter = 0
  for canvas, item, (y, x) in zip(canvases, items, positions):
    # Clutter is combined with max: the item is intact where it is placed.
    window = canvas[y:y + 28, x:x + 28]
    np.testing.assert_array_equal(np.maximum(window, item), window)
    assert np.all(window >= item)
    outside = canvas.copy()
    outside[y:y + 28, x:x + 28] = 0
    outside_has_clutter += outside.any()
  assert outside_has_clutter >= 45  # fragments rarely all hide under the item
  again, _ = cfm.clutter_canvases(items, seed=3, canvas_size=60,
                                  num_clutter=4, clutter_size=8)
  np.testing.assert_array_equal(canvases, again)
  other, _ = cfm.clutter_canvases(items, seed=4, canvas_size=60,
                                  num_clutter=4, clutter_size=8)
  assert not np.array_equal(canvases, other)
  with pytest.raises(ValueError, match="canvas_size"):
    cfm.clutter_canvases(items, 0, 28, 4, 8)


def test_builder_splits_are_deterministic(tmp_path):
  source = write_fake_fashion_mnist(str(tmp_path / "idx"), 100, 30)
  builds = [cfm.build(str(tmp_path / f"tfds{i}"), source, canvas_size=40,
                      num_clutter=4, dev_size=20) for i in range(2)]
  splits = builds[0].info.splits
  assert (splits["train"].num_examples, splits["dev"].num_examples,
          splits["test"].num_examples) == (80, 20, 30)
  first, second = [list(b.as_data_source(split="dev")) for b in builds]
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["label"] == b["label"]
  assert first[0]["image"].shape == (40, 40, 1)
  labels = sorted(int(e["label"]) for e in first)
  train_labels = cfm.read_idx(os.path.join(source,
                                           "train-labels-idx1-ubyte.gz"))
  assert set(labels) <= set(train_labels.tolist())


def test_missing_source_files_say_how_to_install_them(tmp_path, monkeypatch):
  monkeypatch.setattr(cfm, "DEBIAN_DIR", str(tmp_path / "nowhere"))

  def no_network(*args, **kwargs):
    raise ConnectionError("network unreachable")

  monkeypatch.setattr(tfds.download.DownloadManager, "download", no_network)
  with pytest.raises(FileNotFoundError, match="apt-get install -y "
                     "dataset-fashion-mnist"):
    cfm.build(str(tmp_path / "tfds"), str(tmp_path / "empty"), canvas_size=40,
              dev_size=20)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  config = tiny_train_config(str(tmp_path_factory.mktemp("data")))
  return config, input_pipeline.get_builder(config.dataset)


def test_train_batches_restart_where_they_left_off(tiny_data):
  config, builder = tiny_data
  straight = input_pipeline.train_batches(config.dataset, builder, 16, seed=5)
  first = [next(straight) for _ in range(7)]
  resumed = input_pipeline.train_batches(config.dataset, builder, 16, seed=5,
                                         start_step=4)
  for expected in first[4:]:
    batch = next(resumed)
    np.testing.assert_array_equal(batch["image"], expected["image"])
    np.testing.assert_array_equal(batch["label"], expected["label"])
  assert first[0]["image"].shape == (16, 36, 36, 1)
  assert first[0]["image"].dtype == np.float32
  other = next(input_pipeline.train_batches(config.dataset, builder, 16,
                                            seed=6))
  assert not np.array_equal(other["label"], first[0]["label"])


def test_eval_batches_cover_the_split_once_with_padding(tiny_data):
  config, builder = tiny_data
  batches = list(input_pipeline.eval_batches(config.dataset, builder, "test",
                                             16))
  assert len(batches) == 4  # 60 examples in batches of 16
  assert all(b["image"].shape == (16, 36, 36, 1) for b in batches)
  mask = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(mask, np.arange(64) < 60)
  labels = np.concatenate([b["label"] for b in batches])[:60]
  expected = [int(e["label"]) for e in builder.as_data_source(split="test")]
  np.testing.assert_array_equal(labels, expected)


def test_eval_batches_cap_a_sliced_split(tiny_data):
  config, builder = tiny_data
  batches = list(input_pipeline.eval_batches(config.dataset, builder,
                                             "train[:30]", 8, max_examples=10))
  assert len(batches) == 2
  assert sum(b["mask"].sum() for b in batches) == 10
  expected = [int(e["label"]) for e in
              builder.as_data_source(split="train[:10]")]
  labels = np.concatenate([b["label"] for b in batches])[:10]
  np.testing.assert_array_equal(labels, expected)


def test_unknown_dataset_lists_the_valid_ones(tiny_data):
  config, _ = tiny_data
  dataset = config.dataset.copy_and_resolve_references()
  dataset.name = "mnist"
  with pytest.raises(ValueError, match="cluttered_fashion_mnist.*imagenet2012"):
    input_pipeline.get_builder(dataset)


def test_imagenet_pipeline_on_mock_data():
  with mock_imagenet(64) as (config, builder):
    batch = next(input_pipeline.train_batches(config, builder, 6, seed=0))
    assert batch["image"].shape == (6, 64, 64, 3)
    assert batch["image"].dtype == np.float32
    assert np.all((batch["label"] >= 1) & (batch["label"] <= 1000))
    evals = list(input_pipeline.eval_batches(config, builder,
                                             config.test_split, 10))
  assert all(b["image"].shape == (10, 64, 64, 3) for b in evals)
  assert sum(b["mask"].sum() for b in evals) == 24  # the mock split's size


@pytest.mark.parametrize("height, width, size, side", [
    (246, 246, 224, 224),   # 224 / 246 of the shorter side
    (300, 400, 224, 273),   # int(0.9106 * 300)
    (500, 375, 224, 341),
    (400, 300, 331, 272),   # 331 / (331 + 33)
])
def test_eval_central_crop_is_the_original_fraction(height, width, size, side):
  window = imagenet.central_crop_window(height, width, size).numpy()
  assert list(window[2:]) == [side, side]
  y, x = window[:2]
  assert (y, x) == ((height - side + 1) // 2, (width - side + 1) // 2)
  assert abs(side / min(height, width) - size / (size + size // 10)) < 0.005


def test_eval_central_crop_resizes_that_window_bicubically():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(60, 80, 3)).astype(np.uint8)
  jpeg = tf.io.encode_jpeg(image, quality=100)
  got = imagenet.central_crop(jpeg, 32).numpy()
  side = int(32 / 35 * 60)  # 54
  y, x = (60 - side + 1) // 2, (80 - side + 1) // 2
  decoded = tf.io.decode_jpeg(jpeg).numpy()[y:y + side, x:x + side]
  expected = tf.image.resize(decoded, [32, 32], method="bicubic").numpy()
  np.testing.assert_allclose(got, expected, atol=1e-3)


def test_a_tfrecord_copy_is_refused_with_the_conversion_command(tmp_path):
  source = write_fake_fashion_mnist(str(tmp_path / "idx"), 100, 30)
  config = cfm.make_builder_config(canvas_size=40, num_clutter=4,
                                   dev_size=20)
  builder = cfm.ClutteredFashionMnist(config=config,
                                      data_dir=str(tmp_path / "tfds"),
                                      file_format="tfrecord")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=source, try_download_gcs=False))
  spec = input_pipeline.DATASETS["cluttered_fashion_mnist"]
  with pytest.raises(ValueError, match=r"needs array_record files.*"
                     r"tfds convert_format --dataset_version_dir="):
    input_pipeline.data_source(builder, "train", spec)


def test_each_evaluation_after_the_first_reads_the_split_from_memory(
    tiny_data, monkeypatch, capfd):
  config, builder = tiny_data
  config = config.copy_and_resolve_references()
  config.dataset.cache = True
  bulk_reads = []
  real_source = input_pipeline.data_source

  class CountingSource:
    """The split's source, counting its bulk reads."""

    def __init__(self, source):
      self._source = source

    def __len__(self):
      return len(self._source)

    def __getitem__(self, key):
      return self._source[key]

    def __getitems__(self, keys):
      bulk_reads.append(len(keys))
      return self._source.__getitems__(keys)

  monkeypatch.setattr(input_pipeline, "data_source",
                      lambda *a: CountingSource(real_source(*a)))
  monkeypatch.setattr(input_pipeline, "_IN_MEMORY", {})
  runs = [list(input_pipeline.eval_batches(config.dataset, builder, "test",
                                           16)) for _ in range(3)]
  assert bulk_reads == [60]   # the 60 test examples, once
  for run in runs[1:]:
    for a, b in zip(runs[0], run):
      np.testing.assert_array_equal(a["image"], b["image"])
  assert "cached contents" not in capfd.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_data_file_is_named_with_how_to_rebuild(tiny_data_dir,
                                                          tmp_path, damage):
  """A truncated file, or one with bytes overwritten mid-file: reading the
  split raises one DataError naming that file and the folder to delete;
  deleting it and preparing again gives the same examples as before."""
  import shutil  # pylint: disable=g-import-not-at-top
  from saccader_jax import errors  # pylint: disable=g-import-not-at-top
  shutil.copytree(tiny_data_dir, tmp_path / "data")
  config = tiny_train_config(str(tmp_path / "data")).dataset
  builder = input_pipeline.get_builder(config)
  (path,) = builder.info.splits["train"].filepaths
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    if damage == "truncated":
      f.truncate(size // 2)
    else:
      f.seek(size // 3)
      f.write(b"\x00damaged\xff" * 64)
  with pytest.raises(errors.DataError) as raised:
    next(input_pipeline.train_batches(config, builder, 16, seed=0))
  message = str(raised.value)
  assert f"The data file {path} is damaged (" in message
  assert f"delete {builder.data_dir} and run the same command again" in message
  assert "\n" not in message

  shutil.rmtree(builder.data_dir)
  rebuilt = input_pipeline.get_builder(config)
  original = input_pipeline.get_builder(tiny_train_config(tiny_data_dir).dataset)
  for a, b in zip(input_pipeline.train_batches(config, rebuilt, 16, seed=0),
                  input_pipeline.train_batches(
                      tiny_train_config(tiny_data_dir).dataset, original, 16,
                      seed=0)):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    break
