"""Evaluation within a run: each stage's dev results and the final test.

`RunEvaluation` wraps `saccader_jax.evaluation` for a `Job`: it compiles a
policy's evaluation once per policy and set of usable evaluators, scores the
reference classifiers that stages have trained so far (`reference_variables`,
by stage name), draws glimpse pictures, and writes results to TensorBoard
and, for the test split, to files in the workdir.

    evaluation = RunEvaluation(job, stages.resolve_stages(job.config,
                                                          job.model))
    results = evaluation.evaluate_policy(policy, "test")
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional

import jax
import numpy as np

from saccader_jax import chunking
from saccader_jax import errors
from saccader_jax import evaluation
from saccader_jax import evaluators as evaluators_lib
from saccader_jax import models
from saccader_jax import policy as policy_lib
from saccader_jax.data import input_pipeline
from saccader_jax.job import Job
from saccader_jax.stages import ResolvedStage


class RunEvaluation:
  """The configured evaluators of a job, with their compiled steps."""

  def __init__(self, job: Job, stages: Mapping[str, ResolvedStage]):
    """stages: the run's stages, resolved (by name, in run order)."""
    self.job = job
    self.config = job.config
    self.stages = dict(stages)
    self.evaluators = evaluators_lib.create_evaluators(
        self.config.get("evals", {"accuracy": {}}), self.config.eval_glimpses)
    # Whole-image readouts of the stages that have one (Stage.reference),
    # by stage name, as they finish: the evaluators' reference classifiers.
    self.reference_variables: dict[str, Any] = {}
    self._policies: dict[Any, policy_lib.Policy] = {}
    self._policy_evaluators: dict[Any, tuple[Any, Any]] = {}
    self._picture_fns: dict[Any, tuple[Any, Any]] = {}
    self._classifier_steps: dict[str, Any] = {}

  @property
  def _chunk_size(self) -> chunking.ChunkSize:
    return self.config.get("eval_chunk_size", chunking.AUTO)

  def learned_policy(self, field: str = "model") -> policy_lib.Policy:
    """The policy of config.<field>'s model (built once), without variables:
    pass them to `evaluate_policy`."""
    key = ("learned", field)
    if key not in self._policies:
      self._policies[key] = policy_lib.make_policy(
          self.job.model(field), None, self.config.dataset.num_channels)
    return self._policies[key]

  def _policy_evaluator(self, policy: policy_lib.Policy):
    """The compiled evaluation of `policy`, with every configured evaluator
    whose reference classifiers have been trained. Cached while the policy
    lives (the cache holds it, so its id is not reused)."""
    usable = [e for e in self.evaluators
              if all(r in self.reference_variables for r in e.references)]
    key = (id(policy), tuple(e.name for e in usable))
    if key not in self._policy_evaluators:
      needed = {r for e in usable for r in e.references}
      classify_fns = {name: self.classify_fn(name) for name in needed}
      self._policy_evaluators[key] = (policy, evaluation.PolicyEvaluator(
          policy, usable, self.config.eval_glimpses, classify_fns,
          out_sharding=self.job.replicated, chunk_size=self._chunk_size))
    return self._policy_evaluators[key][1]

  def classify_fn(self, stage_name: str) -> evaluation.ClassifyFn:
    """The whole-image readout of the network stage_name trains."""
    return models.classify_fn(self.stages[stage_name].model)

  def evaluate_policy(self, policy: policy_lib.Policy, split: str,
                      variables: Any = None, key=None,
                      max_examples=None, field: str = "model") -> dict:
    """Any policy (learned or baseline) through the configured evaluators.

    variables: the policy's (default: policy.variables). key: for sampling
    policies. field: the config field of the policy's model, whose input
    size the images take. Evaluators whose reference classifier is not
    trained yet are left out.
    """
    evaluator = self._policy_evaluator(policy)
    return evaluator(self.job.eval_batches(split, max_examples, field),
                     variables, self.reference_variables, key=key)

  def evaluate_reference(self, stage_name: str, variables: Any, split: str,
                         max_examples=None) -> dict:
    """A stage's whole-image readout (Stage.reference) on a split."""
    if stage_name not in self._classifier_steps:
      self._classifier_steps[stage_name] = jax.jit(
          evaluation.make_classifier_eval_step(self.classify_fn(stage_name),
                                               self._chunk_size),
          out_shardings=self.job.replicated)
    results = evaluation.evaluate(self._classifier_steps[stage_name],
                                  self.job.eval_batches(split, max_examples),
                                  variables)
    return evaluation.reference_results(
        results, self.stages[stage_name].reference)

  def pictures(self, policy: policy_lib.Policy, split: str,
               variables: Any = None, key=None, title: str = "",
               field: str = "model") -> dict[str, np.ndarray]:
    """Glimpse pictures of the split's first images, if configured (field:
    as in `evaluate_policy`)."""
    pictures = {}
    variables = policy.variables if variables is None else variables
    for evaluator in self.evaluators:
      if not isinstance(evaluator, evaluators_lib.Glimpses):
        continue
      count = min(evaluator.num_images, self.config.eval_batch_size)
      cache_key = (id(policy), count)   # the cache holds the policy
      if cache_key not in self._picture_fns:
        def first_images(variables, batch, key, count=count):
          head = jax.tree_util.tree_map(lambda x: x[:count], batch)
          out = policy.apply(variables, head["image"],
                             self.config.eval_glimpses, key)
          return out, head
        self._picture_fns[cache_key] = (policy, jax.jit(
            first_images, out_shardings=self.job.replicated))
      batch = next(iter(self.job.eval_batches(split, count, field)))
      out, head = jax.device_get(
          self._picture_fns[cache_key][1](variables, batch, key))
      real = np.asarray(head["mask"]) > 0   # other hosts' rows may be padding
      out = jax.tree_util.tree_map(lambda x: np.asarray(x)[real], out)
      pictures[evaluator.name] = evaluator.picture(
          out, head["image"][real], head["label"][real],
          input_pipeline.class_names(self.config.dataset), title)
    return pictures

  def evaluate_stage(self, stage: str | ResolvedStage, variables: Any,
                     split: str, max_examples=None) -> dict:
    """What a stage of the run (or its name) yields: its policy through the
    evaluators (if its model is a policy) and its reference readout (if it
    has one)."""
    if isinstance(stage, str):
      stage = self.stages[stage]
    results = {}
    if stage.is_policy:
      results = self.evaluate_policy(self.learned_policy(stage.field),
                                     split, variables,
                                     max_examples=max_examples,
                                     field=stage.field)
    if stage.reference:
      reference = self.evaluate_reference(stage.name, variables, split,
                                          max_examples)
      results.setdefault("count", reference["count"])
      results["references"] = {stage.name: reference}
    return results

  def evaluate_baselines(self, split: str, max_examples=None) -> dict:
    """config.test_baselines (names in `saccader_jax.policies.BASELINES`)
    over the BagNet that stage "representation" trained, in the configured
    order: name -> results. Sampling baselines draw from
    jax.random.key(config.seed)."""
    from saccader_jax import policies  # pylint: disable=g-import-not-at-top
    names = tuple(self.config.get("test_baselines", ()))
    if names and "representation" not in self.reference_variables:
      raise ValueError("config.test_baselines reads the BagNet of stage "
                       "'representation', which this run has not trained.")
    results = {}
    for name in names:
      bagnet = self.reference_variables["representation"]
      key = ("baseline", name)
      if key not in self._policies:   # compiled once, given the BagNet
        self._policies[key] = policies.make_baseline_policy(
            name, self.config, bagnet)
      policy = self._policies[key]
      results[name] = self.evaluate_policy(
          policy, split, bagnet, max_examples=max_examples,
          key=jax.random.key(self.config.seed) if policy.requires_key
          else None)
    return results

  def write(self, step: int, prefix: str, results: dict,
            pictures: dict[str, np.ndarray]) -> None:
    """Results as scalars and pictures as images, under prefix."""
    self.job.writer.write_scalars(step, evaluation.scalars(
        results, self.evaluators, prefix))
    if pictures:
      self.job.writer.write_images(
          step, {f"{prefix}/{key}": picture[None]
                 for key, picture in pictures.items()})

  def dev(self, stage: ResolvedStage, step: int, variables: Any) -> None:
    """Evaluates a stage's variables on the dev split (at most
    config.eval_max_examples) and writes `<name>/dev/*` at `step`."""
    dev_split = self.config.dataset.dev_split
    results = self.evaluate_stage(stage, variables, dev_split,
                                  self.config.get("eval_max_examples"))
    pictures = {}
    if stage.is_policy:
      pictures = self.pictures(self.learned_policy(stage.field), dev_split,
                               variables, field=stage.field)
    self.write(step, f"{stage.name}/dev", results, pictures)

  def test(self, policy_field: Optional[str], policy_variables: Any,
           started: float, step: int = 0) -> dict:
    """The final test-split results: the greedy policy of config.<field>
    (if any) and every trained reference classifier; process 0 prints the
    table and writes test_accuracy.{json,md,png} into the workdir.

    TensorBoard gets them as `test/*` at `step` (the last stage's last
    step), and each table column as a curve against the number of glimpses,
    `test/<column>_vs_glimpses` at steps 1..T.
    started: the job's start (time.time()), for the table's title."""
    split = self.config.dataset.test_split
    results, pictures = {"references": {}}, {}
    if policy_field:
      policy = self.learned_policy(policy_field)
      results.update(self.evaluate_policy(policy, split, policy_variables,
                                          field=policy_field))
      pictures = self.pictures(policy, split, policy_variables,
                               title="Greedy policy, test split",
                               field=policy_field)
    for name, variables in self.reference_variables.items():
      results["references"][name] = self.evaluate_reference(name, variables,
                                                             split)
      results.setdefault("count", results["references"][name]["count"])
    baselines = self.evaluate_baselines(split)
    if baselines:
      results["baselines"] = baselines
    self.write(step, "test", results, pictures)
    self._write_curves("test", results)
    for name, baseline in baselines.items():
      self.write(step, f"test/{name}", baseline, {})
      self._write_curves(f"test/{name}", baseline)
    self.job.writer.flush()
    if jax.process_index() == 0:
      self._report_test(results, pictures, time.time() - started)
    return results

  def _write_curves(self, prefix: str, results: dict) -> None:
    curves = {f"{prefix}/{header.replace(' ', '_').replace('-', '')}"
              "_vs_glimpses": values
              for e in self.evaluators if all(k in results for k in e.keys)
              for header, values in e.columns(results)}
    for t in range(len(next(iter(curves.values()), []))):
      self.job.writer.write_scalars(t + 1, {
          tag: float(values[t]) for tag, values in curves.items()})

  def _report_test(self, results: dict, pictures: dict,
                   seconds: float) -> None:
    workdir, name = self.job.workdir, self.config.dataset.name
    table = evaluation.format_table(
        results, f"Test accuracy of the greedy policy ({name}, "
        f"{seconds:.0f} s)", self.evaluators)
    shown = table
    if results.get("baselines"):
      # The comparison is what the job prints; the file keeps both.
      shown = evaluation.format_comparison(
          results, f"Test split, {name}: the greedy policy beside the "
          f"baselines on the stage-1 BagNet ({seconds:.0f} s)")
      table = f"{shown}\n\n{table}"
    try:
      paths = evaluation.save_results(
          results, workdir, "test_accuracy", f"Greedy policy, {name} test",
          table=table, pictures=pictures)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.WriteError(
          f"Could not write the test results into {workdir}: "
          f"{errors.write_failure(e)}. The checkpoints are complete; free "
          "space or fix the permissions, then run the same command again "
          "(it restores every stage and evaluates again).") from e
    print(shown)
    print(f"\nResults: {', '.join(map(str, paths))}")
    print(f"TensorBoard logs: {workdir / 'tensorboard'}"
          f"  (tensorboard --logdir {workdir})", flush=True)
