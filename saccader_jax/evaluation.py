"""Evaluation of any glimpse policy, and of whole-image reference classifiers.

A policy (`saccader_jax.Policy`: the learned one or a baseline) is rolled
out once per batch for T_max glimpses; every configured evaluator
(`saccader_jax.evaluators`) reads that rollout and returns sums over the
batch, added up here over the split and divided by its size. Reference
classifiers (the stage-1 BagNet on all locations, the full-image classifier)
are scored on whole images and drawn beside the policy.

    evaluators = evaluators_lib.create_evaluators(config.evals, 12)
    results = evaluate_policy(policy, evaluators, batches, num_glimpses=12,
                              references={"classifier": (fn, variables)})
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from saccader_jax import chunking
from saccader_jax.evaluators import base

# (variables, images [batch, H, W, C]) -> logits [batch, classes].
ClassifyFn = Callable[[Any, jnp.ndarray], jnp.ndarray]
Reference = tuple[ClassifyFn, Any]   # (classify_fn, its variables)


def make_policy_eval_step(policy, evaluators: Sequence[base.Evaluator],
                          num_glimpses: int,
                          classify_fns: Mapping[str, ClassifyFn],
                          chunk_size: chunking.ChunkSize = chunking.AUTO):
  """step(policy_variables, reference_variables, batch, key) -> batch sums.

  policy: a `Policy` (its `apply` is traced, so a new policy of the same
  model reuses a compiled step). reference_variables maps the names of
  classify_fns to their variables. key: None (greedy) or a PRNG key.
  chunk_size: the step runs over the batch in chunks of this many images
  (`saccader_jax.chunking`), chunk j with fold_in(key, j).
  """

  def chunk_step(policy_variables, reference_variables, batch, key):
    out = policy.apply(policy_variables, batch["image"], num_glimpses, key)
    references = {name: functools.partial(fn, reference_variables[name])
                  for name, fn in classify_fns.items()}
    context = base.Context(out=out, images=batch["image"],
                           labels=batch["label"], mask=batch["mask"],
                           references=references)
    sums = {"count": jnp.sum(batch["mask"])}
    for evaluator in evaluators:
      sums.update(evaluator.batch_sums(context))
    return sums

  def step(policy_variables, reference_variables, batch, key):
    return chunking.sum_batch(
        functools.partial(chunk_step, policy_variables, reference_variables),
        batch, _chunk(chunk_size, batch), key)

  return step


def _chunk(chunk_size: chunking.ChunkSize, batch: Mapping[str, Any]) -> int:
  _, height, width = batch["image"].shape[:3]
  return chunking.resolve(chunk_size, height, width)


def make_classifier_eval_step(classify_fn: ClassifyFn,
                              chunk_size: chunking.ChunkSize = chunking.AUTO):
  """step(variables, batch) -> sums of top1, top5, nonfinite and count, in
  chunks of chunk_size images."""

  def chunk_step(variables, batch, key):
    del key
    logits = classify_fn(variables, batch["image"])
    return dict(base.hit_sums(logits, batch["label"], batch["mask"]),
                count=jnp.sum(batch["mask"]))

  def step(variables, batch):
    return chunking.sum_batch(functools.partial(chunk_step, variables), batch,
                              _chunk(chunk_size, batch))

  return step


def finalize(totals: dict) -> dict:
  """Summed counts -> fractions of the examples (NumPy), fetched once.
  Keys ending in "nonfinite" stay integer counts."""
  totals = jax.device_get(totals)
  count = max(float(totals.pop("count")), 1.0)
  results = {}
  for key, value in totals.items():
    value = np.asarray(value)
    results[key] = (value.astype(np.int64) if key.endswith("nonfinite")
                    else value / count)
  results["count"] = int(count)
  return results


def evaluate(step, batches: Iterable[Any], *args,
             key: Optional[jax.Array] = None) -> dict:
  """Runs step(*args, batch[, key_i]) over batches and finalizes the sums;
  with a key, batch i gets fold_in(key, i)."""
  totals = None
  for i, batch in enumerate(batches):
    if key is None:
      sums = step(*args, batch)
    else:
      sums = step(*args, batch, jax.random.fold_in(key, i))
    totals = sums if totals is None else jax.tree_util.tree_map(
        jnp.add, totals, sums)
  if totals is None:
    raise ValueError("evaluate: the split yielded no batch.")
  return finalize(totals)


class PolicyEvaluator:
  """Evaluates policies of one model (or baselines) on batches, compiled
  once.

  Args:
    policy: a `Policy`; later calls may pass other variables of the model.
    evaluators: from `evaluators.create_evaluators(config.evals, T_max)`.
    num_glimpses: T_max.
    classify_fns: the reference classifiers the evaluators need, by stage.
    out_sharding: where the sums go (e.g. replicated over a mesh).
    chunk_size: images per chunk of a batch (`saccader_jax.chunking`).
  """

  def __init__(self, policy, evaluators: Sequence[base.Evaluator],
               num_glimpses: int,
               classify_fns: Optional[Mapping[str, ClassifyFn]] = None,
               out_sharding: Optional[jax.sharding.Sharding] = None,
               chunk_size: chunking.ChunkSize = chunking.AUTO):
    self.policy = policy
    self.num_glimpses = num_glimpses
    self.evaluators = list(evaluators)
    needed = {name for e in self.evaluators for name in e.references}
    missing = needed - set(classify_fns or {})
    if missing:
      raise ValueError(f"Evaluators need the reference classifiers "
                       f"{sorted(missing)}; none was given.")
    self.classify_fns = {k: v for k, v in (classify_fns or {}).items()
                         if k in needed}
    step = make_policy_eval_step(policy, self.evaluators, num_glimpses,
                                 self.classify_fns, chunk_size)
    self._step = jax.jit(step, out_shardings=out_sharding)

  def __call__(self, batches: Iterable[Any], variables: Any = None,
               reference_variables: Optional[Mapping[str, Any]] = None,
               key: Optional[jax.Array] = None) -> dict:
    """Results over batches: fractions per evaluator key, "count".

    variables: the policy's (default: policy.variables). key: for a
    sampling policy (each batch gets fold_in(key, i)); None is greedy.
    """
    self.policy.validate_key(key)
    variables = self.policy.variables if variables is None else variables
    reference_variables = {k: (reference_variables or {})[k]
                           for k in self.classify_fns}
    step = self._step
    if key is None:
      step = functools.partial(self._step, key=None)
    return evaluate(step, batches, variables, reference_variables, key=key)


def reference_results(results: dict, label: str) -> dict:
  """A classifier's results as an entry of results["references"]."""
  return {"label": label, "top1": float(results["top1"]),
          "top5": float(results["top5"]),
          "nonfinite": int(results["nonfinite"]), "count": results["count"]}


def _nonfinite_counts(results: dict) -> dict[str, int]:
  counts = {key: int(np.max(value)) for key, value in results.items()
            if key.endswith("nonfinite")}
  for name, ref in results.get("references", {}).items():
    counts[name] = int(ref["nonfinite"])
  return counts


def nonfinite_summary(results: dict) -> str:
  """'' when every prediction was finite, else a sentence saying how many
  were not (they count as misses)."""
  counts = _nonfinite_counts(results)
  worst = max(counts.values(), default=0)
  if not worst:
    return ""
  detail = "; ".join(f"{k}: {v}" for k, v in counts.items() if v)
  return (f"{worst} of {results['count']} predictions had non-finite logits "
          f"and count as misses (most per readout: {detail}).")


def scalars(results: dict, evaluators: Sequence[base.Evaluator],
            prefix: str) -> dict[str, float]:
  """Flat scalars for a metric writer."""
  out = {f"{prefix}/nonfinite_predictions":
             float(max(_nonfinite_counts(results).values(), default=0))}
  for evaluator in evaluators:
    if all(key in results for key in evaluator.keys):
      out.update(evaluator.scalars(results, prefix))
  for name, ref in results.get("references", {}).items():
    out[f"{prefix}/{name}_top1"] = ref["top1"]
    out[f"{prefix}/{name}_top5"] = ref["top5"]
  return out


def _reference_rows(results: dict) -> list[str]:
  """The whole-image reference classifiers as a Markdown table ([] if
  none)."""
  references = results.get("references", {})
  if not references:
    return []
  return ["| reference, whole images | top-1 | top-5 |", "|---|---:|---:|"] + [
      f"| {ref['label']} (stage {name}) | {100 * ref['top1']:.2f} | "
      f"{100 * ref['top5']:.2f} |" for name, ref in references.items()]


def array_batches(images: np.ndarray, labels: np.ndarray,
                  batch_size: int) -> list[dict]:
  """In-memory images [n, H, W, C] and labels [n] as the evaluation's
  batches (the last one shorter, every row real)."""
  return [{"image": images[i:i + batch_size],
           "label": np.asarray(labels[i:i + batch_size], np.int32),
           "mask": np.ones(len(labels[i:i + batch_size]), np.float32)}
          for i in range(0, len(labels), batch_size)]


def format_table(results: dict, title: str,
                 evaluators: Sequence[base.Evaluator]) -> str:
  """A Markdown table: one row per number of glimpses, one column per
  evaluator column; reference classifiers below."""
  columns = [c for e in evaluators
             if all(key in results for key in e.keys)
             for c in e.columns(results)]
  lines = [f"{title} ({results['count']} images)", ""]
  if columns:
    lines += ["| glimpses | " + " | ".join(h for h, _ in columns) + " |",
              "|---:|" + "---:|" * len(columns)]
    for t in range(len(columns[0][1])):
      lines.append(f"| {t + 1} | " + " | ".join(
          f"{100 * values[t]:.2f}" for _, values in columns) + " |")
  references = _reference_rows(results)
  if references and columns:
    lines.append("")
  lines += references
  if nonfinite_summary(results):
    lines += ["", nonfinite_summary(results)]
  return "\n".join(lines)


def baseline_label(name: str) -> str:
  """"ordered_logits" -> "ordered logits"."""
  return name.replace("_", " ")


def format_comparison(results: dict, title: str,
                      policy_label: str = "Saccader") -> str:
  """A Markdown table of the learned policy beside the baselines, one row
  per number of glimpses: each policy's top-1, the learned policy minus the
  first baseline (points; the same test images, so the difference is
  paired), and each policy's coverage where measured; the whole-image
  reference classifiers below.

  results: the learned policy's results with "baselines" (name -> that
  policy's results, in the order to show) and "references".
  """
  policies = {policy_label: results}
  policies.update({baseline_label(name): r
                   for name, r in results["baselines"].items()})
  first = next(iter(results["baselines"]))
  headers = [f"{label} top-1" for label in policies]
  headers.append(f"{policy_label} - {baseline_label(first)}")
  covered = [label for label, r in policies.items() if "coverage" in r]
  headers += [f"{label} coverage" for label in covered]
  lines = [f"{title} ({results['count']} images; top-1 and coverage in %)",
           "", "| glimpses | " + " | ".join(headers) + " |",
           "|---:|" + "---:|" * len(headers)]
  difference = 100 * (np.asarray(results["top1"]) -
                      np.asarray(results["baselines"][first]["top1"]))
  for t in range(len(results["top1"])):
    cells = [f"{100 * r['top1'][t]:.2f}" for r in policies.values()]
    cells.append(f"{difference[t]:+.2f}")
    cells += [f"{100 * policies[label]['coverage'][t]:.2f}"
              for label in covered]
    lines.append(f"| {t + 1} | " + " | ".join(cells) + " |")
  references = _reference_rows(results)
  if references:
    lines += [""] + references
  return "\n".join(lines)


def _to_json(value):
  if isinstance(value, dict):
    return {k: _to_json(v) for k, v in value.items()}
  if isinstance(value, (str, int, float)):
    return value
  return np.asarray(value).tolist()


def figure_png(fig) -> bytes:
  """A matplotlib figure as PNG bytes (the figure is closed)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=120)
  plt.close(fig)
  return png.getvalue()


def picture_png(picture: np.ndarray) -> bytes:
  """An RGB uint8 picture [H, W, 3] as PNG bytes."""
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  png = io.BytesIO()
  image.imsave(png, picture, format="png")
  return png.getvalue()


def _plot_policy(ax, glimpses, results: dict) -> None:
  """One policy's top-1 and top-5, the references as horizontal lines."""
  for key, label, color in (("top1", "top-1", "C0"), ("top5", "top-5", "C1")):
    ax.plot(glimpses, 100 * np.asarray(results[key]), "o-", color=color,
            label=f"policy {label}")
    for i, ref in enumerate(results.get("references", {}).values()):
      ax.axhline(100 * ref[key], color=color, ls=(":", "--", "-.")[i % 3],
                 lw=1, label=f"{ref['label']}, {label}")


def _plot_comparison(ax, glimpses, results: dict, policy_label: str) -> None:
  """The paper's Figure 3a: top-1 of each policy against the number of
  glimpses, the references' top-1 as horizontal lines."""
  ax.plot(glimpses, 100 * np.asarray(results["top1"]), "o-", color="C3",
          lw=2, label=policy_label)
  for i, (name, baseline) in enumerate(results["baselines"].items()):
    ax.plot(glimpses, 100 * np.asarray(baseline["top1"]), "s-",
            color=f"C{i}", ms=3, label=baseline_label(name))
  for i, ref in enumerate(results.get("references", {}).values()):
    ax.axhline(100 * ref["top1"], color="k", ls=("--", ":", "-.")[i % 3],
               lw=1, label=ref["label"])


def save_results(results: dict, workdir: epath.PathLike, name: str,
                 title: str = "", table: str = "",
                 pictures: Optional[Mapping[str, np.ndarray]] = None,
                 policy_label: str = "Saccader") -> list[epath.Path]:
  """Writes <name>.json, <name>.md (the table, if given), an
  accuracy-vs-glimpses plot <name>.png and each picture as
  <name>_<key>.png into workdir (local or a URL); returns the paths.

  With results["baselines"] (name -> a baseline policy's results) the plot
  is top-1 of every policy (policy_label: the learned one's name)."""
  workdir = epath.Path(workdir)
  paths = [workdir / f"{name}.json"]
  paths[0].write_text(json.dumps(_to_json(results), indent=1))
  if table:
    paths.append(workdir / f"{name}.md")
    paths[-1].write_text(table + "\n")
  for key, picture in (pictures or {}).items():
    paths.append(workdir / f"{name}_{key}.png")
    paths[-1].write_bytes(picture_png(picture))
  if "top1" not in results:
    return paths
  # Off-screen, without pyplot: a notebook's backend stays as it is.
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  glimpses = np.arange(1, len(results["top1"]) + 1)
  fig = Figure(figsize=(5, 3.5))
  backend_agg.FigureCanvasAgg(fig)
  ax = fig.subplots()
  if results.get("baselines"):
    _plot_comparison(ax, glimpses, results, policy_label)
  else:
    _plot_policy(ax, glimpses, results)
  ax.set_xlabel("glimpses")
  ax.set_ylabel("accuracy (%)")
  ax.set_title(f"{title or name} ({results['count']} images)", fontsize=9)
  ax.set_xticks(glimpses)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6)
  fig.tight_layout()
  paths.append(workdir / f"{name}.png")
  paths[-1].write_bytes(figure_png(fig))
  return paths
