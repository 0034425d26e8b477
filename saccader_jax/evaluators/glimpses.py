"""Glimpse pictures (the paper's figures 1 and 4): images with their
numbered glimpse boxes in glimpse order, and "predicted / true" in green
(right) or red (wrong) for the prediction after T_max glimpses."""

from __future__ import annotations

import numbers
from typing import Optional, Sequence

import numpy as np

from saccader_jax.evaluators import base


def _label(index: int, class_names: Optional[Sequence[str]]) -> str:
  if class_names is not None and 0 <= index < len(class_names):
    return str(class_names[index])
  return str(index)


def draw_glimpses(images: np.ndarray, boxes: np.ndarray,
                  predictions: np.ndarray, labels: np.ndarray,
                  class_names: Optional[Sequence[str]] = None,
                  title: str = "", columns: int = 4) -> np.ndarray:
  """A grid of images with numbered boxes, as an RGB picture.

  Args:
    images: [n, H, W, C] images in any scale (each is stretched to [0, 1]).
    boxes: [n, T, 4] pixel boxes (y_min, x_min, y_max, x_max).
    predictions, labels: [n] class indices.
    class_names: names of the classes, if known.
    title: the figure's title.
    columns: images per row.

  Returns:
    [height, width, 3] uint8.
  """
  # Drawn off-screen, without pyplot: the caller's backend (e.g. a
  # notebook's) is left as it is.
  import matplotlib  # pylint: disable=g-import-not-at-top
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  images, boxes = np.asarray(images, np.float32), np.asarray(boxes)
  count = images.shape[0]
  columns = max(1, min(columns, count))
  rows = -(-count // columns)
  fig = Figure(figsize=(2.2 * columns, 2.4 * rows + 0.3))
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(rows, columns, squeeze=False)
  colors = matplotlib.colormaps["viridis"](
      np.linspace(0.1, 0.95, boxes.shape[1]))
  for ax in axes.ravel():
    ax.axis("off")
  for i in range(count):
    ax = axes.ravel()[i]
    image = images[i]
    low, high = float(image.min()), float(image.max())
    image = (image - low) / max(high - low, 1e-6)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image,
              cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    for t, (y0, x0, y1, x1) in enumerate(boxes[i]):
      ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                     fill=False, lw=1.2, ec=colors[t]))
      ax.text(x0 + 0.5, y0 + 0.5, str(t + 1), color="white", fontsize=6,
              va="top", ha="left",
              bbox={"fc": colors[t], "ec": "none", "pad": 0.6})
    right = int(predictions[i]) == int(labels[i])
    ax.set_title(f"{_label(int(predictions[i]), class_names)} / "
                 f"{_label(int(labels[i]), class_names)}", fontsize=7,
                 color="green" if right else "red")
  if title:
    fig.suptitle(title, fontsize=8)
  fig.tight_layout()
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class Glimpses(base.Evaluator):
  """Pictures of the first config.num_images images of the split (default
  8); written as PNG at the end and as image summaries at every
  evaluation."""
  name = "glimpses"
  config_keys = ("num_images",)

  def config_problems(self):
    count = self.config.get("num_images", 8)
    if (isinstance(count, numbers.Integral) and not isinstance(count, bool)
        and count >= 1):
      return []
    return [("num_images", count, "must be an integer >= 1")]

  @property
  def num_images(self) -> int:
    return int(self.config.get("num_images", 8))

  def picture(self, out, images, labels, class_names=None,
              title: str = "") -> np.ndarray:
    """out: the policy's (host) output on images [n, ...] -> RGB uint8."""
    predictions = np.argmax(np.asarray(out.logits), axis=-1)
    return draw_glimpses(images, np.asarray(out.boxes), predictions,
                         np.asarray(labels), class_names, title)
