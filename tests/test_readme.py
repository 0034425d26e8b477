"""The README's policy snippet runs as printed."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_policy_snippet_runs():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  match = re.search(r"<!-- policy-snippet -->\s*```python\n(.*?)```", readme,
                    re.S)
  assert match, "README lost its policy snippet"
  result = subprocess.run([sys.executable, "-c", match.group(1)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "(2, 6, 2)"
  assert lines[2:] == ["(2, 6, 19, 19)", "(2, 6, 1001)", "(2, 1001)"]
