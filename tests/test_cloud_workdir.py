"""A job whose workdir is on Cloud Storage writes nothing locally.

Offline, gs:// is served by stand-ins at the three places a job touches it:
TensorStore (orbax's arrays) and google-cloud-storage (orbax's bucket check)
talk to tests/fake_gcs.py over loopback HTTP;
etils.epath (orbax's directories, the results, the write probe) is mocked by
`etils.epath.testing.mock_epath` onto the same directory; TensorFlow's summary
writer (TensorBoard), whose GCS client cannot be pointed elsewhere, has its
gs:// paths mapped there too. So everything the job writes under
gs://bucket/run lands in one directory tree, and the test reads it there.
"""

import os

import numpy as np
import pytest

from saccader_jax import run_record
from saccader_jax import train


@pytest.mark.slow
def test_a_gs_workdir_holds_checkpoints_logs_and_results(gcs, tmp_path,
                                                         monkeypatch,
                                                         tiny_config):
  config = tiny_config
  config.run_stages = ("representation", "location")
  for stage in config.stages.values():
    stage.num_steps = 2
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)

  first = train.train_and_evaluate(config, "gs://bucket/run")
  run = os.path.join(gcs, "bucket", "run")
  for stage in config.run_stages:
    assert os.listdir(os.path.join(run, "checkpoints", stage)) == ["2"]
  events = [f for _, _, files in os.walk(os.path.join(run, "tensorboard"))
            for f in files if f.startswith("events.out.tfevents")]
  assert events
  for name in ("test_accuracy.json", "test_accuracy.md", "test_accuracy.png"):
    assert os.path.getsize(os.path.join(run, name)) > 0, name
  assert os.listdir(cwd) == []

  # Read back from the bucket: a rerun restores every stage from there...
  again = train.train_and_evaluate(config, "gs://bucket/run")
  np.testing.assert_array_equal(first["test"]["top1"], again["test"]["top1"])
  # ... and so does research code.
  variables = run_record.load_variables("gs://bucket/run", config)
  for a, b in zip(jax_leaves(first["variables"]), jax_leaves(variables)):
    np.testing.assert_array_equal(a, b)
  assert os.listdir(cwd) == []


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
