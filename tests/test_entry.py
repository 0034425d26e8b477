"""Every entry point restarts on tcmalloc before JAX and TensorFlow load
(saccader_jax/entry.py), and the restart refuses to run after them."""

import ast
import glob
import os
import sys

import jax  # pylint: disable=unused-import
import pytest

from saccader_jax import entry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_restart_refuses_to_run_after_jax_loaded():
  assert "jax" in sys.modules
  with pytest.raises(RuntimeError, match=r"after \['flax', 'jax'|after .*'jax'"):
    entry.restart_before_libraries()


# Scripts that do not restart, and why.
NO_RESTART = {
    "benchmark_allocator.py": "it times both allocators, restarting itself",
    "export_pretrained.py": "it copies checkpoints",
    "paired_differences.py": "NumPy and SciPy over CSV rows",
}


def _entry_points() -> list[str]:
  scripts = [os.path.join(ROOT, "saccader_jax", "main.py")]
  for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
    with open(path) as f:
      if "app.run(" in f.read() and os.path.basename(path) not in NO_RESTART:
        scripts.append(path)
  return scripts


def _is_restart_block(node) -> bool:
  if not (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)):
    return False
  return any("entry.restart_before_libraries()" in ast.unparse(s)
             for s in node.body)


def _imports(node) -> list[str]:
  if isinstance(node, ast.Import):
    return [a.name for a in node.names]
  if isinstance(node, ast.ImportFrom):
    return [f"{node.module}.{a.name}" for a in node.names]
  return []


@pytest.mark.parametrize("path", _entry_points(),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_each_entry_point_restarts_before_any_library_loads(path):
  """Above the restart only the standard library and saccader_jax.entry
  (itself standard-library only); the restart stands before app.run."""
  with open(path) as f:
    body = ast.parse(f.read()).body
  restarts = [i for i, node in enumerate(body) if _is_restart_block(node)]
  assert restarts, f"{path}: no `entry.restart_before_libraries()` block"
  for node in body[:restarts[0]]:
    for name in _imports(node):
      top = name.split(".")[0]
      assert (top in sys.stdlib_module_names or top == "__future__"
              or name == "saccader_jax.entry"), (path, name)
  runs = [i for i, node in enumerate(body)
          if "app.run(" in ast.unparse(node) and isinstance(node, ast.If)]
  assert runs and runs[-1] > restarts[0]
