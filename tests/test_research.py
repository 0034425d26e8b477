"""Research code driving a run (`saccader_jax.research.Run`), and the
experiment scripts written on it. The tests that read the session's finished
tiny workdir are slow: the fixture trains it first."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from saccader_jax import checkpoints
from saccader_jax import errors
from saccader_jax import models
from saccader_jax.research import Run
from tests import helpers
from tests.helpers import tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_trees_equal(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def snapshot(directory):
  """{relative path: (size, mtime)} of every file under directory."""
  found = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      stat = os.stat(path)
      found[os.path.relpath(path, directory)] = (stat.st_size,
                                                 stat.st_mtime_ns)
  return found


@pytest.mark.slow
def test_readme_run_snippet_reads_a_finished_workdir_and_writes_nothing(
    finished_tiny_workdir, capsys):
  workdir, result = finished_tiny_workdir
  before = snapshot(workdir)
  code = helpers.doc_snippet("run-snippet")
  assert '"/tmp/saccader_parts_quick"' in code
  namespace = {}
  exec(code.replace("/tmp/saccader_parts_quick", str(workdir)), namespace)  # pylint: disable=exec-used
  config = namespace["config"]
  assert capsys.readouterr().out.splitlines()[-1] == (
      f"model ({config.eval_glimpses},) ({config.eval_glimpses},)")
  # Every stage restored bit for bit, nothing trained or written.
  trained = namespace["trained"]
  assert list(trained) == list(config.run_stages)
  for name, stage in trained.items():
    assert_trees_equal(stage.variables, result["stages"][name])
  assert trained["representation"].reference and trained["policy"].is_policy
  assert snapshot(workdir) == before
  # The same evaluation as the job's own test: the same numbers.
  with Run(config, workdir, read_only=True) as run:
    run.train()
    again = run.evaluate(run.learned_policy(), "test",
                         run.final("model").variables)
    references = run.evaluate_references("test")
    # The stage-1 readout of the final model's BagNet, against one computed
    # here from the model's whole-image logits.
    final = run.final("model").variables
    later = run.evaluate_references(
        "test", variables={"representation": final})["representation"]
    whole_image = models.classify_fn(models.create_model(config.model))
    correct = count = 0
    for batch in run.eval_batches("test"):
      predicted = np.argmax(whole_image(final, batch["image"]), -1)
      mask = np.asarray(batch["mask"]) > 0
      correct += int(np.sum((predicted == np.asarray(batch["label"]))[mask]))
      count += int(np.sum(mask))
    assert later["count"] == count
    np.testing.assert_allclose(later["top1"], correct / count)
    with pytest.raises(KeyError, match="no trained reference stage"):
      run.evaluate_references("test", variables={"policy": final})
  np.testing.assert_array_equal(again["top1"], result["test"]["top1"])
  np.testing.assert_array_equal(again["coverage"],
                                result["test"]["coverage"])
  assert references["representation"]["top1"] == (
      result["test"]["references"]["representation"]["top1"])
  # The ordered-logits baseline reads the stage-1 BagNet: its first glimpse
  # is never worse than chance and its coverage grows with t.
  baseline = namespace["baseline"]
  assert np.all(np.diff(baseline["coverage"]) >= 0)
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_run_reuses_a_finished_stage_and_trains_the_next(
    finished_tiny_workdir, tiny_data_dir, tmp_path):
  workdir, result = finished_tiny_workdir
  config = tiny_train_config(tiny_data_dir)
  config.run_stages = ("representation", "location")
  config.stages.location.num_steps = 2
  config.eval_at_stage_end = False
  with Run(config, tmp_path / "run") as run:
    assert run.reuse(workdir, ["representation"]) == ["representation"]
    assert run.reuse(workdir, ["representation"]) == []   # already there
    trained = run.train()
  representation = result["stages"]["representation"]
  assert_trees_equal(trained["representation"].variables, representation)
  # Stage 2 started from it and trained only the location network.
  location = trained["location"].variables["params"]
  assert_trees_equal(location["representation"],
                     representation["params"]["representation"])
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(location["attention"]),
      jax.tree_util.tree_leaves(representation["params"]["attention"])))
  assert run.final("model").name == "location"
  with pytest.raises(KeyError, match="not trained in this run"):
    run.stage("policy")


@pytest.mark.slow
def test_run_refuses_stages_another_config_trained(
    finished_tiny_workdir, tiny_data_dir, tmp_path):
  workdir, _ = finished_tiny_workdir
  config = tiny_train_config(tiny_data_dir)
  config.eval_at_stage_end = False
  other_seed = config.copy_and_resolve_references()
  other_seed.seed += 1
  other_rate = config.copy_and_resolve_references()
  other_rate.stages.representation.learning_rate *= 2
  for other, changed in ((other_seed, "seed: 0 -> 1"),
                         (other_rate, "stages.representation.learning_rate")):
    with Run(other, tmp_path / changed.split(":")[0]) as run:
      with pytest.raises(errors.ConfigError, match=changed):
        run.reuse(workdir, ["representation"])
      assert not (run.workdir / "checkpoints" / "representation").exists()
  # Settings of other stages may differ (a longer stage 2 than the
  # config's), and the reused stage's own where the caller says so.
  other_policy = config.copy_and_resolve_references()
  other_policy.stages.policy.num_steps += 5
  with Run(other_policy, tmp_path / "policy") as run:
    assert run.reuse(workdir, ["representation"]) == ["representation"]
  with Run(other_rate, tmp_path / "rate") as run:
    assert run.reuse(workdir, ["representation"], same_settings=False) == [
        "representation"]


@pytest.mark.slow
def test_read_only_run_refuses_to_train_and_writes_nothing(
    finished_tiny_workdir, tiny_data_dir, tmp_path):
  workdir, _ = finished_tiny_workdir
  target = tmp_path / "partial"
  checkpoints.copy_stage(workdir, target, "representation")
  before = snapshot(target)
  config = tiny_train_config(tiny_data_dir)
  with Run(config, target, read_only=True) as run:
    with pytest.raises(errors.CheckpointError,
                       match="'location' is not finished .* read-only"):
      run.train()
    with pytest.raises(errors.JobError, match="read-only"):
      run.reuse(workdir, ["location"])
  assert snapshot(target) == before
  with pytest.raises(errors.CheckpointError, match="No checkpoints of stage"):
    checkpoints.copy_stage(tmp_path / "empty", target, "policy")


@pytest.mark.slow
def test_regime_reads_the_bagnet_of_a_finished_workdir(finished_tiny_workdir,
                                                       tiny_data_dir):
  """Its all-locations readout is the stage-1 reference classifier."""
  from experiments import regime  # pylint: disable=g-import-not-at-top
  workdir, result = finished_tiny_workdir
  before = snapshot(workdir)
  rows = regime.bagnet_rows(tiny_train_config(tiny_data_dir), str(workdir),
                            "test")
  reference = result["test"]["references"]["representation"]
  assert rows["all locations"] == pytest.approx(100 * reference["top1"])
  assert rows["single location, oracle"] >= rows["single location, mean"]
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_stage3_dev_trains_stage_3_on_a_finished_base(finished_tiny_workdir,
                                                      tiny_data_dir,
                                                      tmp_path):
  workdir, result = finished_tiny_workdir
  target = tmp_path / "stage3"
  subprocess.run(
      [sys.executable, "-m", "experiments.stage3_dev",
       f"--config=tests/tiny_config.py:{tiny_data_dir}",
       f"--base_workdir={workdir}", f"--workdir={target}",
       "--config.stages.policy.num_steps=2"],
      cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
  written = json.loads((target / "stage3_dev.json").read_text())
  assert set(written["dev_top1"]) == {"stage2", "stage3", "swap"}
  # "stage2" is the base's own location stage, evaluated on dev.
  config = tiny_train_config(tiny_data_dir)
  with Run(config, workdir, read_only=True) as run:
    dev = run.evaluate(run.learned_policy(), "dev",
                       result["stages"]["location"])
  np.testing.assert_allclose(written["dev_top1"]["stage2"], dev["top1"],
                             rtol=0, atol=1e-6)
  assert written["diagnostics"]["entropy"]["first"][0] >= 1


def test_jupyter_kernel_starts_on_tcmalloc(tmp_path, monkeypatch):
  from saccader_jax import allocator  # pylint: disable=g-import-not-at-top
  if allocator.find_tcmalloc() is None:
    if os.environ.get("CI"):
      pytest.fail("tcmalloc missing: apt-get install -y libtcmalloc-minimal4")
    pytest.skip("tcmalloc missing")
  from jupyter_client import manager  # pylint: disable=g-import-not-at-top
  allocator.install_kernel(prefix=str(tmp_path))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  km, client = manager.start_new_kernel(kernel_name=allocator.KERNEL_NAME,
                                        env=env, cwd=ROOT)
  try:
    outputs = []
    client.execute_interactive(
        "from saccader_jax import allocator\n"
        "allocator.reexec_with_tcmalloc()   # a no-op in a kernel\n"
        "print(allocator.loaded_allocator())",
        output_hook=lambda msg: outputs.append(
            msg["content"].get("text", "")), timeout=120)
  finally:
    client.stop_channels()
    km.shutdown_kernel(now=True)
  assert "".join(outputs).strip() == "tcmalloc"


def test_a_run_is_opened_once_whichever_way_in(tiny_data_dir, tmp_path,
                                               monkeypatch):
  """Trainer.open and Run (main too) open through opening.open_job: the
  config is checked once and the data prepared once per run, and a bad
  config stops the run before the workdir exists."""
  from saccader_jax import config_checks  # pylint: disable=g-import-not-at-top
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  checks, builds = [], []
  real_check, real_builder = (config_checks.config_problems,
                              input_pipeline.get_builder)
  monkeypatch.setattr(config_checks, "config_problems",
                      lambda *a, **k: checks.append(1) or real_check(*a, **k))
  monkeypatch.setattr(input_pipeline, "get_builder",
                      lambda *a, **k: builds.append(1) or real_builder(*a, **k))
  config = tiny_train_config(tiny_data_dir)
  train.Trainer.open(config, tmp_path / "trainer").job.close()
  assert (len(checks), len(builds)) == (1, 1)
  Run(config, tmp_path / "research").close()
  assert (len(checks), len(builds)) == (2, 2)
  Run(config, tmp_path / "research", read_only=True).close()
  assert (len(checks), len(builds)) == (3, 3)
  config.stages.policy.num_glimpses = 0
  with pytest.raises(errors.ConfigError, match="num_glimpses=0"):
    Run(config, tmp_path / "bad")
  assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_headroom_measures_rules_and_agreement_on_a_finished_run(
    finished_tiny_workdir):
  from experiments import headroom  # pylint: disable=g-import-not-at-top
  from saccader_jax import policies  # pylint: disable=g-import-not-at-top
  import saccader_jax  # pylint: disable=g-import-not-at-top
  workdir, result = finished_tiny_workdir
  before = snapshot(workdir)
  rows, agreed = headroom.measure_run(str(workdir), "test", None)
  config = saccader_jax.load_config(workdir)
  names = list(headroom.SACCADER) + list(headroom.RULES) + [headroom.BAGNET]
  assert [r["policy"] for r in rows] == [
      n for n in names for _ in range(config.eval_glimpses)]
  assert {r["top1"] for r in rows if r["policy"] == headroom.BAGNET} == {
      result["test"]["references"]["representation"]["top1"]}
  # The final Saccader's row is the job's own test result.
  np.testing.assert_allclose(
      [r["top1"] for r in rows if r["policy"] == "saccader"],
      result["test"]["top1"], rtol=0, atol=1e-7)
  assert {a["stage"] for a in agreed} == set(headroom.SACCADER)
  for a in agreed:
    assert 0 <= a["first_glimpse_equal"] <= 1
    assert a["first_glimpse_equal"] <= 1 and 0 <= a["first6_overlap"] <= 1
  # Ordered logits agrees with itself everywhere; the diversity rule shares
  # its first glimpse but not (all) its next ones.
  with Run(config, workdir, read_only=True) as run:
    bagnet = run.train()["representation"].variables
    ordered = (policies.make_baseline_policy("ordered_logits", config,
                                             bagnet), None)
    diverse = (policies.make_baseline_policy("ordered_logits_diverse",
                                             config, bagnet), None)
    same = headroom.agreement(run, {"self": ordered, "diverse": diverse},
                              ordered, "test", None)
  assert same["self"] == (1.0, 1.0)
  assert same["diverse"][0] == 1.0 and same["diverse"][1] < 1.0
  assert snapshot(workdir) == before
  table = headroom.tables(rows, agreed, "test")
  assert "| predicted_margin |" in table


def test_the_trainers_old_signature_still_opens_with_a_warning(
    tiny_data_dir, tmp_path):
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny_train_config(tiny_data_dir)
  with pytest.warns(DeprecationWarning, match=r"Trainer\.open\(config"):
    trainer = train.Trainer(config, tmp_path / "old", read_only=False)
  assert trainer.job.workdir == tmp_path / "old"
  assert tuple(trainer.stages) == tuple(config.run_stages)
  assert (tmp_path / "old" / "config.json").exists()
  trainer.job.close()


def test_the_old_module_name_is_an_alias_that_warns(monkeypatch):
  import importlib  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  monkeypatch.delitem(sys.modules, "saccader_jax.experiment", raising=False)
  with pytest.warns(DeprecationWarning, match="saccader_jax.research"):
    old = importlib.import_module("saccader_jax.experiment")
  assert old.Run is Run
