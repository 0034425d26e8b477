"""experiments/saccader_tour.ipynb runs end to end on a tiny workdir."""

import os

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "experiments", "saccader_tour.ipynb")


def outputs(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", [])
                 if o.get("output_type") == "stream")


def test_the_stored_notebook_has_no_outputs():
  import nbformat  # pylint: disable=g-import-not-at-top
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None
                      for c in code)


def run_notebook(monkeypatch, workdir, num_images):
  """The notebook's code cells, executed (workdir None: the shipped
  model's default)."""
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  if workdir:
    monkeypatch.setenv("SACCADER_WORKDIR", str(workdir))
  else:
    monkeypatch.delenv("SACCADER_WORKDIR", raising=False)
  monkeypatch.setenv("SACCADER_NOTEBOOK_IMAGES", str(num_images))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": ROOT}}).execute()
  return [c for c in notebook.cells if c.cell_type == "code"]


def test_the_notebook_runs_on_the_shipped_model_without_data(monkeypatch,
                                                            tmp_path):
  from saccader_jax import pretrained  # pylint: disable=g-import-not-at-top
  # No data set anywhere it could look: the shipped canvases are enough.
  monkeypatch.setenv("HOME", str(tmp_path))
  code = run_notebook(monkeypatch, None, 200)
  text = "\n".join(outputs(c) for c in code)
  assert f"workdir: {pretrained.pretrained_workdir()}" in text
  assert ("stages ('representation', 'location', 'policy'); 6 glimpses of "
          "21 px on a 11x11 grid of a 64 px image") in text
  rows = [l for l in text[text.index("| glimpses |"):].splitlines()
          if l.startswith("| ")]
  assert len(rows) == 1 + 6 and "the first 200 test images" in text
  # The notebook's table is the shipped record's (its first 200 canvases).
  config, variables = pretrained.load_pretrained()
  images, labels = pretrained.test_subset()
  scored = pretrained.score(config, variables, images[:200], labels[:200],
                            batch_size=100)
  for t, row in enumerate(rows[1:]):
    cells = row.strip("| ").split(" | ")
    assert cells[1] == f"{100 * scored['policies']['saccader']['top1'][t]:.1f}"
    assert cells[2] == (
        f"{100 * scored['policies']['ordered_logits']['top1'][t]:.1f}")
  assert not (tmp_path / "tensorflow_datasets").exists()


def test_the_notebook_runs_on_a_tiny_workdir(finished_tiny_workdir,
                                             monkeypatch):
  workdir, _ = finished_tiny_workdir
  code = run_notebook(monkeypatch, workdir, 60)
  text = "\n".join(outputs(c) for c in code)
  assert f"workdir: {workdir}" in text
  assert "stages ('representation', 'location', 'policy'); 3 glimpses" in text
  assert "greedy: " in text and "sampled: " in text
  assert ("100.0% of the gradient's magnitude is inside the glimpses"
          in text)
  table = text[text.index("| glimpses |"):]
  rows = [l for l in table.splitlines() if l.startswith("| ")]
  assert rows[0] == ("| glimpses | Saccader (greedy) | ordered logits | "
                     "brightest first |")
  assert [r.split(" | ")[0] for r in rows[1:]] == ["| 1", "| 2", "| 3"]
  assert "the first 60 test images" in text
  figures = sum(o.get("output_type") == "display_data"
                and "image/png" in o.get("data", {})
                for c in code for o in c.outputs)
  assert figures == 4   # greedy, sampled, policy maps, saliency
