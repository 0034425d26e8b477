"""How an embedded data set's objects compare with one glimpse.

    python -m experiments.regime --config=configs/fashion_mnist_parts_saccader.py \
        [--workdir=DIR] [--split=test]

Prints Markdown tables:
  1. geometry: canvas side, the BagNet's receptive field and stride, their
     ratio (ImageNet: 224 / 77 = 2.9), the item's side and its ratio to the
     receptive field;
  2. the items of the split (the source items, scaled as the builder scales
     them): the extent of their content (pixels above CONTENT_THRESHOLD)
     and a lower bound on the glimpses that cover it (`min_cover_bound`);
  3. with --workdir (a job that trained the `representation` stage on this
     config): the stage-1 BagNet's top-1 on all locations (the mean of its
     per-location logits), at the single location ordered logits picks
     first, on average over single locations, and the oracle (any single
     location right). One location clearly worse than all of them is what
     leaves a policy something to find.
"""

from __future__ import annotations

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry.restart_before_libraries()   # as a job: tcmalloc, before JAX loads

from absl import app
from absl import flags
import numpy as np
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/fashion_mnist_parts_saccader.py", "Training config.",
    lock_config=False)
flags.DEFINE_string("workdir", None,
                    "A job's workdir with the representation stage trained.")
flags.DEFINE_string("split", "test", "Split to measure.")

# Pixel values (0-255) that count as an item's content.
CONTENT_THRESHOLD = 32


def min_cover_bound(content: np.ndarray, side: int) -> np.ndarray:
  """A lower bound on how many side x side boxes cover each mask's pixels.

  Pixels on a lattice of spacing `side` are pairwise at least `side` apart
  along some axis, so no one box holds two of them; the bound is the most
  content pixels on any such lattice (over its side**2 offsets).

  Args:
    content: [N, h, w] bool.
    side: the box's side (the receptive field).

  Returns:
    [N] int: the bound per mask.
  """
  best = np.zeros(len(content), np.int64)
  for dy in range(side):
    for dx in range(side):
      best = np.maximum(best, content[:, dy::side, dx::side].sum((1, 2)))
  return best


def content_extent(content: np.ndarray) -> np.ndarray:
  """[N, h, w] bool -> [N, 2] (height, width) of each mask's bounding box."""
  rows, cols = content.any(2), content.any(1)

  def extent(lines):
    first = lines.argmax(1)
    last = lines.shape[1] - 1 - lines[:, ::-1].argmax(1)
    return np.where(lines.any(1), last - first + 1, 0)

  return np.stack([extent(rows), extent(cols)], 1)


def geometry_rows(config) -> dict[str, float]:
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import cluttered_fashion_mnist as cfm  # pylint: disable=g-import-not-at-top
  size = config.dataset.image_size
  grid = models.create_model(config.model).grid_geometry(size, size)
  item = config.dataset.get("item_size", cfm.ITEM_SIZE)
  return {"canvas side": size,
          "receptive field": grid.receptive_field,
          "stride": grid.stride,
          "locations": grid.num_locations,
          "canvas / receptive field": size / grid.receptive_field,
          "item side": item,
          "item / receptive field": item / grid.receptive_field}


def item_rows(config, split: str, receptive_field: int) -> dict[str, float]:
  from saccader_jax.data import cluttered_fashion_mnist as cfm  # pylint: disable=g-import-not-at-top
  files = cfm.find_source_files(config.dataset.get("source_dir"))
  if files is None:
    raise FileNotFoundError(cfm.INSTALL_HINT.format(
        dir=config.dataset.get("source_dir")))
  which = "test_images" if split == "test" else "train_images"
  items = cfm.upscale_items(cfm.read_idx(files[which]),
                            config.dataset.get("item_size", cfm.ITEM_SIZE))
  content = items > CONTENT_THRESHOLD
  extent = content_extent(content)
  bound = min_cover_bound(content, receptive_field)
  return {"items": len(items),
          "content height, median px": float(np.median(extent[:, 0])),
          "content width, median px": float(np.median(extent[:, 1])),
          "content side / receptive field, median": float(
              np.median(extent.max(1)) / receptive_field),
          "glimpses to cover, lower bound, median": float(np.median(bound)),
          "items needing >= 4 glimpses (%)": 100 * float(np.mean(bound >= 4))}


def location_accuracies(logits2d: np.ndarray, labels: np.ndarray
                        ) -> dict[str, float]:
  """Top-1 (%) of a BagNet read out on all locations and on single ones.

  Args:
    logits2d: [N, h, w, classes] per-location logits.
    labels: [N] int.
  """
  n, h, w, classes = logits2d.shape
  flat = logits2d.reshape(n, h * w, classes)
  whole = flat.mean(1).argmax(-1)
  # Ordered logits at t = 1: the location with the highest logit of the
  # whole-image prediction's class, read out alone.
  first = flat[np.arange(n), :, whole].argmax(1)
  single = flat.argmax(-1)                               # [N, h*w]
  right = single == labels[:, None]
  ordered = single[np.arange(n), first] == labels
  return {"all locations": 100 * float(np.mean(whole == labels)),
          "ordered logits, t = 1": 100 * float(np.mean(ordered)),
          "single location, mean": 100 * float(np.mean(right)),
          "single location, oracle": 100 * float(np.mean(right.any(1)))}


def bagnet_rows(config, workdir: str, split: str) -> dict[str, float]:
  """The finished stage-1 BagNet of workdir on single locations and all."""
  import jax  # pylint: disable=g-import-not-at-top
  import saccader_jax  # pylint: disable=g-import-not-at-top
  from saccader_jax.research import Run  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  with Run(config, workdir, read_only=True) as run:
    bagnet = run.train()["representation"]
    represent = jax.jit(lambda v, x: bagnet.model.apply(
        v, x, False, method=saccader_jax.Saccader.represent).logits2d)
    logits, labels = [], []
    for batch in run.eval_batches(split):
      keep = np.asarray(batch["mask"]) > 0
      logits.append(np.asarray(represent(bagnet.variables,
                                         batch["image"]))[keep])
      labels.append(np.asarray(batch["label"])[keep])
  return location_accuracies(np.concatenate(logits), np.concatenate(labels))


def print_table(title: str, rows: dict[str, float]) -> None:
  print(f"\n| {title} | |\n|---|---:|")
  for name, value in rows.items():
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    print(f"| {name} | {text} |", flush=True)


def main(argv):
  del argv
  config = FLAGS.config
  geometry = geometry_rows(config)
  print_table("geometry", geometry)
  print_table(f"items ({FLAGS.split} split)",
              item_rows(config, FLAGS.split, geometry["receptive field"]))
  if FLAGS.workdir:
    print_table(f"stage-1 BagNet top-1 (%), {FLAGS.split} split",
                bagnet_rows(config, FLAGS.workdir, FLAGS.split))


if __name__ == "__main__":
  app.run(main)
