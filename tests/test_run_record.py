"""A workdir records the config of its run (config.json); a rerun there
must be the same run, and loading needs only the workdir."""

import json
import logging

import jax
import numpy as np
import pytest

import saccader_jax
from saccader_jax import errors
from saccader_jax import opening
from saccader_jax import paths
from saccader_jax import run_record
from configs import fashion_mnist_dram


def test_a_run_records_its_config_with_its_overrides(tiny_config, tmp_path):
  config = tiny_config
  config.optimizer.name = "adamw"          # as a --config override would
  opening.open_job(config, tmp_path, hold_lease=False)
  recorded = json.loads((tmp_path / "config.json").read_text())
  assert recorded["optimizer"]["name"] == "adamw"
  loaded = saccader_jax.load_config(tmp_path)
  assert loaded.model.representation.planes == (4, 8, 8)   # tuples again
  assert run_record.differences(loaded, config) == ([], [])


@pytest.mark.parametrize("change, first_line", [
    (lambda c: setattr(c.model.representation, "what_channels", 12),
     "model.representation.what_channels: 16 -> 12"),
    (lambda c: setattr(c.dataset, "image_size", 40),
     "dataset.image_size: 36 -> 40"),
    (lambda c: setattr(c, "run_stages", ("dram",)),
     "run_stages: ('representation', 'location', 'policy') -> ('dram',)"),
])
def test_another_run_in_the_same_workdir_is_refused(tiny_config, tmp_path,
                                                    change, first_line):
  opening.open_job(tiny_config, tmp_path, hold_lease=False)
  before = (tmp_path / "config.json").read_text()
  other = tiny_config.copy_and_resolve_references()
  change(other)
  with pytest.raises(errors.ConfigError) as raised:
    opening.open_job(other, tmp_path, hold_lease=False)
  (line,) = str(raised.value).splitlines()
  assert line.startswith(f"workdir {tmp_path} holds another run "
                         f"({first_line}")
  assert line.endswith("Choose another --workdir, or run with the recorded "
                       "config.")
  assert (tmp_path / "config.json").read_text() == before


def test_the_dram_config_into_a_saccader_workdir_is_refused():
  """The DRAM config differs from the Saccader default in run_stages only."""
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  refused, _ = run_record.differences(
      fashion_mnist_whole_items_saccader.get_config(),
      fashion_mnist_dram.get_config())
  assert refused == ["run_stages: ('representation', 'location', 'policy') "
                     "-> ('dram',)"]


@pytest.mark.parametrize("recorded, rerun, same", [
    (("representation", "location", "policy"), ("policy",), True),
    (("representation", "location", "policy"),
     ("representation", "location", "policy", "classifier", "dram"), True),
    (("representation", "location", "policy", "classifier", "dram"),
     ("representation", "location", "policy", "dram"), True),
    (("representation", "location", "policy"), ("policy", "location"), False),
    (("representation", "location", "policy"), ("dram",), False),
    (("representation", "location", "policy"), ("classifier", "policy"),
     False),
])
def test_run_stages_may_drop_or_add_stages_in_order(recorded, rerun, same):
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  old = fashion_mnist_whole_items_saccader.get_config()
  new = old.copy_and_resolve_references()
  old.run_stages, new.run_stages = recorded, rerun
  line = f"run_stages: {recorded!r} -> {rerun!r}"
  expected = ([], [line]) if same else ([line], [])
  assert run_record.differences(old, new) == expected


def test_allowed_changes_are_logged_as_a_short_diff(tiny_config, tmp_path,
                                                    caplog):
  opening.open_job(tiny_config, tmp_path, hold_lease=False)
  config = tiny_config.copy_and_resolve_references()
  config.optimizer.name = "adamw"
  config.stages.policy.num_steps = 7
  config.dataset.data_dir = str(tmp_path / "elsewhere")   # where, not what
  config.run_stages = config.run_stages + ("classifier",)  # grows at its end
  refused, allowed = run_record.differences(
      saccader_jax.load_config(tmp_path), config)
  assert refused == []
  assert allowed == [
      f"dataset.data_dir: {tiny_config.dataset.data_dir!r} -> "
      f"{str(tmp_path / 'elsewhere')!r}",
      "optimizer.name: 'sgd_nesterov' -> 'adamw'",
      "run_stages: ('representation', 'location', 'policy') -> "
      "('representation', 'location', 'policy', 'classifier')",
      "stages.policy.num_steps: 3 -> 7"]
  config.dataset.data_dir = tiny_config.dataset.data_dir
  with caplog.at_level(logging.INFO):
    opening.open_job(config, tmp_path, hold_lease=False)
  assert ("Config changed since this workdir's last run: optimizer.name: "
          "'sgd_nesterov' -> 'adamw'; run_stages:") in caplog.text
  assert saccader_jax.load_config(tmp_path).optimizer.name == "adamw"


@pytest.mark.slow   # the session's trained workdir: 30-50 s once
def test_a_workdir_alone_loads_the_final_model(finished_tiny_workdir):
  workdir, result = finished_tiny_workdir
  variables = saccader_jax.load_variables(workdir)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         jax.device_get(result["variables"]),
                         jax.device_get(variables))
  policy = saccader_jax.make_policy(saccader_jax.load_config(workdir),
                                    variables)
  assert policy.num_channels == 1


@pytest.mark.slow
def test_a_workdir_under_home_is_found_by_its_tilde(finished_tiny_workdir,
                                                    tmp_path, monkeypatch):
  # `--workdir=~/run` reaches the program with its tilde.
  workdir, result = finished_tiny_workdir
  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "run").symlink_to(workdir)
  assert saccader_jax.load_config("~/run") == saccader_jax.load_config(workdir)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         jax.device_get(result["variables"]),
                         jax.device_get(saccader_jax.load_variables("~/run")))
  assert str(paths.absolute_path("~/run")) == str(tmp_path / "run")
  monkeypatch.chdir(tmp_path)
  assert str(paths.absolute_path("run")) == str(tmp_path / "run")
  assert str(paths.absolute_path("gs://bucket/run")) == "gs://bucket/run"


def test_a_workdir_without_a_record_says_so(tmp_path):
  with pytest.raises(errors.CheckpointError, match="holds no recorded run"):
    saccader_jax.load_variables(tmp_path)
