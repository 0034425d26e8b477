"""experiments.paper_figures --smoke: trains, evaluates every policy and
writes its CSV, tables and figures (tiny settings; no accuracy asserted,
only what must hold whatever the training did)."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import write_fake_fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_paper_figures_smoke(tmp_path):
  source = write_fake_fashion_mnist(str(tmp_path / "idx"), num_train=200)
  workdir = tmp_path / "figures"
  command = [sys.executable, "-m", "experiments.paper_figures",
             f"--workdir={workdir}", "--smoke", "--seeds=0", "--with_stage2",
             f"--config.dataset.source_dir={source}",
             f"--config.dataset.data_dir={tmp_path / 'tfds'}",
             "--config.dataset.dev_size=40"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "ETA" in result.stdout and "| saccader | top1 |" in result.stdout
  with open(workdir / "accuracy_vs_glimpses.csv") as f:
    rows = list(csv.DictReader(f))
  policies = {r["policy"] for r in rows}
  assert policies == {"saccader", "saccader_stage2", "saccader_swap",
                      "ordered_logits",
                      "sobel_mean", "sobel_variance", "random", "dram",
                      "saccader_classnet_1x", "saccader_classnet_2x"}
  assert len(rows) == 10 * 12
  for name in policies:
    mine = [r for r in rows if r["policy"] == name]
    assert [int(r["glimpses"]) for r in mine] == list(range(1, 13))
    coverage = np.array([float(r["coverage"]) for r in mine])
    assert np.all(np.diff(coverage) >= 0) and 0 < coverage[0] < 1
    top1 = np.array([float(r["top1"]) for r in mine])
    top5 = np.array([float(r["top5"]) for r in mine])
    assert np.all(top5 >= top1)
  # One glimpse covers one receptive field box for every policy: 29x29 of
  # the 64x64 canvas (58x58 of the 2x canvas; DRAM's 29x29 finest glimpse).
  first = {float(r["coverage"]) for r in rows if r["glimpses"] == "1"}
  np.testing.assert_allclose(sorted(first), [29 * 29 / 64 ** 2] * len(first))
  # The 1x classnet reads the Saccader's own boxes.
  for column in ("coverage",):
    saccader = [float(r[column]) for r in rows if r["policy"] == "saccader"]
    same = [float(r[column]) for r in rows
            if r["policy"] == "saccader_classnet_1x"]
    np.testing.assert_allclose(same, saccader)
  # --replot rebuilds the summary and figures from the CSVs alone.
  summary = (workdir / "summary.md").read_text()
  (workdir / "summary.md").unlink()
  (workdir / "figure6.png").unlink()
  replot = subprocess.run(command[:3] + [f"--workdir={workdir}", "--replot"],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
  assert replot.returncode == 0, replot.stderr[-3000:]
  assert (workdir / "summary.md").read_text() == summary
  for name in ("figure3.png", "figure5.png", "figure6.png", "summary.md",
               "references.csv", "glimpses_saccader.png",
               "glimpses_random.png", "glimpses_dram.png",
               "glimpses_saccader_classnet_2x.png"):
    assert os.path.getsize(workdir / name) > 0, name
