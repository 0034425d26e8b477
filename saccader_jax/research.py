"""A run driven from research code: train stages, read them, evaluate policies.

    run = Run(config, workdir)            # checks config, records it
    run.reuse(base_workdir, ["representation"])   # optional: finished stages
    trained = run.train()                 # {name: TrainedStage}; finished
                                          # stages are restored, not retrained
    policy = run.learned_policy()         # config.model's policy
    dev = run.evaluate(policy, "dev", trained["location"].variables)
    ordered = policies.make_baseline_policy(
        "ordered_logits", config, trained["representation"].variables)
    run.evaluate(ordered, "dev")          # any policy, the run's evaluators
    run.close()

A `Run` opened with `read_only=True` on a finished workdir writes nothing
there (no record, no logs) and only restores: `train()` fails on a stage
that has no finished checkpoint. It may read a workdir a job is writing; a
writing `Run` holds the workdir's lease (`saccader_jax.workdir_lease`) until
`close`, and is refused a workdir another job holds.

Each `evaluate` goes through the evaluators of config.evals with the
reference classifiers the run has trained (e.g. the occlusion analysis
reads the classifier stage's), compiled once per policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Optional, Sequence

from etils import epath
import jax
import ml_collections
import numpy as np

from saccader_jax import checkpoints
from saccader_jax import errors
from saccader_jax import policy as policy_lib
from saccader_jax import run_record
from saccader_jax import train


@dataclasses.dataclass(frozen=True)
class TrainedStage:
  """A stage's final result.

  Attributes:
    name: the stage's name in config.run_stages.
    field: the config field of its model ("model", "classifier", ...).
    model: that field's module.
    variables: its final {"params", "batch_stats"}.
    reference: the label of its whole-image readout if that is a reference
      classifier (the stage-1 BagNet's "BagNet-77, all locations"), else
      None.
    is_policy: whether its model chooses glimpses.
  """
  name: str
  field: str
  model: Any
  variables: dict
  reference: Optional[str]
  is_policy: bool


class Run:
  """The stages of config.run_stages in a workdir, for research code."""

  def __init__(self, config: ml_collections.ConfigDict,
               workdir: epath.PathLike,
               pretrained: Optional[Mapping[str, dict]] = None,
               read_only: bool = False):
    """
    Args:
      config: the run's config (checked here).
      workdir: where its checkpoints and logs are (local or a URL).
      pretrained: models trained elsewhere, by config field, that stages
        start from as if an earlier stage had trained them.
      read_only: only read a finished workdir: nothing is written there
        and `train` restores (it fails on an unfinished stage).
    """
    # The config checked and the data prepared before the workdir is
    # touched; a writing run then holds the workdir's lease (on every
    # process, as `main` does) until `close`. Reading needs none (a live
    # workdir may be read).
    self._trainer = train.Trainer.open(config, workdir, pretrained,
                                       read_only=read_only, hold_lease=True)
    self._read_only = read_only
    self._trained: dict[str, TrainedStage] = {}

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self._trainer.config

  @property
  def workdir(self) -> epath.Path:
    return self._trainer.job.workdir

  @property
  def stage_names(self) -> tuple[str, ...]:
    return tuple(self._trainer.stages)

  def reuse(self, source_workdir: epath.PathLike, stages: Sequence[str],
            same_settings: bool = True) -> list[str]:
    """Copies the checkpoints of `stages` from another workdir where this
    workdir has none (e.g. a finished stage 1 that several stage-3 settings
    start from); returns the stages copied.

    Raises ConfigError where the run recorded there differs in model, data
    set, seed or batch size, or (with same_settings) in those stages' own
    settings: it trained other stages than this config would.
    """
    if self._read_only:
      raise errors.JobError(f"{self.workdir} is open read-only.")
    problems = run_record.reuse_problems(run_record.load_config(
        source_workdir), self.config, stages, same_settings)
    if problems:
      raise errors.ConfigError([
          f"{source_workdir} trained {', '.join(stages)} with another "
          f"config than this run's ({'; '.join(problems)}): train them "
          "here, or reuse a run of this config."])
    return [name for name in stages
            if checkpoints.copy_stage(source_workdir, self.workdir, name)]

  def train(self) -> dict[str, TrainedStage]:
    """Trains config.run_stages in order, resuming where the workdir left
    off (finished stages are restored); returns them by name."""
    variables = self._trainer.train()
    self._trained = {
        name: TrainedStage(name=name, field=stage.field, model=stage.model,
                           variables=variables[name],
                           reference=stage.reference,
                           is_policy=stage.is_policy)
        for name, stage in self._trainer.stages.items()}
    return dict(self._trained)

  def stage(self, name: str) -> TrainedStage:
    """A trained stage (after `train`)."""
    if name not in self._trained:
      raise KeyError(f"Stage {name!r} is not trained in this run; trained: "
                     f"{sorted(self._trained)} (call train() first).")
    return self._trained[name]

  def final(self, field: str = "model") -> TrainedStage:
    """The last trained stage of config.<field>'s model."""
    mine = [s for s in self._trained.values() if s.field == field]
    if not mine:
      raise KeyError(f"No stage of this run trains config.{field}.")
    return mine[-1]

  def learned_policy(self, field: str = "model") -> policy_lib.Policy:
    """The policy of config.<field>'s model, without variables: give them to
    `evaluate`."""
    return self._trainer.evaluation.learned_policy(field)

  def evaluate(self, policy: policy_lib.Policy, split: str,
               variables: Any = None, *, key: Optional[jax.Array] = None,
               max_examples: Optional[int] = None,
               field: str = "model") -> dict:
    """Any policy, learned or not, on a split through the run's evaluators.

    Args:
      policy: e.g. `learned_policy()` or a baseline.
      split: "dev", "test", or a split name of the data set.
      variables: the policy's (default: those it holds).
      key: for sampling policies.
      max_examples: the split's first examples only.
      field: the config field whose model's input size the images take.

    Returns:
      {"count": examples, "top1": [T], "top5": [T], ...} per number of
      glimpses 1..config.eval_glimpses, one entry per evaluator key.
    """
    return self._trainer.evaluation.evaluate_policy(
        policy, self._split(split), variables, key=key,
        max_examples=max_examples, field=field)

  def evaluate_references(self, split: str,
                          max_examples: Optional[int] = None,
                          variables: Optional[Mapping[str, Any]] = None
                          ) -> dict[str, dict]:
    """Each trained reference classifier on whole images, by stage name:
    {"label", "top1", "top5", "count"}.

    variables: {stage name: variables} read out in place of what that stage
      trained, e.g. a later stage's model, whose BagNet trained on after
      stage 1 (a stage's readout reads only its own part of the model).
    """
    evaluation = self._trainer.evaluation
    references = {name: stage for name, stage in self._trained.items()
                  if stage.reference}
    variables = dict(variables or {})
    unknown = sorted(set(variables) - set(references))
    if unknown:
      raise KeyError(f"evaluate_references: {unknown} name no trained "
                     "reference stage of this run.")
    return {name: evaluation.evaluate_reference(
        name, variables.get(name, stage.variables), self._split(split),
        max_examples)
            for name, stage in references.items()}

  def pictures(self, policy: policy_lib.Policy, split: str,
               variables: Any = None, key: Optional[jax.Array] = None,
               title: str = "", field: str = "model"
               ) -> dict[str, np.ndarray]:
    """Glimpse pictures of the split's first images (config.evals.glimpses;
    {} if the config draws none)."""
    return self._trainer.evaluation.pictures(
        policy, self._split(split), variables, key, title, field)

  def eval_batches(self, split: str, max_examples: Optional[int] = None,
                   field: str = "model") -> Iterator[dict]:
    """The split's global batches as config.<field>'s model reads them:
    {"image", "label", "mask"} (mask 0 on padding)."""
    return self._trainer.job.eval_batches(self._split(split), max_examples,
                                          field)

  def close(self) -> None:
    """Flushes and closes the run's log writer and releases the workdir."""
    self._trainer.job.close()

  def __enter__(self) -> "Run":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _split(self, split: str) -> str:
    dataset = self.config.dataset
    return {"train": dataset.train_split, "dev": dataset.dev_split,
            "test": dataset.test_split}.get(split, split)
