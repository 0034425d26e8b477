"""The snippets of README.md and docs/ run as printed."""

import subprocess
import sys

import pytest

from tests import helpers


def run_snippet(code):
  result = subprocess.run([sys.executable, "-c", code], cwd=helpers.ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  return result.stdout


@pytest.mark.slow
def test_readme_policy_snippet_runs():
  lines = run_snippet(helpers.doc_snippet("policy-snippet")).splitlines()
  assert lines[0] == "(2, 6, 2)"
  assert lines[2:] == ["(2, 6, 19, 19)", "(2, 6, 1001)", "(2, 1001)"]


@pytest.mark.slow
def test_readme_pretrained_snippet_runs_on_the_shipped_model():
  from saccader_jax import pretrained  # pylint: disable=g-import-not-at-top
  shape, accuracy = run_snippet(helpers.doc_snippet(
      "pretrained-snippet")).split(")")
  assert shape == "(500, 6, 4"
  config, variables = pretrained.load_pretrained()
  images, labels = pretrained.test_subset()
  scored = pretrained.score(config, variables, images[:500], labels[:500])
  assert abs(float(accuracy) -
             scored["policies"]["saccader"]["top1"][5]) <= 0.004


@pytest.mark.slow
def test_readme_load_and_baselines_snippets_run_on_a_workdir(tmp_path,
                                                             embedded_data):
  """A workdir holding final checkpoints of the embedded config's model,
  recorded with the session's copy of the embedded data."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  from saccader_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from saccader_jax import run_record  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_whole_items_saccader.get_config()
  abstract = models.abstract_variables(config)
  variables = jax.tree_util.tree_map(lambda x: jnp.ones(x.shape, x.dtype),
                                     abstract)
  for stage in ("representation", config.run_stages[-1]):
    manager = checkpoints.create_manager(tmp_path / "checkpoints" / stage, 1,
                                         async_save=False)
    checkpoints.save(manager, 7, {"step": jnp.int32(7), **variables},
                     {"unused": jnp.zeros(())},
                     config.optimizer.to_dict())
    manager.close()
  recorded = config.copy_and_resolve_references()
  recorded.dataset.data_dir = embedded_data[0].dataset.data_dir
  run_record.record(tmp_path, recorded)
  code = helpers.doc_snippet("load-snippet")
  assert '"/tmp/saccader_parts_quick"' in code
  out = run_snippet(code.replace("/tmp/saccader_parts_quick", str(tmp_path)))
  assert out.splitlines() == ["(1, 6, 4)"]
  out = run_snippet(helpers.doc_snippet("baselines-snippet").replace(
      "/tmp/saccader_parts_quick", str(tmp_path)))
  assert out.splitlines() == [
      f"{name} (2, 6, 4)" for name in ("ordered_logits", "sobel_mean",
                                       "sobel_variance", "random")]
  code = helpers.doc_snippet("picture-snippet").replace(
      "/tmp/saccader_parts_quick", str(tmp_path))
  code = code.replace("/tmp/glimpses.png", str(tmp_path / "glimpses.png"))
  assert run_snippet(code).splitlines() == ["uint8 3"]
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(tmp_path / "glimpses.png") as picture:
    assert picture.mode == "RGB" and min(picture.size) > 100
