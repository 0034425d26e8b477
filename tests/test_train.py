"""The train loop: stages, checkpoints, resumption and errors."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_train_config
from tests.helpers import with_unit_bn_scales
from saccader_jax import checkpoints
from saccader_jax import errors
from saccader_jax import loop
from saccader_jax import models
from saccader_jax import policies
from saccader_jax import stage_start
from saccader_jax import stages
from saccader_jax import steps
from saccader_jax import train
from saccader_jax.data import input_pipeline


def assert_trees_equal(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def trees_differ(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def one_step(config, stage_name, variables, batch):
  model = models.create_model(config.model)
  state, step, *_ = stages.create_stage(config, stage_name, model, variables,
                                       10)
  return jax.jit(step)(state, batch, jax.random.key(0))


@pytest.fixture(scope="module")
def tiny_variables_and_batch(tiny_data_dir):
  model = models.create_model(tiny_train_config(tiny_data_dir).model)
  images = jax.random.normal(jax.random.key(1), (8, 36, 36, 1))
  variables = model.init(jax.random.key(0), images, num_glimpses=1)
  batch = {"image": images, "label": jnp.arange(8) % 10}
  return {"params": with_unit_bn_scales(variables["params"]),
          "batch_stats": variables["batch_stats"]}, batch


# Section 3.2: stage 1 trains the BagNet (theta), stage 2 the location network
# (eta: attention network, mixing conv, cell), stage 3 both.
# "policy/location_only": stage 3 with stages.policy.train_representation
# False.
TRAINED_PARTS = {
    "representation": {"representation"},
    "location": {"attention", "mixing", "cell"},
    "policy": {"representation", "attention", "mixing", "cell"},
    "policy/location_only": {"attention", "mixing", "cell"},
}


@pytest.mark.parametrize("variant", sorted(TRAINED_PARTS))
def test_each_stage_updates_exactly_its_parameters(tiny_config,
                                                   tiny_variables_and_batch,
                                                   variant):
  variables, batch = tiny_variables_and_batch
  config = tiny_config.copy_and_resolve_references()
  stage_name = variant.split("/")[0]
  if variant == "policy/location_only":
    config.stages.policy.train_representation = False
  # A random policy may earn the same reward everywhere (zero advantage);
  # a sizeable L2 term then still moves every trained kernel.
  config.stages[stage_name].l2_mode = "plain"
  config.stages[stage_name].l2_weight = 1e-2
  state, metrics = one_step(config, stage_name, variables, batch)
  assert np.isfinite(float(metrics["loss"]))
  assert set(variables["params"]) == TRAINED_PARTS["policy"]
  for part in variables["params"]:
    trains = part in TRAINED_PARTS[variant]
    params_changed = trees_differ(state.params[part],
                                  variables["params"][part])
    assert params_changed == trains, (stage_name, part)
  for part in ("representation", "attention"):  # the parts with batch norm
    trains = part in TRAINED_PARTS[variant]
    stats_changed = trees_differ(state.batch_stats[part],
                                 variables["batch_stats"][part])
    assert stats_changed == trains, (stage_name, part)


def tensorboard_scalars(directory) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of the event files under directory."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  scalars = {}
  for path in glob.glob(os.path.join(directory, "**", "events.out.*"),
                        recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField("tensor") and not value.tensor.string_val:
          scalars.setdefault(value.tag, {})[event.step] = float(
              tf.make_ndarray(value.tensor))
  return scalars


def run_job(config, workdir, pretrained=None):
  return train.Trainer.open(config, str(workdir), pretrained).run()


@pytest.mark.slow
def test_stages_end_to_end_with_the_classifier_and_every_evaluator(
    tiny_config, tmp_path, capsys):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("classifier",) + tuple(config.run_stages)
  config.evals.occlusion = {"classifier": "classifier"}
  config.test_baselines = ("ordered_logits", "random")
  result = run_job(config, tmp_path)
  for stage in ("classifier", "representation", "location", "policy"):
    steps = os.listdir(tmp_path / "checkpoints" / stage)
    assert "3" in steps, (stage, steps)
  test = result["test"]
  assert test["count"] == 60
  assert test["top1"].shape == (5,) and np.all(test["top5"] >= test["top1"])
  assert np.all(np.diff(test["coverage"]) >= 0) and test["coverage"][0] > 0
  assert test["occluded_top1"].shape == (5,)
  # The job prints the comparison with the baselines; the file keeps it and
  # the full table.
  out = capsys.readouterr().out
  saved = (tmp_path / "test_accuracy.md").read_text()
  assert ("| glimpses | Saccader top-1 | ordered logits top-1 | random top-1 "
          "| Saccader - ordered logits | Saccader coverage |") in out
  assert out.count("| glimpses |") == 1
  assert ("| glimpses | top-1 | top-5 | coverage | occluded top-1 | "
          "occluded top-5 |") in saved and out.split("\nResults:")[0].split(
              "Test split")[-1] in saved
  for text in (out, saved):
    assert "| BagNet, all locations (stage representation) |" in text
    assert "| full-image classifier (stage classifier) |" in text
  for name in ("test_accuracy.png", "test_accuracy_glimpses.png",
               "test_accuracy.json"):
    assert os.path.exists(tmp_path / name), name
  # The test results reach TensorBoard too: each column against glimpses.
  logged = tensorboard_scalars(tmp_path / "tensorboard")
  for tag, key in (("top1", "top1"), ("coverage", "coverage"),
                   ("occluded_top1", "occluded_top1")):
    curve = logged[f"test/{tag}_vs_glimpses"]
    np.testing.assert_allclose([curve[t] for t in range(1, 6)], test[key],
                               rtol=1e-6)
  np.testing.assert_allclose(logged["test/representation_top1"][3],
                             test["references"]["representation"]["top1"],
                             rtol=1e-6)

  # The BagNet reference is the stage-1 network, not the final Saccader's
  # representation; the baselines go through the same evaluators.
  trainer = train.Trainer.open(config, str(tmp_path))
  model = trainer.job.model()
  stage1 = result["stages"]["representation"]
  assert trees_differ(stage1["params"]["representation"],
                      result["variables"]["params"]["representation"])
  batches = list(input_pipeline.eval_batches(
      config.dataset, trainer.job.builder, "test", 60))
  images = np.concatenate([b["image"] for b in batches])[:60]
  labels = np.concatenate([b["label"] for b in batches])[:60]
  bagnet = np.argmax(model.whole_image_logits(stage1, images), -1)
  np.testing.assert_allclose(
      test["references"]["representation"]["top1"],
      np.mean(bagnet == labels), rtol=1e-6)

  # test_baselines: ordered logits over the stage-1 BagNet, counted here
  # from the whole-image BagNet logits; random from key(seed), repeatably.
  ordered = test["baselines"]["ordered_logits"]
  out = policies.make_baseline_policy("ordered_logits", config, stage1)(
      jnp.asarray(images), 5)
  running = np.cumsum(np.asarray(out.glimpse_logits), 1) / np.arange(
      1, 6)[None, :, None]
  np.testing.assert_allclose(
      ordered["top1"], np.mean(np.argmax(running, -1) == labels[:, None], 0),
      rtol=1e-6)
  assert np.all(np.diff(ordered["coverage"]) >= 0)
  for t in (1, 5):
    # The comparison is the file's first table.
    row = next(line for line in saved.splitlines()
               if line.startswith(f"| {t} | "))
    cells = [float(c) for c in row.strip("|").split("|")]
    np.testing.assert_allclose(
        cells[1:5], 100 * np.array([
            test["top1"][t - 1], ordered["top1"][t - 1],
            test["baselines"]["random"]["top1"][t - 1],
            test["top1"][t - 1] - ordered["top1"][t - 1]]), atol=0.006)
  np.testing.assert_allclose(
      [logged["test/random/top1_vs_glimpses"][t] for t in range(1, 6)],
      test["baselines"]["random"]["top1"], rtol=1e-6)
  trainer.evaluation.reference_variables = dict(result["stages"])
  again = trainer.evaluation.evaluate_baselines("test")
  np.testing.assert_array_equal(again["random"]["top1"],
                                test["baselines"]["random"]["top1"])

  sobel = policies.make_baseline_policy("sobel_mean", config, stage1)
  results = trainer.evaluation.evaluate_policy(sobel, "test")
  out = sobel(jnp.asarray(images), 5)
  running = np.cumsum(np.asarray(out.glimpse_logits), 1) / np.arange(
      1, 6)[None, :, None]
  np.testing.assert_allclose(
      results["top1"], np.mean(np.argmax(running, -1) == labels[:, None], 0),
      rtol=1e-6)
  assert "occluded_top1" in results and "coverage" in results


@pytest.mark.slow
def test_later_stages_start_from_the_previous_stage(tiny_config, tmp_path):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation", "location")
  result = run_job(config, tmp_path)
  stage1 = train.Trainer.open(config, str(tmp_path))
  # A rerun resumes both stages from their final checkpoints: nothing moves.
  again = stage1.run()
  assert_trees_equal(result["variables"], again["variables"])


class Interrupted(Exception):
  pass


def interrupt_and_resume(config, workdir, monkeypatch, stream: int,
                         batch: int, pretrained=None):
  """Runs config in workdir, interrupted as training stream `stream` (1 for
  the first stage trained) is about to yield its batch `batch` (0-based);
  then runs it again, resuming. Returns the second run's result."""
  real_batches = input_pipeline.train_batches
  opened = []

  def dying_batches(*args, **kwargs):
    opened.append(None)
    number, iterator = len(opened), real_batches(*args, **kwargs)

    def gen():
      for i, item in enumerate(iterator):
        if number == stream and i == batch:
          raise Interrupted
        yield item
    return gen()

  monkeypatch.setattr(input_pipeline, "train_batches", dying_batches)
  with pytest.raises(Interrupted):
    run_job(config, workdir, pretrained)
  monkeypatch.setattr(input_pipeline, "train_batches", real_batches)
  return run_job(config, workdir, pretrained)


@pytest.mark.slow
def test_killed_job_resumes_to_the_same_parameters(tiny_config, tmp_path,
                                                   monkeypatch):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation", "policy")
  for stage in config.stages.values():
    stage.num_steps = 5
  straight = run_job(config, tmp_path / "straight")

  config.checkpoint_every_steps = 2
  # Stage 2's stream, after its step-2 checkpoint.
  resumed = interrupt_and_resume(config, tmp_path / "resumed", monkeypatch,
                                 stream=2, batch=1)
  assert_trees_equal(straight["variables"], resumed["variables"])


@pytest.mark.slow
def test_readme_stage_snippet_trains_a_stage_as_the_trainer_does(
    tiny_config, tmp_path):
  """The free functions alone (docs/layout.md's snippet: Job, resolve_stage,
  initial_state, loop.train) give the trainer's parameters bit for bit, and
  run again in the same workdir they resume at the stage's end."""
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = 3
  straight = run_job(config, tmp_path / "straight")
  from tests import helpers  # pylint: disable=g-import-not-at-top
  code = helpers.doc_snippet("stage-snippet")
  for run in range(2):
    namespace = {"config": config, "workdir": str(tmp_path / "snippet")}
    exec(code, namespace)  # pylint: disable=exec-used
    assert int(namespace["state"].step) == 3, run
    assert_trees_equal(straight["variables"],
                       steps.model_variables(namespace["state"]))


@pytest.mark.slow
def test_dram_trains_evaluates_and_resumes_after_a_kill(tiny_config,
                                                       tmp_path, monkeypatch):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("dram",)
  config.stages.dram.num_steps = 5
  straight = run_job(config, tmp_path / "straight")
  test = straight["test"]
  assert test["count"] == 60 and test["top1"].shape == (5,)
  assert np.all(test["top5"] >= test["top1"])
  # Each glimpse is 15x15 of a 36x36 canvas.
  assert 0 < test["coverage"][0] <= (15 * 15) / (36 * 36) + 1e-6
  assert np.all(np.diff(test["coverage"]) >= 0)
  initial = train.Trainer.open(config, str(tmp_path / "init")).job.init_variables(
      jax.random.fold_in(jax.random.key(config.seed), 0), "dram")
  for part in initial["params"]:
    assert trees_differ(initial["params"][part],
                        straight["variables"]["params"][part]), part

  config.checkpoint_every_steps = 2
  resumed = interrupt_and_resume(config, tmp_path / "resumed", monkeypatch,
                                 stream=1, batch=3)   # after step 2's save
  assert_trees_equal(straight["variables"], resumed["variables"])


@pytest.mark.slow
def test_classnet_trains_from_given_models_and_resumes_after_a_kill(
    tiny_config, tmp_path, monkeypatch):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("classnet",)
  config.stages.classnet.num_steps = 5
  trainer = train.Trainer.open(config.copy_and_resolve_references(),
                               str(tmp_path / "init"),
                               pretrained={"model": {}, "classifier": {}})
  init_variables = trainer.job.init_variables
  given = {"model": init_variables(jax.random.key(1), "model"),
           "classifier": init_variables(jax.random.key(2),
                                                "classifier")}
  straight = run_job(config, tmp_path / "straight", given)
  test = straight["test"]
  # The classnet reads the 72x72 (2x) canvas: each crop is twice the
  # Saccader's receptive field.
  side = 2 * trainer.job.model().grid_geometry(36, 36).receptive_field
  classnet = trainer.job.model("classnet")
  assert classnet.grid_geometry(72, 72).receptive_field == side
  assert test["count"] == 60 and test["top1"].shape == (5,)
  assert abs(test["coverage"][0] - (side / 72) ** 2) < 1e-6
  final = straight["variables"]
  assert_trees_equal(final["params"]["saccader"], given["model"]["params"])
  assert trees_differ(final["params"]["classifier"],
                      given["classifier"]["params"])
  config.checkpoint_every_steps = 2
  resumed = interrupt_and_resume(config, tmp_path / "resumed", monkeypatch,
                                 stream=1, batch=3, pretrained=given)
  assert_trees_equal(straight["variables"], resumed["variables"])
  with pytest.raises(errors.ConfigError, match="must train config.model"):
    train.Trainer.open(config, str(tmp_path / "none"))


@pytest.mark.slow
def test_resume_with_another_optimizer_keeps_the_model(tiny_config, tmp_path,
                                                       caplog):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = 2
  first = run_job(config, tmp_path)
  config.optimizer.name = "adamw"
  config.stages.representation.num_steps = 4
  before = tiny_config.optimizer.name
  with caplog.at_level("INFO"):
    trainer = train.Trainer.open(config, str(tmp_path))
    second = trainer.run()
  # One warning naming only what changed, and the start line the new
  # optimizer, resumed, with the schedule's rate at step 2.
  (warning,) = [r.getMessage() for r in caplog.records
                if "optimizer differs" in r.getMessage()]
  assert f"(name {before!r} -> 'adamw'): " in warning
  assert "optimizer state starts fresh" in warning
  schedule = representation_schedule(config)
  assert ("Stage representation: 4 steps (resuming at step 2), global batch "
          f"{config.batch_size} over 1 devices; optimizer adamw, "
          f"{config.schedule.name} schedule to peak learning rate "
          f"{config.stages.representation.learning_rate:g}, "
          f"{float(schedule(2)):.3g} at this step.") in caplog.text
  assert trees_differ(first["variables"]["params"],
                      second["variables"]["params"])
  # Then an optax optimizer outside the built-in seven, with arguments.
  config.optimizer.name = "lion"
  config.optimizer.kwargs = {"b1": 0.95, "weight_decay": 0.01}
  config.stages.representation.num_steps = 6
  caplog.clear()
  with caplog.at_level("INFO"):
    third = train.Trainer.open(config, str(tmp_path)).run()
  (warning,) = [r.getMessage() for r in caplog.records
                if "optimizer differs" in r.getMessage()]
  assert ("(kwargs {} -> {'b1': 0.95, 'weight_decay': 0.01}, name 'adamw' "
          "-> 'lion'): ") in warning
  assert ("Stage representation: 6 steps (resuming at step 4), global batch "
          f"{config.batch_size} over 1 devices; optimizer lion(b1=0.95, "
          "weight_decay=0.01), ") in caplog.text
  assert trees_differ(second["variables"]["params"],
                      third["variables"]["params"])
  # A finished stage is not compared: no warning when nothing will train.
  caplog.clear()
  config.optimizer.name = before
  config.optimizer.kwargs = {}
  with caplog.at_level("WARNING"):
    train.Trainer.open(config, str(tmp_path)).train()
  assert "optimizer differs" not in caplog.text


def representation_schedule(config):
  return stages.stage_optimizer(config, "representation",
                               config.stages.representation.num_steps)[1]


def test_checkpoint_of_another_model_names_the_parameter(tiny_config,
                                                         tmp_path):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = 1
  run_job(config, tmp_path)
  config.model.representation.what_channels = 12
  config.stages.representation.num_steps = 2
  # The workdir's recorded config refuses the run first
  # (tests/test_run_record.py); without it (a workdir from before runs were
  # recorded), the checkpoint itself does.
  with pytest.raises(errors.ConfigError, match="holds another run"):
    run_job(config, tmp_path)
  (tmp_path / "config.json").unlink()
  with pytest.raises(errors.JobError,
                     match=r"representation/lowd_(bn|conv)/.*different model.*"
                     r" Train this config in a new --workdir, or run this "
                     r"workdir with the config it was trained with\."):
    run_job(config, tmp_path)


@pytest.mark.slow
def test_partial_checkpoint_is_ignored_on_resume(tiny_config, tmp_path):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = 2
  run_job(config, tmp_path)
  stage_dir = tmp_path / "checkpoints" / "representation"
  # What a job killed while writing step 4 leaves behind.
  partial = stage_dir / "4.orbax-checkpoint-tmp-1234567890"
  (partial / "model").mkdir(parents=True)
  (partial / "model" / "garbage").write_text("half a checkpoint")
  config.stages.representation.num_steps = 3
  result = run_job(config, tmp_path)
  assert sorted(os.listdir(stage_dir)) == ["2", "3"]
  assert np.isfinite(result["test"]["top1"]).all()


def test_unwritable_workdir_fails_before_training(tiny_config, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(errors.WorkdirError, match="not writable"):
    run_job(tiny_config, blocker / "workdir")


def test_unknown_optimizer_fails_with_the_valid_names(tiny_config, tmp_path):
  config = tiny_config.copy_and_resolve_references()
  config.optimizer.name = "adagard"
  with pytest.raises(ValueError, match="neither a built-in optimizer.*close: \\['adagrad'"):
    run_job(config, tmp_path)


@pytest.mark.slow
def test_stage1_loss_decreases_on_the_embedded_data(embedded_data):
  config, builder = embedded_data  # the embedded default
  config = config.copy_and_resolve_references()
  config.schedule.name = "constant"
  assert builder.info.splits["train"].num_examples == 55000
  model = models.create_model(config.model)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)),
                         num_glimpses=1)
  state, step, *_ = stages.create_stage(config, "representation", model,
                                   variables, 48)
  step = jax.jit(step)
  batches = input_pipeline.train_batches(config.dataset, builder, 32, seed=0)
  losses = []
  for _ in range(48):
    state, metrics = step(state, next(batches), jax.random.key(0))
    losses.append(float(metrics["loss"]))
  first, last = np.mean(losses[:8]), np.mean(losses[-8:])
  assert last < first - 0.15, losses


@pytest.mark.slow
def test_nonfinite_step_is_skipped_or_reported(tiny_config,
                                               tiny_variables_and_batch):
  variables, batch = tiny_variables_and_batch
  poisoned = dict(batch, image=batch["image"].at[0, 0, 0, 0].set(jnp.nan))
  model = models.create_model(tiny_config.model)
  state, skipping, *_ = stages.create_stage(tiny_config, "policy", model,
                                       variables, 10, skip_nonfinite=True)
  skipping = jax.jit(skipping)
  skipped, metrics = skipping(state, poisoned, jax.random.key(0))
  assert float(metrics["nonfinite"]) == 1.0
  assert int(skipped.step) == 1
  assert_trees_equal(skipped.params, state.params)
  assert_trees_equal(skipped.opt_state, state.opt_state)
  assert_trees_equal(skipped.batch_stats, state.batch_stats)
  moved, metrics = skipping(skipped, batch, jax.random.key(0))
  assert float(metrics["nonfinite"]) == 0.0
  assert np.isfinite(float(metrics["grad_norm"]))
  assert trees_differ(moved.params, state.params)

  _, stopping, *_ = stages.create_stage(tiny_config, "policy", model, variables,
                                   10)
  stopping = jax.jit(stopping)
  _, metrics = stopping(state, poisoned, jax.random.key(0))
  fetched = jax.device_get([{"nonfinite": 0.0, "loss": 1.0, "grad_norm": 1.0},
                            metrics])
  with pytest.raises(errors.DivergenceError,
                     match=r"Stage 'policy' diverged at step 8: loss nan.*"
                     r"last finite checkpoint is DIR/6\."):
    loop.check_finite("policy", 7, fetched, lambda: "DIR/6")
  scalars = loop.interval_scalars("policy/train", fetched)
  assert scalars["policy/train/nonfinite_steps"] == 1.0
  assert scalars["policy/train/loss"] == 1.0  # the finite steps' mean


@pytest.mark.slow
def test_resume_reads_the_input_position_saved_with_the_checkpoint(
    tiny_config, tmp_path):
  config = tiny_config.copy_and_resolve_references()
  config.run_stages = ("representation",)
  config.stages.representation.num_steps = 2
  run_job(config, tmp_path)
  manager = checkpoints.create_manager(
      tmp_path / "checkpoints" / "representation", 1, read_only=True)
  meta = checkpoints.restore_meta(manager, 2)
  manager.close()
  assert meta["data_position"] == {"examples_per_host": 32,
                                   "process_count": 1}
  # Resumed with another batch size, the stream goes on where it stopped.
  config.batch_size = 8
  assert stage_start.input_position(2, meta["data_position"],
                                    config.batch_size) == 32
  # Saved by a job with another number of hosts: their streams differ.
  assert stage_start.input_position(
      2, {"examples_per_host": 32, "process_count": 2},
      config.batch_size) == 16
  assert stage_start.input_position(2, None, config.batch_size) == 16
