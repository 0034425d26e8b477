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
  # Paired by seed: Saccader against ordered logits and its stage 2.
  summary = (workdir / "summary.md").read_text()
  assert "saccader - ordered_logits, top1 (points), paired by seed" in summary
  assert "saccader - saccader_stage2, top1" in summary
  with open(workdir / "paired_differences.csv") as f:
    paired = list(csv.DictReader(f))
  by = {(r["policy"], r["reference"], r["glimpses"]): r for r in paired
        if r["measure"] == "top1"}
  top1 = {(r["policy"], r["glimpses"]): float(r["top1"]) for r in rows}
  np.testing.assert_allclose(
      float(by[("saccader", "ordered_logits", "6")]["seed_0"]),
      100 * (top1[("saccader", "6")] - top1[("ordered_logits", "6")]),
      atol=1e-4)
  # The same command again: the seed's rows are kept, nothing re-evaluated.
  csv_text = (workdir / "accuracy_vs_glimpses.csv").read_text()
  again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "not evaluated again" in again.stdout
  assert (workdir / "accuracy_vs_glimpses.csv").read_text() == csv_text
  assert (workdir / "summary.md").read_text() == summary
  # --replot rebuilds the summary and figures from the CSVs alone.
  (workdir / "summary.md").unlink()
  (workdir / "figure6.png").unlink()
  replot = subprocess.run(command[:3] + [f"--workdir={workdir}", "--replot"],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
  assert replot.returncode == 0, replot.stderr[-3000:]
  assert (workdir / "summary.md").read_text() == summary
  for name in ("figure3.png", "figure5.png", "figure6.png", "summary.md",
               "paired_differences.png",
               "references.csv", "glimpses_saccader.png",
               "glimpses_random.png", "glimpses_dram.png",
               "glimpses_saccader_classnet_2x.png"):
    assert os.path.getsize(workdir / name) > 0, name


def test_paired_differences_are_per_seed_with_a_t_interval():
  from experiments import paired_differences  # pylint: disable=g-import-not-at-top
  top1 = {("saccader", 0): 0.70, ("ordered_logits", 0): 0.68,
          ("saccader", 1): 0.75, ("ordered_logits", 1): 0.71,
          ("saccader", 2): 0.66, ("ordered_logits", 2): 0.66,
          ("ordered_logits", 3): 0.9}   # no Saccader row: not paired
  rows = [{"policy": p, "seed": s, "glimpses": 1, "top1": v,
           "coverage": 0.1} for (p, s), v in top1.items()]
  result = paired_differences.paired(rows, "saccader", "ordered_logits",
                                     "top1", 1)
  assert result["seeds"] == [0, 1, 2]
  np.testing.assert_allclose(result["differences"], [2.0, 4.0, 0.0],
                             atol=1e-9)
  np.testing.assert_allclose(result["mean"], 2.0)
  np.testing.assert_allclose(result["sd"], 2.0)
  # Student t, 2 degrees of freedom: t_0.975 = 4.3027.
  half = 4.302653 * 2.0 / np.sqrt(3)
  np.testing.assert_allclose([result["ci95_low"], result["ci95_high"]],
                             [2.0 - half, 2.0 + half], rtol=1e-5)
  table = paired_differences.table_rows(rows)
  assert [(r["policy"], r["reference"], r["measure"]) for r in table] == [
      ("saccader", "ordered_logits", "top1"),
      ("saccader", "ordered_logits", "coverage")]
  assert table[0]["seed_1"] == pytest.approx(4.0)
  text = paired_differences.markdown(rows)
  assert "| 1 | +2.0 | +4.0 | +0.0 | +2.0 +- 2.0 | [-3.0, +7.0] |" in text
