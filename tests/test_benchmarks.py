"""The benchmarks run and print their tables (tiny settings; no timings are
asserted)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module, *args):
  result = subprocess.run([sys.executable, "-m", module, *args],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
def test_benchmark_policy_prints_its_tables():
  out = run("experiments.benchmark_policy", "--batch_sizes=1",
            "--repeats=1", "--compile_glimpses=1,2")
  assert "| 1 | - |" in out and "greedy policy T=6" in out
  assert "eval step T=12 per image" in out
  assert "rollout-only compile" in out


@pytest.mark.slow
def test_benchmark_train_prints_its_tables(tmp_path):
  source = os.path.join(str(tmp_path), "idx")
  from tests.helpers import write_fake_fashion_mnist  # pylint: disable=g-import-not-at-top
  write_fake_fashion_mnist(source)
  # One embedded config (the rows of another are the same code).
  out = run("experiments.benchmark_train", "--imagenet=false",
            "--keras=false", "--repeats=1", "--embedded_batch=16",
            "--resnet_batch=1", f"--data_dir={tmp_path}/tfds",
            f"--source_dir={source}", "--dev_size=40",
            "--embedded_configs=fashion_mnist_whole_items_saccader")
  for stage in ("representation", "location", "policy"):
    assert f"Fashion-MNIST whole items 64px: stage {stage}" in out
  assert "Fashion-MNIST parts" not in out
  assert "Flax ResNet-50" in out and "headroom" in out


@pytest.mark.slow
def test_benchmark_train_times_the_keras_bagnet_beside_stage_1():
  out = run("experiments.benchmark_train", "--noembedded", "--noresnet",
            "--stages=representation", "--imagenet_batch=1",
            "--imagenet_size=96", "--repeats=1")
  assert "| ImageNet 96px: stage representation | 1 |" in out
  assert ("| TF-Keras BagNet stage representation (20,574,249 + 54,144 "
          "variables, oneDNN) | 1 |") in out
  assert "saccader_jax / TF-Keras = " in out
  assert "ImageNet 96px: stage location" not in out
  # The accelerator benchmark counts the same step's FLOPs (cost analysis).
  flops = out.split("| ImageNet 96px: stage representation | 1 |")[1].split(
      "|")[2].strip()
  table = run("experiments.benchmark_accelerator", "--image_size=96",
              "--batch_per_device=1", "--stages=representation",
              "--repeats=1")
  assert "Peak float32: " in table and "measured 2048^2 matmul" in table
  rows = {cells[2]: cells for cells in (
      [c.strip() for c in line.split("|")] for line in table.splitlines()
      if line.startswith("| representation |"))}
  assert set(rows) == {"float32", "bfloat16"}
  assert rows["float32"][7] == flops
  for cells in rows.values():
    assert float(cells[5]) > 0 and cells[9].endswith("%")
    assert cells[10] == "0"   # one device: no cross-device reduction


@pytest.mark.slow
def test_benchmark_resume_prints_its_table(tmp_path):
  source = os.path.join(str(tmp_path), "idx")
  from tests.helpers import write_fake_fashion_mnist  # pylint: disable=g-import-not-at-top
  write_fake_fashion_mnist(source, num_train=300)
  out = run("experiments.benchmark_resume", "--repeats=1",
            f"--data_dir={tmp_path}/tfds", f"--source_dir={source}",
            "--dev_size=40", "--image_size=36")
  assert "| resume at epoch | step | time to first batch (ms) |" in out
  assert "| 100 | 200 |" in out  # 260 examples: 2 steps of 128 per epoch
  assert "Epoch 100 / epoch 1:" in out


@pytest.mark.slow
def test_profile_stages_prints_each_stage_beside_the_frozen_bagnet():
  out = run("experiments.profile_stages", "--batch=2", "--repeats=1")
  assert "| stage location: train step |" in out
  assert "| stage location: train step, representation cached |" in out
  assert "| stage policy: train step |" in out
  assert "| frozen BagNet forward alone |" in out


@pytest.mark.slow
def test_benchmark_input_writes_photographs_and_prints_rates(tmp_path):
  out = run("experiments.benchmark_input", f"--workdir={tmp_path}",
            "--num_images=30", "--batch=4", "--seconds=0", "--image_size=64",
            "--read_threads=1,8", "--latency_ms=5")
  assert len(os.listdir(tmp_path / "photos" / "class_0")) == 10
  assert "24 training images; 64 px, batch 4, 0 s per row" in out
  for row in ("| 0 ms | 1 | ", "| 0 ms | 8 | ", "| 5 ms | 1 | ",
              "| 5 ms | 8 | ", "| 1 | ", "| 2 | "):
    assert row in out, row
  for preprocessing in ("inception_crop", "resize"):
    assert f"| {preprocessing} | " in out
