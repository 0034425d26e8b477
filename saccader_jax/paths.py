"""Paths that users give (workdirs, data directories): one rule for all.

A flag such as `--workdir=~/runs/x` reaches the program with its `~`
(the shell expands a tilde only at the start of a word), so every path is
expanded here, wherever it is read.
"""

from etils import epath


def absolute_path(path: epath.PathLike) -> epath.Path:
  """path as an absolute epath.Path with `~` expanded; URLs (gs://...) are
  kept as they are."""
  path = epath.Path(path).expanduser()
  return path if path.is_absolute() else path.absolute()
