"""A folder of one's own images (saccader_jax/data/image_folder.py): layouts,
splits, preprocessing, bad folders, and a job trained on one end to end."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from saccader_jax import config_checks
from saccader_jax import errors
from saccader_jax.data import image_folder
from saccader_jax.data import input_pipeline
from tests.helpers import SHAPE_CLASSES
from tests.helpers import write_image_folder
from tests.tiny_folder_config import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """Generated pictures: 3 classes x 30, JPEG and PNG at 48 and 72 px."""
  return write_image_folder(str(tmp_path_factory.mktemp("folder") / "photos"))


def folder_config(path, tmp_path=None):
  config = get_config(str(path))
  if tmp_path is not None:
    config.dataset.data_dir = str(tmp_path / "tfds")
  return config


def examples(builder, split):
  source = builder.as_data_source(split=split)
  return [source[i] for i in range(len(source))]


def test_class_folders_give_classes_labels_and_carved_splits(photos):
  config = folder_config(photos)
  builder = input_pipeline.get_builder(config.dataset)
  sizes = {s: input_pipeline.num_examples(builder, s) for s in
           ("train", "dev", "test")}
  assert sizes == {"train": 72, "dev": 9, "test": 9}   # 10 % + 10 % of 90
  assert input_pipeline.class_names(config.dataset) == list(SHAPE_CLASSES)
  files = {}
  for split in sizes:
    for example in examples(builder, split):
      file = example["file"].decode()
      # Each image is labelled by its folder, and keeps its file's bytes.
      assert SHAPE_CLASSES[example["label"]] == os.path.basename(
          os.path.dirname(file))
      with open(file, "rb") as f:
        assert f.read() == example["image"]
      files[file] = split
  assert len(files) == 90   # every file once, in one split
  # The carving is a function of split_seed: another seed, another dev.
  config.dataset.split_seed = 1
  other = image_folder.find_layout(config.dataset)
  assert {f for f, _ in other.files["dev"]} != {
      f for f, s in files.items() if s == "dev"}


def test_train_and_test_folders_carve_only_dev(tmp_path):
  root = write_image_folder(str(tmp_path / "split"), per_class=10,
                            splits=("train", "test"))
  layout = image_folder.find_layout(folder_config(root).dataset)
  assert {s: len(f) for s, f in layout.files.items()} == {
      "test": 30, "dev": 3, "train": 27}
  assert all("/test/" in f for f, _ in layout.files["test"])


def test_preprocessing_is_the_configured_one(photos, tmp_path):
  config = folder_config(photos, tmp_path)
  config.dataset.preprocessing = "resize"
  builder = input_pipeline.get_builder(config.dataset)
  first = examples(builder, "test")[0]
  batch = next(input_pipeline.eval_batches(config.dataset, builder, "test",
                                           4))
  decoded = tf.io.decode_image(first["image"], channels=3,
                               expand_animations=False)
  resized = tf.image.resize(tf.cast(decoded, tf.float32), [45, 45])
  expected = (resized.numpy() / 255.0 - np.array(config.dataset.mean)) / (
      np.array(config.dataset.std))
  np.testing.assert_allclose(batch["image"][0], expected, atol=1e-5)
  # Inception crops: random per example and position, the same for a seed.
  config.dataset.preprocessing = "inception_crop"
  one, two, other = (next(input_pipeline.train_batches(
      config.dataset, builder, 8, seed=seed)) for seed in (0, 0, 1))
  np.testing.assert_array_equal(one["image"], two["image"])
  np.testing.assert_array_equal(one["label"], two["label"])
  assert one["image"].shape == (8, 45, 45, 3)
  assert not np.array_equal(one["image"], other["image"])
  # read_examples reads the folder's first test images as evaluation does.
  images, labels = input_pipeline.read_examples(config.dataset, "test", 3,
                                                builder)
  assert images.shape == (3, 45, 45, 3) and labels[0] == first["label"]
  # Evaluation's central crop, through preprocess_images as for any image.
  picture = tf.io.decode_image(first["image"], channels=3).numpy()
  np.testing.assert_allclose(
      input_pipeline.preprocess_images([picture], config.dataset)[0],
      next(input_pipeline.eval_batches(config.dataset, builder, "test",
                                       4))["image"][0], atol=1e-4)


def only_problem(config):
  problems = config_checks.config_problems(config)
  assert len(problems) == 1, problems
  return problems[0]


def test_bad_folders_are_one_line_each(photos, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  assert only_problem(folder_config(empty)).startswith(
      f"{empty} holds no class folder")
  no_images = tmp_path / "no_images"
  shutil.copytree(photos, no_images)
  for name in os.listdir(no_images / "disc"):
    os.remove(no_images / "disc" / name)
  (no_images / "disc" / "notes.txt").write_text("not an image")
  assert only_problem(folder_config(no_images)) == (
      f"{no_images / 'disc'} holds no JPEG or PNG file: every class needs "
      "images in every split folder (remove the folder, or add images).")
  config = folder_config(photos)
  config.dataset.test_split = "validation"
  assert only_problem(config) == (
      "config.dataset.test_split='validation': the split does not exist; a "
      "folder's splits are ['train', 'dev', 'test'].")
  config = folder_config(photos)
  config.model.num_classes = 5
  assert only_problem(config).startswith(
      "config.model.num_classes=5: the data has 3 classes")
  config = folder_config(photos)
  config.dataset.path = ""
  assert only_problem(config).startswith("config.dataset.path is not set")


def test_a_model_built_before_the_classes_are_known_says_how(photos):
  import saccader_jax  # pylint: disable=g-import-not-at-top
  config = folder_config(photos)
  assert config.model.num_classes == 0   # the folders' number
  with pytest.raises(ValueError, match=r"^num_classes is 0, .*resolve_num_"
                     r"classes\(config\) on the whole config"):
    saccader_jax.create_model(config.model)
  config_checks.resolve_num_classes(config)
  assert config.model.num_classes == len(SHAPE_CLASSES)
  saccader_jax.create_model(config.model)


def test_a_corrupt_file_is_skipped_and_counted_or_an_error(photos, tmp_path,
                                                          caplog):
  folder = tmp_path / "photos"
  shutil.copytree(photos, folder)
  corrupt = folder / "square" / "broken.jpg"
  corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  config = folder_config(folder, tmp_path)
  with caplog.at_level(logging.WARNING):
    builder = input_pipeline.get_builder(config.dataset)
  total = sum(input_pipeline.num_examples(builder, s)
              for s in ("train", "dev", "test"))
  assert total == 90
  assert "skipped 1 file(s) that do not decode, e.g. " \
      f"{corrupt}" in caplog.text
  # A class whose every file is corrupt has no readable image.
  spoiled = tmp_path / "spoiled"
  shutil.copytree(photos, spoiled)
  for name in os.listdir(spoiled / "disc"):
    (spoiled / "disc" / name).write_bytes(b"garbage")
  with pytest.raises(errors.DataError, match=(
      "disc holds no readable image for the (train|dev|test) split")):
    input_pipeline.get_builder(folder_config(spoiled, tmp_path).dataset)
  config.dataset.on_corrupt = "error"
  config.dataset.data_dir = str(tmp_path / "tfds_error")
  with pytest.raises(errors.DataError, match=(
      f"{corrupt} is not a readable JPEG or PNG: remove or replace it")):
    input_pipeline.get_builder(config.dataset)


def test_a_greyscale_file_in_an_rgb_set_is_an_error_or_converted(
    photos, tmp_path):
  folder = tmp_path / "photos"
  shutil.copytree(photos, folder)
  grey = folder / "disc" / "grey.png"
  grey.write_bytes(tf.io.encode_png(np.full((30, 40, 1), 200,
                                            np.uint8)).numpy())
  config = folder_config(folder, tmp_path)
  with pytest.raises(errors.DataError, match=(
      f"{grey} is greyscale in a data set of 3-channel images: convert it, "
      "or set config.dataset.mixed_channels='convert'")):
    input_pipeline.get_builder(config.dataset)
  config.dataset.mixed_channels = "convert"
  builder = input_pipeline.get_builder(config.dataset)
  batch = next(input_pipeline.eval_batches(config.dataset, builder, "train",
                                           128))
  assert batch["image"].shape[-1] == 3 and batch["mask"].sum() == 73


def main_command(config_arg, *args):
  return [sys.executable, "-m", "saccader_jax.main", config_arg, *args]


@pytest.mark.slow
def test_a_bad_folder_writes_nothing(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  workdir = tmp_path / "workdir"
  result = subprocess.run(
      main_command("--config=configs/image_folder_saccader.py",
                   f"--config.dataset.path={empty}", f"--workdir={workdir}"),
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"Config error: {empty} holds no class folder")
  assert not workdir.exists()


@pytest.mark.slow
def test_a_job_trains_on_a_folder_resumes_after_a_kill_and_draws(photos,
                                                                 tmp_path):
  folder = tmp_path / "photos"
  shutil.copytree(photos, folder)
  workdir = tmp_path / "workdir"
  command = main_command(f"--config=tests/tiny_folder_config.py:{folder}",
                         "--config.stages.representation.num_steps=200",
                         f"--workdir={workdir}")
  job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
  checkpoint = workdir / "checkpoints" / "representation" / "4"
  while not checkpoint.exists():
    assert job.poll() is None, job.communicate()[1][-3000:]
    time.sleep(0.1)
  job.send_signal(signal.SIGKILL)
  job.wait()
  # The killed job's lease: its holder is known dead, so it is removed.
  os.remove(workdir / "lease.json")
  command[4] = "--config.stages.representation.num_steps=8"
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Stage representation: resuming from step" in result.stderr
  for name in ("test_accuracy.json", "test_accuracy_glimpses.png"):
    assert os.path.getsize(workdir / name) > 0


@pytest.mark.slow
def test_statistics_helper_prints_the_train_splits_mean_and_std(tmp_path):
  folder = tmp_path / "flat"
  for name, colour in (("a", (51, 102, 153)), ("b", (0, 255, 51))):
    os.makedirs(folder / name)
    for i in range(5):
      (folder / name / f"{i}.png").write_bytes(tf.io.encode_png(
          np.broadcast_to(np.array(colour, np.uint8),
                          (20 + i, 30, 3))).numpy())
  result = subprocess.run(
      [sys.executable, "-m", "saccader_jax.data.statistics",
       f"--config=tests/tiny_folder_config.py:{folder}",
       "--config.dataset.preprocessing=resize"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  # Carved: 1 test, 1 dev, 8 train images; which 8 decides the mean.
  config = folder_config(folder)
  train = image_folder.find_layout(config.dataset).files["train"]
  share_a = sum(name == "a" for _, name in train) / len(train)
  mean = share_a * np.array([0.2, 0.4, 0.6]) + (1 - share_a) * np.array(
      [0.0, 1.0, 0.2])
  std = np.sqrt(share_a * (1 - share_a)) * np.abs(
      np.array([0.2, 0.4, 0.6]) - np.array([0.0, 1.0, 0.2]))
  as_text = lambda v: "(" + ", ".join(f"{x:.3f}" for x in v) + ")"
  assert (f'--config.dataset.mean="{as_text(mean)}" '
          f'--config.dataset.std="{as_text(std)}"') in result.stdout


@pytest.mark.slow
def test_two_hosts_read_disjoint_shares_of_a_folder(tmp_path):
  from tests.helpers import free_port  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  folder = write_image_folder(str(tmp_path / "photos"), per_class=10)
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  processes = [subprocess.Popen(
      [sys.executable, "-m", "tests.folder_rows_on_two_hosts",
       f"--path={folder}", f"--out={tmp_path / 'rows'}",
       f"--coordinator_address=localhost:{port}", "--num_processes=2",
       f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for process in processes:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
  hosts = []
  for i in range(2):
    with open(tmp_path / f"rows_{i}.json") as f:
      hosts.append(json.load(f))
  evaluated = [set(h["evaluated"]) for h in hosts]
  # 30 files: 3 test, 3 dev, 24 train, 12 per host, none on both.
  assert [h["share"] for h in hosts] == [12, 12]
  assert [len(e) for e in evaluated] == [12, 12]
  assert not evaluated[0] & evaluated[1]
  # A training epoch on a host visits its own share and nothing else.
  for host, mine in zip(hosts, evaluated):
    assert sorted(host["trained"]) == sorted(mine)
    # Read by 8 threads, each host's stream is the serial reader's.
    assert host["trained_by_8_threads"] == host["trained"]
