"""Data parallelism: the same step on 1 device, 8 devices and 2 processes."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import free_port
from tests.helpers import xla_flags_with

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = ["-m", "tests.one_train_step"]


def launch(out, devices, extra=()):
  env = dict(os.environ,
             XLA_FLAGS=xla_flags_with(
                 f"--xla_force_host_platform_device_count={devices}"),
             JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, *HELPER, f"--out={out}", *extra],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=600):
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-3000:]


def load(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def assert_same_step(a, b):
  assert set(a) == set(b)
  for key in a:
    if key in ("devices", "cpu_ynn_fusions"):
      continue
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5,
                               err_msg=key)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("one") / "one.npz")
  finish(launch(out, 1))
  return load(out)


@pytest.mark.slow
def test_eight_devices_match_one_device(one_device, tmp_path):
  out = str(tmp_path / "eight.npz")
  finish(launch(out, 8))
  eight = load(out)
  assert int(eight["devices"]) == 8 and int(one_device["devices"]) == 1
  assert_same_step(one_device, eight)


@pytest.mark.slow
def test_two_processes_match_one_process(one_device, tmp_path):
  out = str(tmp_path / "two.npz")
  address = f"localhost:{free_port()}"
  processes = [launch(out, 2, [f"--coordinator_address={address}",
                               "--num_processes=2", f"--process_id={i}"])
               for i in range(2)]
  for process in processes:
    finish(process)
  two = load(out)
  assert int(two["devices"]) == 4  # 2 processes x 2 devices
  assert_same_step(one_device, two)


EVAL_HELPER = ["-m", "tests.eval_on_two_hosts"]


@pytest.mark.slow
def test_a_host_with_no_eval_examples_joins_every_eval_step(tmp_path):
  from tests.helpers import tiny_train_config  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / "data")
  input_pipeline.get_builder(tiny_train_config(data_dir).dataset)
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags_with(
                 "--xla_force_host_platform_device_count=1"))
  outs = {}
  for processes in (1, 2):
    outs[processes] = str(tmp_path / f"{processes}.npz")
    address = f"localhost:{free_port()}"
    commands = [[sys.executable, *EVAL_HELPER, f"--data_dir={data_dir}",
                 f"--out={outs[processes]}",
                 f"--coordinator_address={address}",
                 f"--num_processes={processes}", f"--process_id={i}"]
                for i in range(processes)]
    for process in [subprocess.Popen(c, env=env, cwd=ROOT,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
                    for c in commands]:
      finish(process, timeout=300)
  one, two = load(outs[1]), load(outs[2])
  assert int(two["processes"]) == 2
  assert int(one["count"]) == int(two["count"]) == 1
  assert int(one["bagnet_count"]) == int(two["bagnet_count"]) == 1
  for key in ("top1", "top5", "bagnet_top1", "nonfinite", "coverage"):
    np.testing.assert_array_equal(one[key], two[key], err_msg=key)
