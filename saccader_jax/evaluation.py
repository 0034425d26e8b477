"""Top-1 / top-5 accuracy of the greedy policy against the number of glimpses.

One greedy rollout of T_max glimpses gives the prediction after every t <= T
at once: the greedy rollout's first t steps do not depend on T_max, and the
prediction after t glimpses is the mean of the first t glimpse logits.
"""

from __future__ import annotations

import io
import json
from typing import Any, Iterable

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from saccader_jax.models import Saccader


def _finite(logits: jnp.ndarray) -> jnp.ndarray:
  """[..., C] logits -> [...] True where every logit is finite."""
  return jnp.all(jnp.isfinite(logits), axis=-1)


def _topk_hits(logits: jnp.ndarray, labels: jnp.ndarray, k: int):
  """[..., C] logits, [...] labels -> [...] 1.0 where the label is in the top
  k. A prediction with any non-finite logit is a miss: no comparison with a
  NaN is true, so it would otherwise rank every label first."""
  label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  in_top_k = jnp.sum(logits > label_logit, axis=-1) < k
  return (in_top_k & _finite(logits)).astype(jnp.float32)


def make_eval_step(model: Saccader, num_glimpses: int):
  """eval_step(variables, batch) -> summed hit counts of one batch.

  Returns a dict: top1, top5 [T] (hits with 1..T glimpses), bagnet_top1,
  bagnet_top5 (the representation network on all locations), nonfinite [T]
  and bagnet_nonfinite (predictions with a non-finite logit, counted as
  misses) and count.
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
        "nonfinite": jnp.sum(~_finite(running) * mask[:, None], axis=0),
        "bagnet_nonfinite": jnp.sum(~_finite(whole_image) * mask),
        "count": jnp.sum(mask),
    }

  return eval_step


NONFINITE_KEYS = ("nonfinite", "bagnet_nonfinite")


def evaluate(eval_step, variables: Any, batches: Iterable[Any]) -> dict:
  """Runs eval_step over batches; accuracies as NumPy, fetched once."""
  totals = None
  for batch in batches:
    counts = eval_step(variables, batch)
    totals = counts if totals is None else jax.tree_util.tree_map(
        jnp.add, totals, counts)
  totals = jax.device_get(totals)
  count = max(float(totals.pop("count")), 1.0)
  results = {k: np.asarray(v) / count for k, v in totals.items()
             if k not in NONFINITE_KEYS}
  for key in NONFINITE_KEYS:
    results[key] = np.asarray(totals[key]).astype(np.int64)
  results["count"] = int(count)
  return results


def _most_nonfinite(results: dict) -> int:
  """The most non-finite predictions of any readout (t glimpses, BagNet)."""
  return int(max(np.max(results["nonfinite"]), results["bagnet_nonfinite"]))


def nonfinite_summary(results: dict) -> str:
  """'' when every prediction was finite, else a sentence saying how many
  were not (they count as misses)."""
  worst = _most_nonfinite(results)
  if not worst:
    return ""
  return (f"{worst} of {results['count']} predictions had non-finite logits "
          "and count as misses (per number of glimpses: "
          f"{np.asarray(results['nonfinite']).tolist()}; BagNet: "
          f"{int(results['bagnet_nonfinite'])}).")


def scalars(results: dict, prefix: str) -> dict[str, float]:
  """Flat scalars for a metric writer: top-1 at every number of glimpses."""
  out = {f"{prefix}/bagnet_top1": float(results["bagnet_top1"]),
         f"{prefix}/bagnet_top5": float(results["bagnet_top5"]),
         f"{prefix}/nonfinite_predictions": float(_most_nonfinite(results))}
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
  if nonfinite_summary(results):
    lines += ["", nonfinite_summary(results)]
  return "\n".join(lines)


def save_results(results: dict, workdir: epath.PathLike, name: str,
                 title: str = "", table: str = "") -> list[epath.Path]:
  """Writes <name>.json, <name>.md (the table, if given) and an
  accuracy-vs-glimpses plot <name>.png into workdir (local or a URL);
  returns the paths."""
  workdir = epath.Path(workdir)
  paths = [workdir / f"{name}.json"]
  paths[0].write_text(json.dumps(
      {k: np.asarray(v).tolist() for k, v in results.items()}, indent=1))
  if table:
    paths.append(workdir / f"{name}.md")
    paths[-1].write_text(table + "\n")
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
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=120)
  plt.close(fig)
  paths.append(workdir / f"{name}.png")
  paths[-1].write_bytes(png.getvalue())
  return paths
