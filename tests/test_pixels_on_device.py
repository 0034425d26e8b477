"""uint8 pixels over the wire, normalised on the devices
(config.dataset.normalize_on_device): the images the models read are the
host-normalised ones to float tolerance."""

import jax
import numpy as np
import pytest

from saccader_jax import config_checks
from saccader_jax import opening
from saccader_jax.data import common
from saccader_jax.data import input_pipeline
from tests.helpers import mock_imagenet

# float32 division on the devices may round differently from TensorFlow's
# on the host: normalised pixels then differ in their last bits.
ULPS = 2e-6


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  config = tiny_train_config(str(tmp_path_factory.mktemp("data")))
  return config, input_pipeline.get_builder(config.dataset)


def on_device(pixels, dataset):
  return np.asarray(jax.jit(lambda p: common.normalize_on_device(
      p, dataset.mean, dataset.std))(pixels))


def test_train_and_eval_pixels_normalise_to_the_host_images(tiny_data):
  config, builder = tiny_data
  dataset = config.dataset
  pixels = input_pipeline.train_batches(dataset, builder, 16, seed=5,
                                        start_position=40, pixels=True)
  floats = input_pipeline.train_batches(dataset, builder, 16, seed=5,
                                        start_position=40)
  for _ in range(3):
    wire, host = next(pixels), next(floats)
    assert wire["image"].dtype == np.uint8
    assert wire["image"].nbytes * 4 == host["image"].nbytes
    np.testing.assert_array_equal(wire["label"], host["label"])
    np.testing.assert_allclose(on_device(wire["image"], dataset),
                               host["image"], rtol=0, atol=ULPS)
  wire = list(input_pipeline.eval_batches(dataset, builder, "test", 16,
                                          pixels=True))
  host = list(input_pipeline.eval_batches(dataset, builder, "test", 16))
  assert len(wire) == len(host) == 4
  for w, h in zip(wire, host):
    np.testing.assert_array_equal(w["mask"], h["mask"])
    real = h["mask"] > 0
    np.testing.assert_allclose(on_device(w["image"], dataset)[real],
                               h["image"][real], rtol=0, atol=ULPS)


def test_resized_imagenet_pixels_round_to_the_nearest_level():
  """ImageNet's crops are resized: their float pixels round to uint8, half
  a gray level at most, and not every pixel is already a whole level."""
  with mock_imagenet(64) as (dataset, builder):
    wire = next(input_pipeline.train_batches(dataset, builder, 6, seed=0,
                                             pixels=True))
    host = next(input_pipeline.train_batches(dataset, builder, 6, seed=0))
  assert wire["image"].dtype == np.uint8
  difference = np.abs(on_device(wire["image"], dataset) - host["image"])
  half_level = 0.5 / 255 / np.asarray(dataset.std)
  assert np.all(difference <= half_level + ULPS)
  assert difference.mean() > 0.1 * half_level.min()


def test_the_jobs_batches_reach_the_model_normalised_and_sharded(
    tiny_config, tmp_path):
  job = opening.open_job(tiny_config, tmp_path / "on_device",
                         hold_lease=False)
  builder = job.builder
  batch = next(iter(job.train_batches("model", seed=3, start_position=16)))
  host = next(input_pipeline.train_batches(
      tiny_config.dataset, builder, tiny_config.batch_size, seed=3,
      start_position=16))
  assert isinstance(batch["image"], jax.Array)
  assert batch["image"].dtype == np.float32
  assert batch["image"].sharding.is_equivalent_to(job.data_sharding, 4)
  np.testing.assert_allclose(np.asarray(batch["image"]), host["image"],
                             rtol=0, atol=ULPS)
  evaluated = next(iter(job.eval_batches("test")))
  assert evaluated["image"].dtype == np.float32
  # Normalised on the host (the switch off): the host's images exactly.
  tiny_config.dataset.normalize_on_device = False
  job = opening.open_job(tiny_config, tmp_path / "on_host",
                         hold_lease=False)
  batch = next(iter(job.train_batches("model", seed=3, start_position=16)))
  np.testing.assert_array_equal(np.asarray(batch["image"]), host["image"])


def test_the_switch_must_be_a_bool(tiny_config):
  tiny_config.dataset.normalize_on_device = "yes"
  problems = config_checks.config_problems(tiny_config, num_devices=1)
  assert any(line.startswith("config.dataset.normalize_on_device='yes': must "
                             "be True") for line in problems), problems
