"""Fail fast: every config problem is found before data or a model is built,
each as one line naming the field, its value and what is valid."""

import os
import subprocess
import sys

import pytest

from tests.helpers import tiny_train_config
from saccader_jax import config_checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def config(tmp_path):
  # No data is written: checking must not need it.
  return tiny_train_config(str(tmp_path), source_dir=str(tmp_path / "none"))


def problems(config, **kwargs):
  return config_checks.config_problems(config, **kwargs)


def test_the_test_and_embedded_configs_are_valid(config):
  from configs import fashion_mnist_parts_quick_saccader  # pylint: disable=g-import-not-at-top
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  from configs import imagenet_saccader  # pylint: disable=g-import-not-at-top
  assert problems(config) == []
  assert problems(fashion_mnist_whole_items_saccader.get_config()) == []
  assert problems(fashion_mnist_parts_quick_saccader.get_config()) == []
  assert problems(imagenet_saccader.get_config(), num_devices=8,
                  num_processes=2) == []


@pytest.mark.parametrize("field, value, expected", [
    # The tiny config's model sees 36x36 images as a 5x5 grid (25 locations).
    ("eval_glimpses", 26, "config.eval_glimpses=26: must be an integer in "
     "[1, 25] (the locations of the 5x5 grid of a 36x36 image"),
    ("eval_glimpses", 0, "config.eval_glimpses=0: must be an integer in [1, 25]"),
    ("stages.location.num_glimpses", 200,
     "config.stages.location.num_glimpses=200: must be an integer in [1, 25]"),
    ("stages.policy.num_glimpses", 2.5,
     "config.stages.policy.num_glimpses=2.5: must be an integer in [1, 25]"),
    ("run_stages", ("representation", "polcy"),
     "config.run_stages=('representation', 'polcy'): 'polcy' is not a stage; "
     "valid: ['classifier', 'classnet', 'dram', 'location', 'policy', 'representation']"),
    ("run_stages", (), "config.run_stages=(): must be a non-empty tuple"),
    ("run_stages", ("policy", "policy"), "names a stage twice"),
    ("dataset.name", "mnist", "config.dataset.name='mnist': must be one of "
     "['cluttered_fashion_mnist', 'image_folder', 'imagenet2012', 'tfds']"),
    ("model.name", "vit", "config.model.name='vit': must be one of ['dram', 'resnet_v2', 'saccader', 'saccader_classnet']"),
    ("model.dtype", "float16", "config.model.dtype='float16': must be one of "
     "['bfloat16', 'float32']"),
    ("model.representation.projection_norm", "main",
     "config.model.representation.projection_norm='main': must be one of "
     "['main_branch', 'shortcut']"),
    ("optimizer.name", "adagard", "config.optimizer.name='adagard': neither a "
     "built-in optimizer ['adam', 'adamw', 'lamb', 'lars', 'momentum', 'sgd', "
     "'sgd_nesterov'] nor an optax factory (optax.<name>, "
     "optax.contrib.<name>); close: ['adagrad', 'adafactor', 'adamax']"),
    ("optimizer.kwargs", {"b1": 0.9}, "config.optimizer.kwargs={'b1': 0.9}: "
     "the built-in 'sgd_nesterov' reads optimizer.momentum, b1, b2, eps, "
     "weight_decay, nesterov and trust_coefficient; kwargs are the arguments "
     "of an optax factory"),
    ("schedule.name", "linear", "config.schedule.name='linear': must be one of "
     "['constant', 'step', 'warmup_cosine']"),
    ("batch_size", 0, "config.batch_size=0: must be an integer >= 1"),
    ("eval_batch_size", -4, "config.eval_batch_size=-4: must be an integer >= 1"),
    ("dataset.image_size", 16, "config.dataset.image_size=16: must be at least "
     "the receptive field of the model, 17 pixels"),
    ("stages.location.reading", "book", "config.stages.location.reading='book': "
     "must be one of ['code', 'code_teacher_forced', 'paper']"),
    ("stages.policy.reinforce_reduction", "avg",
     "config.stages.policy.reinforce_reduction='avg': must be one of "
     "['mean', 'sum']"),
    ("stages.representation.l2_mode", "l1",
     "config.stages.representation.l2_mode='l1': must be one of "
     "['none', 'normalized', 'plain']"),
    ("stages.representation.learning_rate", float("nan"),
     "config.stages.representation.learning_rate=nan: must be a finite number "
     "> 0.0"),
    ("stages.policy.learning_rate", 0.0, "must be a finite number > 0.0"),
    ("stages.location.num_steps", -1,
     "config.stages.location.num_steps=-1: must be an integer >= 0"),
    ("stages.policy.num_trajectories", 0,
     "config.stages.policy.num_trajectories=0: must be an integer >= 1"),
    ("log_every_steps", 0, "config.log_every_steps=0: must be an integer >= 1"),
    ("keep_checkpoints", 0, "config.keep_checkpoints=0: must be an integer >= 1"),
    ("on_nonfinite", "ignore", "config.on_nonfinite='ignore': must be one of "
     "['skip', 'stop']"),
    ("cpu_ynn_fusions", "dot,conv", "config.cpu_ynn_fusions='dot,conv': must be "
     "'auto' or a comma-separated subset of ['dot', 'eltwise', 'reduce']"),
    ("eval_chunk_size", -1, "config.eval_chunk_size=-1: must be 'auto' or an "
     "integer >= 0"),
    ("test_baselines", ("ordered_logit",),
     "config.test_baselines=('ordered_logit',): 'ordered_logit' is not a "
     "baseline; valid: ['ordered_logits', "),
    ("test_baselines", "random",
     "config.test_baselines='random': must be a tuple of baseline names"),
    ("test_baselines", ("random", "random"), "names a baseline twice"),
])
def test_each_bad_field_is_one_line_naming_it(config, field, value, expected):
  *parents, name = field.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  with node.ignore_type():
    node[name] = value
  found = problems(config)
  assert len(found) == 1, found
  assert expected in found[0], found[0]
  assert "\n" not in found[0]


def test_baselines_on_test_need_the_stage_that_trains_their_bagnet(config):
  config.test_baselines = ("ordered_logits",)
  assert problems(config) == []
  config.run_stages = ("location", "policy")
  found = [line for line in problems(config) if "test_baselines" in line]
  assert len(found) == 1 and "'representation' in config.run_stages" in (
      found[0]), found


def test_a_config_without_a_data_set_or_model_is_named_as_such():
  from configs import default  # pylint: disable=g-import-not-at-top
  assert problems(default.get_config()) == [
      f"config.{name}: missing; a job's config needs this section (start from "
      "a data set config such as configs/fashion_mnist_whole_items_saccader.py)."
      for name in ("dataset", "model")]


def test_a_stage_needs_a_length(config):
  config.stages.location.num_steps = 0
  config.stages.location.num_epochs = 0.0
  assert problems(config) == [
      "config.stages.location.num_steps=0: or "
      "config.stages.location.num_epochs must be positive."]


def test_batch_sizes_must_split_over_the_devices(config):
  config.batch_size = 12
  found = problems(config, num_devices=8)
  assert found == ["config.batch_size=12: must be divisible by the 8 devices "
                   "of 1 process(es); e.g. 8."]
  config.batch_size = 16
  config.eval_batch_size = 32
  assert problems(config, num_devices=8) == []
  assert problems(config, num_devices=4, num_processes=2) == []


def test_only_the_stages_that_run_are_checked(config):
  config.run_stages = ("representation",)
  config.stages.policy.num_glimpses = 1000
  assert problems(config) == []


def test_all_problems_are_reported_at_once(config):
  config.eval_glimpses = 100
  config.optimizer.name = "adagard"
  config.stages.location.reading = "book"
  with pytest.raises(config_checks.ConfigError) as error:
    config_checks.check_config(config)
  assert len(error.value.problems) == 3
  assert isinstance(error.value, ValueError)


def run_main(workdir, *overrides, data_dir=None, timeout=300):
  config = "configs/fashion_mnist_whole_items_saccader.py"
  if data_dir is not None:
    config = f"tests/tiny_config.py:{data_dir}"
  return subprocess.run(
      [sys.executable, "-m", "saccader_jax.main", f"--config={config}",
       f"--workdir={workdir}", *overrides],
      cwd=ROOT, capture_output=True, text=True, timeout=timeout,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


# The three config errors that used to train stage 1 first (or not
# fail at all), on the embedded config, as a user would type them.
@pytest.mark.parametrize("override, message", [
    ("--config.eval_glimpses=100",
     "Config error: config.eval_glimpses=100: must be an integer in [1, 81] "
     "(the locations of the 9x9 grid of a 64x64 image"),
    ("--config.stages.location.num_glimpses=200",
     "Config error: config.stages.location.num_glimpses=200: must be an "
     "integer in [1, 81]"),
    ("--config.run_stages=('representation','polcy')",
     "Config error: config.run_stages=('representation', 'polcy'): 'polcy' is "
     "not a stage"),
])
def test_main_fails_fast_on_config_errors(tmp_path, override, message):
  workdir = tmp_path / "workdir"
  result = run_main(workdir, override,
                    "--config.dataset.data_dir=" + str(tmp_path / "tfds"))
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr
  lines = [l for l in result.stderr.splitlines() if "Config error" in l]
  assert len(lines) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  # Nothing was built or trained: no data set, no workdir.
  assert not (tmp_path / "tfds").exists()
  assert not workdir.exists()


def test_main_lists_every_config_error_at_once(tmp_path):
  workdir = tmp_path / "workdir"
  result = run_main(
      workdir, "--config.dataset.data_dir=" + str(tmp_path / "tfds"),
      "--config.eval_glimpses=0", "--config.batch_size=0",
      "--config.optimizer.name=adagard", "--config.schedule.name=linear",
      "--config.model.dtype=float16", "--config.dataset.image_size=20",
      "--config.stages.location.reading=book",
      "--config.stages.policy.reinforce_reduction=avg",
      "--config.stages.representation.l2_mode=l1",
      "--config.stages.policy.learning_rate=-0.5",
      "--config.stages.location.num_steps=-3",
      "--config.on_nonfinite=ignore")
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.splitlines()
           if l.startswith("Config error: ")]
  fields = ["eval_glimpses=0", "batch_size=0", "optimizer.name='adagard'",
            "schedule.name='linear'", "model.dtype='float16'",
            "dataset.image_size=20", "stages.location.reading='book'",
            "stages.policy.reinforce_reduction='avg'",
            "stages.representation.l2_mode='l1'",
            "stages.policy.learning_rate=-0.5",
            "stages.location.num_steps=-3", "on_nonfinite='ignore'"]
  assert len(lines) == len(fields), lines
  for field in fields:
    assert any(l.startswith(f"Config error: config.{field}: ") for l in lines), (
        field, lines)
  assert "Traceback" not in result.stderr
  assert not workdir.exists() and not (tmp_path / "tfds").exists()


def test_dram_and_classnet_configs_are_checked(config):
  from configs import fashion_mnist_dram  # pylint: disable=g-import-not-at-top
  from configs import imagenet_dram  # pylint: disable=g-import-not-at-top
  assert problems(fashion_mnist_dram.get_config()) == []
  assert problems(imagenet_dram.get_config(), num_devices=8) == []
  config.run_stages = ("dram",)
  config.stages.dram.num_glimpses = 500     # DRAM has no grid to exhaust
  config.dram.glimpse_size = 40             # the canvas is 36x36
  assert problems(config) == ["config.dram.glimpse_size=40: must be at most "
                              "dataset.image_size (36)."]
  config.dram.glimpse_size = 15
  config.run_stages = ("representation", "classifier", "classnet")
  assert problems(config) == []
  assert problems(config.copy_and_resolve_references()) == []
  config.classnet.saccader = config.model.copy_and_resolve_references()
  config.classnet.saccader.mixed_channels = 4
  found = problems(config)
  assert len(found) == 1 and found[0].startswith("config.classnet.saccader")
  assert "must equal config.model" in found[0]
  config.classnet.saccader = config.model
  config.run_stages = ("classifier", "classnet")
  assert problems(config) == [
      "config.run_stages=('classifier', 'classnet'): must train config.model "
      "before 'classnet', which starts its 'saccader' from it."]
  assert problems(config, pretrained_fields=("model",)) == []


def test_a_config_recorded_before_a_stage_field_existed_still_checks():
  """A field with a default (stages.location.target_ranking) may be absent:
  workdirs recorded before it existed load and run as they did."""
  from configs import fashion_mnist_parts_saccader  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_parts_saccader.get_config()
  with config.stages.location.unlocked():
    del config.stages.location["target_ranking"]
  assert config_checks.config_problems(config) == []
  config.stages.location.target_ranking = "best"
  assert config_checks.config_problems(config) == [
      "config.stages.location.target_ranking='best': must be one of "
      "['predicted_probability_beyond_paper', 'reading']."]
