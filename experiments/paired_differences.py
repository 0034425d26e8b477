"""Paired differences between two policies over seeds, with a 95 % interval.

Each seed trains one Saccader and reads its baselines from the same BagNet,
so policies are compared seed by seed: d_s = A_s - B_s, then the mean, the
SD and a Student-t 95 % interval of the mean over the seeds.

    python -m experiments.paired_differences \
        --csv=DIR/accuracy_vs_glimpses.csv [--pairs=saccader:ordered_logits]

prints the tables; experiments.paper_figures writes them into summary.md
and paired_differences.csv.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import stats as scipy_stats

# (A, B): is A better than B? Saccader against the greedy rule it is taught
# by (claim (a)); against itself after stage 2 ("stage 3 helps"); stage 2's
# student against its teacher.
PAIRS = (("saccader", "ordered_logits"), ("saccader", "saccader_stage2"),
         ("saccader_stage2", "ordered_logits"))
GLIMPSES = (1, 2, 3, 6, 12)
MEASURES = ("top1", "coverage")


def paired(rows: Sequence[dict], policy: str, reference: str, measure: str,
           glimpses: int) -> dict:
  """{seeds, differences (points, per seed), mean, sd, ci95_low, ci95_high}
  of 100 * (policy - reference) at `glimpses`, over the seeds both have."""
  values = {}
  for row in rows:
    if row["glimpses"] == glimpses and row["policy"] in (policy, reference):
      values.setdefault(row["seed"], {})[row["policy"]] = row[measure]
  seeds = sorted(s for s, v in values.items() if len(v) == 2)
  d = np.array([100 * (values[s][policy] - values[s][reference])
                for s in seeds])
  mean = float(d.mean()) if len(d) else float("nan")
  sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
  half = (float(scipy_stats.t.ppf(0.975, len(d) - 1) * sd / np.sqrt(len(d)))
          if len(d) > 1 else float("nan"))
  return {"seeds": seeds, "differences": d.tolist(), "mean": mean, "sd": sd,
          "ci95_low": mean - half, "ci95_high": mean + half}


def available_pairs(rows: Sequence[dict],
                    pairs: Iterable[tuple[str, str]] = PAIRS
                    ) -> list[tuple[str, str]]:
  names = {r["policy"] for r in rows}
  return [(a, b) for a, b in pairs if a in names and b in names]


def table_rows(rows: Sequence[dict],
               pairs: Iterable[tuple[str, str]] = PAIRS) -> list[dict]:
  """One CSV row per (pair, measure, glimpses): the mean, SD, interval and
  each seed's difference (column seed_<s>), in points."""
  max_glimpses = max((r["glimpses"] for r in rows), default=0)
  out = []
  for policy, reference in available_pairs(rows, pairs):
    for measure in MEASURES:
      for t in (t for t in GLIMPSES if t <= max_glimpses):
        p = paired(rows, policy, reference, measure, t)
        out.append({"policy": policy, "reference": reference,
                    "measure": measure, "glimpses": t,
                    "num_seeds": len(p["seeds"]), "mean": p["mean"],
                    "sd": p["sd"], "ci95_low": p["ci95_low"],
                    "ci95_high": p["ci95_high"],
                    **{f"seed_{s}": d for s, d in zip(p["seeds"],
                                                      p["differences"])}})
  # The same columns in every row (a CSV): NaN where a pair lacks a seed.
  seed_columns = sorted({k for r in out for k in r if k.startswith("seed_")},
                        key=lambda k: int(k[5:]))
  return [{**{k: v for k, v in r.items() if not k.startswith("seed_")},
           **{k: r.get(k, float("nan")) for k in seed_columns}} for r in out]


def markdown(rows: Sequence[dict],
             pairs: Iterable[tuple[str, str]] = PAIRS) -> str:
  """Tables of `table_rows`: per seed, then mean +- SD [95 % interval]."""
  lines = []
  table = table_rows(rows, pairs)
  seeds = sorted(int(k[5:]) for k in (table[0] if table else {})
                 if k.startswith("seed_"))
  for policy, reference in available_pairs(rows, pairs):
    for measure in MEASURES:
      mine = [r for r in table if (r["policy"], r["reference"],
                                   r["measure"]) == (policy, reference,
                                                     measure)]
      lines += ["", f"{policy} - {reference}, {measure} (points), paired by "
                f"seed over {len(seeds)} seed(s)", "",
                "| t | " + " | ".join(f"seed {s}" for s in seeds)
                + " | mean +- SD | 95 % interval |",
                "|---:|" + "---:|" * (len(seeds) + 2)]
      for r in mine:
        lines.append(
            f"| {r['glimpses']} | " + " | ".join(
                f"{r[f'seed_{s}']:+.1f}" for s in seeds)
            + f" | {r['mean']:+.1f} +- {r['sd']:.1f} | "
            f"[{r['ci95_low']:+.1f}, {r['ci95_high']:+.1f}] |")
  return "\n".join(lines).strip("\n")


def plot(rows: Sequence[dict], path,
         pairs: Iterable[tuple[str, str]] = PAIRS) -> None:
  """One panel per pair: each seed's top-1 difference against glimpses
  (thin), their mean and 95 % interval (band), zero dashed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from saccader_jax import evaluation  # pylint: disable=g-import-not-at-top
  shown = available_pairs(rows, pairs)
  if not shown:
    return
  max_glimpses = max(r["glimpses"] for r in rows)
  fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.8),
                           squeeze=False)
  for ax, (policy, reference) in zip(axes[0], shown):
    glimpses = np.arange(1, max_glimpses + 1)
    each = [paired(rows, policy, reference, "top1", t) for t in glimpses]
    for i, seed in enumerate(each[0]["seeds"]):
      ax.plot(glimpses, [p["differences"][i] for p in each], lw=0.8,
              alpha=0.6, label=f"seed {seed}")
    ax.plot(glimpses, [p["mean"] for p in each], color="k", lw=2,
            label="mean")
    ax.fill_between(glimpses, [p["ci95_low"] for p in each],
                    [p["ci95_high"] for p in each], color="k", alpha=0.15,
                    label="95 % interval")
    ax.axhline(0, color="grey", ls="--", lw=1)
    ax.set(xlabel="glimpses", ylabel="top-1 difference (points)",
           title=f"{policy} - {reference}")
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  path.write_bytes(evaluation.figure_png(fig))


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  from experiments.results_csv import read_csv  # pylint: disable=g-import-not-at-top
  rows = read_csv(flags.FLAGS.csv)
  pairs = [tuple(p.split(":")) for p in flags.FLAGS.pairs] or PAIRS
  print(markdown(rows, pairs))


if __name__ == "__main__":
  from absl import app
  from absl import flags
  flags.DEFINE_string("csv", None, "accuracy_vs_glimpses.csv of "
                      "experiments.paper_figures.")
  flags.DEFINE_list("pairs", [], "A:B policy pairs; default: "
                    + ", ".join(f"{a}:{b}" for a, b in PAIRS))
  flags.mark_flag_as_required("csv")
  app.run(main)
