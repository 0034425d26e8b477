"""Top-1 / top-5 accuracy of the greedy policy against the number of glimpses.

One greedy rollout of T_max glimpses gives the prediction after every t <= T
at once: the greedy rollout's first t steps do not depend on T_max, and the
prediction after t glimpses is the mean of the first t glimpse logits.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from saccader_jax.models import Saccader


def _topk_hits(logits: jnp.ndarray, labels: jnp.ndarray, k: int):
  """[..., C] logits, [...] labels -> [...] 1.0 where the label is in the top k."""
  label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  return (jnp.sum(logits > label_logit, axis=-1) < k).astype(jnp.float32)


def make_eval_step(model: Saccader, num_glimpses: int):
  """eval_step(variables, batch) -> summed hit counts of one batch.

  Returns a dict: top1, top5 [T] (hits with 1..T glimpses), bagnet_top1,
  bagnet_top5 (the representation network on all locations) and count.
  """

  def eval_step(variables, batch):
    out = model.apply(variables, batch["image"], num_glimpses=num_glimpses)
    steps = jnp.arange(1, num_glimpses + 1, dtype=jnp.float32)
    running = jnp.cumsum(out.glimpse_logits, axis=1) / steps[None, :, None]
    labels, mask = batch["label"], batch["mask"]
    whole_image = jnp.mean(out.logits2d, axis=(1, 2))
    per_t = lambda k: jnp.sum(
        _topk_hits(running, labels[:, None], k) * mask[:, None], axis=0)
    return {
        "top1": per_t(1), "top5": per_t(5),
        "bagnet_top1": jnp.sum(_topk_hits(whole_image, labels, 1) * mask),
        "bagnet_top5": jnp.sum(_topk_hits(whole_image, labels, 5) * mask),
        "count": jnp.sum(mask),
    }

  return eval_step


def evaluate(eval_step, variables: Any, batches: Iterable[Any]) -> dict:
  """Runs eval_step over batches; accuracies as NumPy, fetched once."""
  totals = None
  for batch in batches:
    counts = eval_step(variables, batch)
    totals = counts if totals is None else jax.tree_util.tree_map(
        jnp.add, totals, counts)
  totals = jax.device_get(totals)
  count = max(float(totals.pop("count")), 1.0)
  results = {k: np.asarray(v) / count for k, v in totals.items()}
  results["count"] = int(count)
  return results


def scalars(results: dict, prefix: str) -> dict[str, float]:
  """Flat scalars for a metric writer: top-1 at every number of glimpses."""
  out = {f"{prefix}/bagnet_top1": float(results["bagnet_top1"]),
         f"{prefix}/bagnet_top5": float(results["bagnet_top5"])}
  for t, (top1, top5) in enumerate(zip(results["top1"], results["top5"]), 1):
    out[f"{prefix}/top1_glimpses{t:02d}"] = float(top1)
    out[f"{prefix}/top5_glimpses{t:02d}"] = float(top5)
  return out


def format_table(results: dict, title: str) -> str:
  """A Markdown table of accuracy against the number of glimpses."""
  lines = [f"{title} ({results['count']} images)", "",
           "| glimpses | top-1 | top-5 |", "|---:|---:|---:|"]
  for t, (top1, top5) in enumerate(zip(results["top1"], results["top5"]), 1):
    lines.append(f"| {t} | {100 * top1:.2f} | {100 * top5:.2f} |")
  lines.append(f"| all locations (BagNet) | {100 * results['bagnet_top1']:.2f}"
               f" | {100 * results['bagnet_top5']:.2f} |")
  return "\n".join(lines)


def save_results(results: dict, workdir: str, name: str,
                 title: str = "") -> list[str]:
  """Writes <name>.json and an accuracy-vs-glimpses plot; returns the paths."""
  paths = [os.path.join(workdir, f"{name}.json")]
  with open(paths[0], "w") as f:
    json.dump({k: np.asarray(v).tolist() for k, v in results.items()}, f,
              indent=1)
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return paths
  glimpses = np.arange(1, len(results["top1"]) + 1)
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for key, label, color in (("top1", "top-1", "C0"), ("top5", "top-5", "C1")):
    ax.plot(glimpses, 100 * results[key], "o-", color=color,
            label=f"Saccader {label}")
    ax.axhline(100 * results[f"bagnet_{key}"], color=color, ls=":",
               label=f"BagNet, all locations, {label}")
  ax.set_xlabel("glimpses")
  ax.set_ylabel("accuracy (%)")
  ax.set_title(f"{title or name} ({results['count']} images)", fontsize=9)
  ax.set_xticks(glimpses)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  paths.append(os.path.join(workdir, f"{name}.png"))
  fig.savefig(paths[-1], dpi=120)
  plt.close(fig)
  return paths
