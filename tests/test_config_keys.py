"""One list of config keys (saccader_jax/config_keys.py) serves two checks.

- No dead keys: every key the registries declare is read by the package or
  the experiments, as an attribute (`config.key`) or by name
  (`config.get("key")`, `config["key"]`). A declaration alone (the key as a
  string in a tuple) is not a read.
- No unknown keys: every configs/*.py has only declared keys, and a key
  outside the lists is rejected by `check_config` with the nearest valid one.
"""

import glob
import importlib
import os
import re

import pytest

from saccader_jax import config_checks
from saccader_jax import config_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs",
                                                             "*.py"))
    if not p.endswith("__init__.py"))


def code_corpus() -> str:
  paths = (glob.glob(os.path.join(ROOT, "saccader_jax", "**", "*.py"),
                     recursive=True)
           + glob.glob(os.path.join(ROOT, "experiments", "*.py")))
  return "\n".join(open(p).read() for p in paths)


def is_read(key: str, corpus: str) -> bool:
  k = re.escape(key)
  return re.search(rf"(\.{k}\b|\.get\(\s*[\"']{k}[\"']|\[\s*[\"']{k}[\"']\s*\])",
                   corpus) is not None


@pytest.fixture(scope="module")
def corpus():
  return code_corpus()


def test_every_declared_key_is_read(corpus):
  keys = config_keys.all_keys()
  assert len(keys) > 80
  assert not sorted(k for k in keys if not is_read(k, corpus))


def test_a_key_only_declared_is_not_read(corpus):
  assert not is_read("reinforce_warmup_steps", corpus)
  # Declared as strings in tuples and read as attributes.
  assert is_read("trust_coefficient", corpus)
  assert is_read("num_images", corpus)


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_have_only_declared_keys(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert config_keys.unknown_keys(config) == []


def test_an_unknown_key_is_rejected_with_the_nearest(tiny_config):
  config = tiny_config
  config.optimizer.nmae = "adamw"
  config.stages.polcy = {"num_steps": 3}
  config.model.representation.plnes = (4, 8, 8)
  config.evals.glimpses.num_imgs = 2
  config.dataset.itme_size = 40
  config.stages.policy.entropy_bonus = 0.1
  config.zzz_unrelated = 1
  with pytest.raises(config_checks.ConfigError) as raised:
    config_checks.check_config(config)
  lines = str(raised.value).splitlines()
  expected = [
      ("optimizer.nmae", "optimizer.name"),
      ("stages.polcy", "stages.policy"),
      ("model.representation.plnes", "model.representation.planes"),
      ("evals.glimpses.num_imgs", "evals.glimpses.num_images"),
      ("dataset.itme_size", "dataset.item_size"),
      ("stages.policy.entropy_bonus", None),
      ("zzz_unrelated", None)]
  for path, nearest in expected:
    line = next(l for l in lines if l.startswith(f"config.{path}:"))
    assert "no such key" in line
    assert (f"the nearest is config.{nearest}." in line if nearest
            else "nearest" not in line), line
  # The classnet's Saccader is the model itself (one ConfigDict): its
  # misspelt key is found there too.
  assert sum("representation.plnes" in l for l in lines) >= 1


def test_a_model_section_is_checked_by_its_own_name(tiny_config):
  config = tiny_config
  config.dram.glimpse_size = 9     # a DRAM key: valid in config.dram
  config.classifier.glimpse_size = 9   # not a ResNet's
  found = dict(config_keys.unknown_keys(config))
  assert "dram.glimpse_size" not in found
  assert "classifier.glimpse_size" in found
