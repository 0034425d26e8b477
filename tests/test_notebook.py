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


def test_the_notebook_runs_on_a_tiny_workdir(finished_tiny_workdir,
                                             monkeypatch):
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  workdir, _ = finished_tiny_workdir
  monkeypatch.setenv("SACCADER_WORKDIR", str(workdir))
  monkeypatch.setenv("SACCADER_NOTEBOOK_IMAGES", "60")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": ROOT}}).execute()
  code = [c for c in notebook.cells if c.cell_type == "code"]
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
