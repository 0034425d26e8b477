"""A job's logged scalars, read back from its TensorBoard event files."""

from __future__ import annotations

from etils import epath


def logged_scalars(workdir: epath.Path, prefix: str) -> dict[str, list]:
  """{tag: [(step, value), ...]} of the job's TensorBoard scalars whose tag
  starts with prefix."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  found = {}
  for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
    events = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    for tag in events.Tags()["tensors"]:
      if tag.startswith(prefix):
        found.setdefault(tag, []).extend(
            (e.step, float(tf.make_ndarray(e.tensor_proto)))
            for e in events.Tensors(tag))
  return {tag: sorted(values) for tag, values in found.items()}
