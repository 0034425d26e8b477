"""No dead config keys: every key of every configs/*.py is read somewhere.

A key is read when the package or the experiments name it: as an attribute
(`config.key`) or as a string (`config.get("key")`, `config["key"]`, or a
field name a registry lists, such as a Stage's `weight_fields`). A key whose
name appears nowhere is one nothing reads, which a reader of the config
would take for a setting.
"""

import glob
import importlib
import os
import re

import ml_collections
import pytest

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


def config_keys(config: ml_collections.ConfigDict, prefix: str = ""):
  """(dotted path, key) of every key, nested ConfigDicts included."""
  for key, value in config.items():
    path = f"{prefix}{key}"
    yield path, key
    if isinstance(value, ml_collections.ConfigDict):
      yield from config_keys(value, path + ".")


def unread_keys(config: ml_collections.ConfigDict, corpus: str) -> list[str]:
  return [path for path, key in config_keys(config)
          if not re.search(rf"(\.{re.escape(key)}\b|[\"']{re.escape(key)}"
                           rf"[\"'])", corpus)]


@pytest.fixture(scope="module")
def corpus():
  return code_corpus()


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_key_is_read(name, corpus):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert not unread_keys(config, corpus), (
      f"configs/{name}.py has keys nothing reads")


def test_a_key_nothing_reads_is_found(corpus):
  config = importlib.import_module("configs.fashion_mnist_saccader"
                                   ).get_config()
  config.stages.policy.reinforce_warmup_steps = 10
  config.dataset.nmae = "x"
  assert unread_keys(config, corpus) == [
      "dataset.nmae", "stages.policy.reinforce_warmup_steps"]
  assert len(CONFIGS) >= 6
