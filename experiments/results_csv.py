"""The experiments' result tables as CSV files (local paths or URLs)."""

import csv
import io

from etils import epath

# Columns that hold integers; any other column that is not text is a float.
INTEGER_COLUMNS = ("seed", "glimpses", "step", "steps", "epoch")
TEXT_COLUMNS = ("policy", "reference", "stage", "arm", "setting", "cpu")


def read_csv(path: epath.PathLike) -> list[dict]:
  """Rows as write_csv wrote them, numbers parsed."""
  rows = list(csv.DictReader(io.StringIO(epath.Path(path).read_text())))
  for row in rows:
    for key, value in row.items():
      if key in INTEGER_COLUMNS:
        row[key] = int(value)
      elif key not in TEXT_COLUMNS:
        row[key] = float(value)
  return rows


def write_csv(path: epath.PathLike, rows: list[dict]) -> None:
  """rows (dicts with the same keys, in order) as a CSV file."""
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  epath.Path(path).write_text(out.getvalue())
