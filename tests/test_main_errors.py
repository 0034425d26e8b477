"""A user's mistakes through `python -m saccader_jax.main`: one line on
stderr, a non-zero exit, no traceback unless --traceback asks for it."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=configs/fashion_mnist_saccader.py"


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
