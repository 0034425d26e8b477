"""A user's mistakes through `python -m saccader_jax.main`: one line on
stderr, a non-zero exit, no traceback unless --traceback asks for it."""

import os
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=configs/fashion_mnist_whole_items_saccader.py"


def run_main(*args):
  return subprocess.run(
      [sys.executable, "-m", "saccader_jax.main", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def only_line(result, prefix):
  """The single stderr line starting with prefix; fails on a traceback."""
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith(prefix)]
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


@pytest.mark.parametrize("override, line", [
    ("--config.optimizer.nmae=adamw",
     "Config error: --config.optimizer.nmae: the config has no key 'nmae' "
     "(did you mean 'name'?)."),
    ("--config.stages.polcy.num_steps=3",
     "Config error: --config.stages.polcy.num_steps: the config has no key "
     "'polcy' (did you mean 'policy'?)."),
])
def test_a_misspelt_override_is_one_line_with_the_nearest_key(
    override, line, tmp_path):
  result = run_main(CONFIG, override, f"--workdir={tmp_path}")
  assert result.returncode == 2
  assert only_line(result, "Config error: ") == line
  assert not os.listdir(tmp_path)   # nothing ran


def test_a_missing_config_file_is_one_line(tmp_path):
  result = run_main("--config=configs/no_such_config.py",
                    f"--workdir={tmp_path}")
  assert result.returncode == 2
  assert only_line(result, "Config error: ") == (
      "Config error: --config could not be loaded: [Errno 2] No such file or "
      "directory: 'configs/no_such_config.py'.")


def test_an_unwritable_workdir_is_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  result = run_main(CONFIG, f"--workdir={blocker}/workdir")
  assert result.returncode == 1
  line = only_line(result, "Error: ")
  assert line.startswith(f"Error: workdir '{blocker}/workdir' is not "
                         "writable: [Errno 20] Not a directory")
  assert line.endswith("Choose another --workdir.")


@pytest.mark.slow
def test_traceback_on_request(tmp_path):
  result = run_main(CONFIG, "--config.optimizer.nmae=adamw", "--traceback",
                    f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "Traceback" in result.stderr and "nmae" in result.stderr


def test_a_misspelt_key_in_a_config_file_is_one_line(tmp_path):
  config_file = tmp_path / "my_config.py"
  config_file.write_text(
      "from configs import fashion_mnist_whole_items_saccader\n\n\n"
      "def get_config():\n"
      "  config = fashion_mnist_whole_items_saccader.get_config()\n"
      "  config.optimizer.nmae = 'adamw'\n"
      "  return config\n")
  workdir = tmp_path / "workdir"
  result = run_main(f"--config={config_file}", f"--workdir={workdir}")
  assert result.returncode == 2
  assert only_line(result, "Config error: ") == (
      "Config error: config.optimizer.nmae: no such key, nothing reads it; "
      "the nearest is config.optimizer.name.")
  assert not workdir.exists()   # refused before the workdir was touched


@pytest.mark.slow
def test_another_config_into_a_recorded_workdir_is_one_line(tmp_path):
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  from saccader_jax import run_record  # pylint: disable=g-import-not-at-top
  run_record.record(tmp_path, fashion_mnist_whole_items_saccader.get_config())
  result = run_main("--config=configs/fashion_mnist_dram.py",
                    f"--workdir={tmp_path}")
  assert result.returncode == 2
  assert only_line(result, "Config error: ") == (
      f"Config error: workdir {tmp_path} holds another run (run_stages: "
      "('representation', 'location', 'policy') -> ('dram',)): models, data "
      "set and run_stages must match its config.json. Choose another "
      "--workdir, or run with the recorded config.")


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_one_line(tiny_data_dir, tmp_path):
  """A workdir without a recorded config (written before runs recorded
  theirs): the checkpoint's shapes give the model away."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from saccader_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  other = tiny_train_config(tiny_data_dir)
  other.model.representation.what_channels = 12
  variables = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype),
                                     models.abstract_variables(other))
  manager = checkpoints.create_manager(
      tmp_path / "checkpoints" / "representation", 1, async_save=False)
  checkpoints.save(manager, 1, {"step": jnp.int32(1), **variables},
                   {"unused": jnp.zeros(())}, other.optimizer.to_dict())
  manager.close()
  result = run_main(f"--config=tests/tiny_config.py:{tiny_data_dir}",
                    "--config.run_stages=('representation',)",
                    f"--workdir={tmp_path}")
  assert result.returncode == 1
  line = only_line(result, "Error: ")
  assert "different model" in line and "representation/lowd_" in line
  assert line.endswith("Train this config in a new --workdir, or run this "
                       "workdir with the config it was trained with.")
