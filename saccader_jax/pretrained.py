"""Trained models shipped with the package, each a read-only workdir.

    config, variables = saccader_jax.load_pretrained()
    policy = saccader_jax.make_policy(config, variables)
    images, labels = saccader_jax.pretrained.test_subset()
    out = policy(saccader_jax.preprocess_images(images, config.dataset), 6)

A shipped workdir is what its job wrote, less the optimizer states
(`checkpoints.export_models`): config.json, each stage's final model under
checkpoints/, the job's test results (test_accuracy.{json,md,png}), and a
fixed subset of the test split (test_subset.npz: the first canvases as uint8
pixels, with labels) beside what the model scored on it when it was shipped
(test_subset_accuracy.json). Every workdir reader takes it:
`load_variables(pretrained_workdir(), stage="location")`, `Run(config,
pretrained_workdir(), read_only=True)`. experiments/export_pretrained.py
makes one from a finished job.
"""

from __future__ import annotations

import json
from typing import Optional

from etils import epath
import ml_collections
import numpy as np

from saccader_jax import run_record

# The README's main job (configs/fashion_mnist_parts_quick_saccader.py),
# seed 0.
DEFAULT = "fashion_mnist_parts_quick"
ROOT = epath.Path(__file__).parent / "pretrained_workdirs"
SUBSET_FILE = "test_subset.npz"
SUBSET_ACCURACY_FILE = "test_subset_accuracy.json"


def names() -> tuple[str, ...]:
  """The shipped models."""
  return tuple(sorted(p.name for p in ROOT.iterdir() if p.is_dir())
               ) if ROOT.exists() else ()


def pretrained_workdir(name: str = DEFAULT) -> epath.Path:
  """The shipped workdir of model `name`."""
  path = ROOT / name
  if not (path / run_record.CONFIG_FILE).exists():
    raise ValueError(f"No shipped model {name!r}; shipped: {list(names())}.")
  return path


def load_pretrained(name: str = DEFAULT, stage: Optional[str] = None
                    ) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, variables) of a shipped model: the final model, or the one
  after `stage`, on this process's devices."""
  workdir = pretrained_workdir(name)
  config = run_record.load_config(workdir)
  return config, run_record.load_variables(workdir, config, stage=stage)


def test_subset(name: str = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
  """The shipped test canvases: ([n, H, W, C] uint8, [n] int32 labels), the
  first n of the model's test split in evaluation order."""
  with (pretrained_workdir(name) / SUBSET_FILE).open("rb") as f:
    saved = np.load(f)
    return saved["images"], saved["labels"]


def subset_accuracy(name: str = DEFAULT) -> dict:
  """What the model scored on `test_subset` when shipped: {"policies":
  {policy: {"top1": [T]}}, "bagnet_top1", "count", "cpu"}."""
  return json.loads((pretrained_workdir(name) /
                     SUBSET_ACCURACY_FILE).read_text())


def score(config: ml_collections.ConfigDict, variables: dict,
          images: np.ndarray, labels: np.ndarray,
          baselines: tuple[str, ...] = ("ordered_logits",),
          batch_size: int = 250) -> dict:
  """Top-1 on given uint8 canvases, t = 1..config.eval_glimpses: the greedy
  policy ("saccader"), `baselines` over the same variables' BagNet, and
  that BagNet on all locations ("bagnet_top1"). The record
  `subset_accuracy` keeps."""
  # Imported here: policies and the evaluators pull in the models.
  import jax  # pylint: disable=g-import-not-at-top
  from saccader_jax import evaluation  # pylint: disable=g-import-not-at-top
  from saccader_jax import evaluators  # pylint: disable=g-import-not-at-top
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from saccader_jax import policies  # pylint: disable=g-import-not-at-top
  from saccader_jax import policy as policy_lib  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  batches = evaluation.array_batches(
      input_pipeline.preprocess_images(images, config.dataset), labels,
      batch_size)
  glimpses = config.eval_glimpses
  accuracy = evaluators.create_evaluators(
      ml_collections.ConfigDict({"accuracy": {}}), glimpses)
  candidates = {"saccader": policy_lib.make_policy(config, variables)}
  for name in baselines:
    candidates[name] = policies.make_baseline_policy(name, config, variables)
  scored = {name: [round(float(v), 6) for v in evaluation.PolicyEvaluator(
      candidate, accuracy, glimpses)(batches)["top1"]]
            for name, candidate in candidates.items()}
  bagnet = evaluation.evaluate(jax.jit(evaluation.make_classifier_eval_step(
      models.classify_fn(models.create_model(config.model)), 0)), batches,
                               variables)
  return {"policies": {name: {"top1": top1} for name, top1 in scored.items()},
          "bagnet_top1": round(float(bagnet["top1"]), 6),
          "count": int(len(labels))}
