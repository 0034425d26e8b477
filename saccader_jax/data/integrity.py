"""Damaged data files: which file failed, and how to rebuild the data set.

A read from a TFDS array_record source that fails (a truncated file, bytes
overwritten) raises a Riegeli or parser error that names no file and says
nothing of what to do. `checked_source` wraps a split's source so that such
a failure is checked file by file and reported as one `DataError` naming the
damaged file and the way to rebuild it.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from array_record.python import array_record_module

from saccader_jax import errors

# Files up to this size are read whole when checked; larger ones only opened
# (which reads their footer and index: a truncation shows there).
_READ_WHOLE_BYTES = 1 << 28


def file_damage(path: str) -> Optional[str]:
  """Why the array_record file at path cannot be read, or None."""
  try:
    reader = array_record_module.ArrayRecordReader(path)
    try:
      if os.path.getsize(path) <= _READ_WHOLE_BYTES:
        reader.read(list(range(reader.num_records())))
    finally:
      reader.close()
  except Exception as e:  # pylint: disable=broad-except
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"
  return None


def damage_error(builder: Any, split: str) -> Optional[errors.DataError]:
  """A DataError naming the split's first damaged file, or None when every
  file reads."""
  for path in builder.info.splits[split].filepaths:
    reason = file_damage(os.fspath(path))
    if reason is not None:
      return errors.DataError(
          f"The data file {path} is damaged ({reason}). Rebuild the data "
          f"set: delete {builder.data_dir} and run the same command again; "
          "the job prepares the data set anew (the embedded data from its "
          "Fashion-MNIST files, ImageNet from its manual download).")
  return None


class CheckedSource(Sequence):
  """A split's data source whose failed reads are checked for damaged
  files (`damage_error`); other failures pass unchanged."""

  def __init__(self, source: Sequence[dict], builder: Any, split: str):
    self._source, self._builder, self._split = source, builder, split

  def _checked(self, read, *args):
    try:
      return read(*args)
    except Exception as e:  # pylint: disable=broad-except
      damage = damage_error(self._builder, self._split)
      if damage is None:
        raise
      raise damage from e

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, key):
    return self._checked(self._source.__getitem__, key)

  def __getitems__(self, keys: Sequence[int]) -> list[dict]:
    return self._checked(self._source.__getitems__, keys)


def checked_source(open_source, builder: Any, split: str) -> CheckedSource:
  """open_source() wrapped in a CheckedSource; a failure to open it is
  checked the same way."""
  try:
    source = open_source()
  except Exception as e:  # pylint: disable=broad-except
    damage = damage_error(builder, split)
    if damage is None:
      raise
    raise damage from e
  return CheckedSource(source, builder, split)
