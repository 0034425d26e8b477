"""experiments.training_length: stage-2 lengths and per-epoch stage-3 curves
on the tiny config, their CSV rows, and a rerun that measures nothing twice."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.results_csv import read_csv
from experiments.results_csv import write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stage1_dev_top1(workdir):
  """The stage-1 BagNet of a finished run on the dev split, whole images."""
  import saccader_jax  # pylint: disable=g-import-not-at-top
  with saccader_jax.Run(saccader_jax.load_config(workdir), workdir,
                        read_only=True) as run:
    run.train()
    return run.evaluate_references("dev")["representation"]["top1"]


def run_lengths(data_dir, *args):
  command = [sys.executable, "-m", "experiments.training_length",
             f"--config=tests/tiny_config.py:{data_dir}", *args]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
def test_stage2_lengths_and_stage3_epochs_give_their_rows_once(
    tiny_data_dir, finished_tiny_workdir, tmp_path):
  base, _ = finished_tiny_workdir
  out = str(tmp_path / "lengths")
  stage2 = ["--arm=stage2", "--setting=code", "--lengths=0.5",
            f"--base_workdir={base}", f"--workdir={tmp_path / 'runs'}",
            f"--out={out}"]
  run_lengths(tiny_data_dir, *stage2)
  training = read_csv(f"{out}_stage2_training.csv")
  # 200 training examples at batch 16: 0.5 epoch is 7 steps.
  assert [(r["stage_epochs"], r["steps"]) for r in training] == [(0.5, 7)]
  assert all(np.isfinite(r["location_nll"]) and r["minutes"] > 0
             for r in training)
  accuracy = read_csv(f"{out}_accuracy.csv")
  assert len(accuracy) == 5   # eval_glimpses 5
  assert {r["policy"] for r in accuracy} == {"saccader"}

  stage3 = ["--arm=stage3_full", "--setting=full", "--epochs=1",
            f"--stage2_workdir={tmp_path / 'runs' / 'stage2_code_0.5ep'}",
            f"--workdir={tmp_path / 'runs'}", f"--out={out}"]
  run_lengths(tiny_data_dir, *stage3)
  training = read_csv(f"{out}_stage3_training.csv")
  # An epoch of 200 examples at batch 16 is 13 steps.
  assert [(r["epoch"], r["steps"]) for r in training] == [(0, 0), (1, 13)]
  # Epoch 0 is where stage 3 starts: no step logged before it.
  assert math.isnan(training[0]["reward"])
  assert 0 <= training[1]["reward"] <= 1
  accuracy = [r for r in read_csv(f"{out}_accuracy.csv")
              if r["arm"] == "stage3_full"]
  assert len(accuracy) == 2 * 4 * 5   # epochs 0-1, four readouts
  by = {(r["epoch"], r["policy"], r["glimpses"]): r["top1"] for r in accuracy}
  # At epoch 0 the stage-3 model is the stage-2 one: the swap is the same,
  # and its BagNet is stage 1's (stage 2 trains only the location network).
  stage1 = stage1_dev_top1(base)
  for t in range(1, 6):
    assert by[(0, "swap", t)] == by[(0, "saccader", t)]
    assert by[(0, "bagnet_all_locations", t)] == pytest.approx(stage1)
  assert all(r["coverage"] == 1 for r in accuracy
             if r["policy"] == "bagnet_all_locations")

  before = {name: open(f"{out}_{name}.csv").read()
            for name in ("accuracy", "stage2_training", "stage3_training")}
  assert "skipped" in run_lengths(tiny_data_dir, *stage2)
  run_lengths(tiny_data_dir, *stage3)
  for name, text in before.items():
    assert open(f"{out}_{name}.csv").read() == text, name

  # A readout missing from epochs already done (as when one is added to the
  # arm) is measured again for them alone; the training rows stay as written.
  rows = read_csv(f"{out}_accuracy.csv")
  write_csv(f"{out}_accuracy.csv",
            [r for r in rows if r["policy"] != "bagnet_all_locations"])
  run_lengths(tiny_data_dir, *stage3)
  assert sorted(map(str, read_csv(f"{out}_accuracy.csv"))) == sorted(
      map(str, rows))
  assert open(f"{out}_stage3_training.csv").read() == (
      before["stage3_training"])

  table = run_lengths(tiny_data_dir, "--plot", f"--out={out}",
                      "--references=")
  assert "| 0 | stage3_full | full | 1 | 1 | swap |" in table
  assert os.path.getsize(f"{out}_curves.png") > 0
