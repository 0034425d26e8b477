"""Shared fixtures: small Saccader variants that run in seconds on a CPU."""

import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import pytest

from saccader_jax import models
from tests.helpers import narrow_model_config
from tests.helpers import TEST_XLA_FLAGS
from tests.helpers import tiny_train_config
from tests.helpers import with_unit_bn_scales
from tests.helpers import xla_flags_with


_CACHE_SETTINGS = {
    "jax_compilation_cache_dir": None,   # set per session
    "jax_persistent_cache_min_compile_time_secs": 0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


def pytest_configure(config):
  """One persistent XLA compilation cache for the session and the scripts
  it launches. The tests compile the same small programs again and again (a
  job and its resumed run, a second trainer, every subprocess), and on a
  2-core CPU compiling is most of their time; a hit is bit-identical to a
  fresh compile. pytest-xdist workers inherit the controller's directory
  (and XLA flags) through the environment."""
  del config
  if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = xla_flags_with(TEST_XLA_FLAGS)
  cache = tempfile.mkdtemp(prefix="saccader_jax_test_xla_cache_")
  settings = dict(_CACHE_SETTINGS, jax_compilation_cache_dir=cache)
  for name, value in settings.items():
    os.environ.setdefault(name.upper(), str(value))   # subprocesses
    jax.config.update(name, os.environ[name.upper()] if name.endswith("dir")
                      else int(os.environ[name.upper()]))


def pytest_unconfigure(config):
  if hasattr(config, "workerinput"):
    return   # a pytest-xdist worker: the controller made the cache, and removes it
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
  if os.path.basename(cache).startswith("saccader_jax_test_xla_cache_"):
    shutil.rmtree(cache, ignore_errors=True)


# Modules whose tests are independent enough to run on different pytest-xdist
# workers; every other module's tests share one worker (and its
# module-scoped fixtures).
_SPLIT_MODULES = ("test_benchmarks", "test_main_errors", "test_preemption",
                  "test_readme", "test_runtime", "test_sharding", "test_train")
# Session fixtures that take a minute to build: the tests that use one share
# a worker, which builds it once.
_SHARED_FIXTURES = ("embedded_data", "finished_tiny_workdir")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Slow tests first, so that under pytest-xdist (`-n 2 --dist loadgroup
  --no-loadscope-reorder`) the long ones start early and short ones fill
  the end. Each test joins the xdist group of the costly session fixture it
  uses, else its module's, unless its module is split."""
  del config
  for item in items:
    module = item.module.__name__.rsplit(".", 1)[-1]
    shared = [f for f in _SHARED_FIXTURES if f in item.fixturenames]
    group = (shared[0] if shared else
             item.nodeid if module in _SPLIT_MODULES else module)
    item.add_marker(pytest.mark.xdist_group(group))
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def narrow_config():
  return narrow_model_config()


@pytest.fixture(scope="session")
def narrow_model(narrow_config):
  return models.create_model(narrow_config)


@pytest.fixture(scope="session")
def narrow_variables(narrow_model):
  images = jnp.zeros((1, 93, 93, 3))
  variables = jax.jit(lambda key: narrow_model.init(key, images,
                                                    num_glimpses=1))(
                                                        jax.random.key(0))
  return {"params": with_unit_bn_scales(variables["params"]),
          "batch_stats": variables["batch_stats"]}


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The tiny config's fake data, generated once for the session; jobs in
  subprocesses read it through --config=tests/tiny_config.py:DIR."""
  directory = str(tmp_path_factory.mktemp("tiny_data"))
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  input_pipeline.get_builder(tiny_train_config(directory).dataset)
  return directory


@pytest.fixture
def tiny_config(tiny_data_dir):
  """A fresh tiny training config (`helpers.tiny_train_config`) on the
  session's tiny data."""
  return tiny_train_config(tiny_data_dir)


@pytest.fixture(scope="session")
def finished_tiny_workdir(tiny_data_dir, tmp_path_factory):
  """(workdir, result of `Trainer.run`): the tiny config's three stages,
  trained once for the session. Tests only read it."""
  from saccader_jax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("finished_tiny") / "workdir"
  config = tiny_train_config(tiny_data_dir)
  config.eval_at_stage_end = False   # no test reads dev results
  result = train.Trainer.open(config, str(workdir)).run()
  return workdir, result


@pytest.fixture(scope="session")
def fashion_mnist_files():
  """The real Fashion-MNIST IDX files ({name: path}, see
  `cluttered_fashion_mnist.find_source_files`). Skips without them, except in
  CI, which installs them."""
  from saccader_jax.data import cluttered_fashion_mnist as cfm  # pylint: disable=g-import-not-at-top
  files = cfm.find_source_files(None)
  if files is None:
    message = ("Fashion-MNIST IDX files missing: apt-get install -y "
               "dataset-fashion-mnist")
    if os.environ.get("CI"):
      pytest.fail(message)
    pytest.skip(message)
  return files


@pytest.fixture(scope="session")
def embedded_data(tmp_path_factory, fashion_mnist_files):
  """(config, builder) of the embedded default on the real Fashion-MNIST
  files, generated once per session."""
  del fashion_mnist_files   # skips (or fails in CI) without the files
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_whole_items_saccader.get_config()
  config.dataset.data_dir = str(tmp_path_factory.mktemp("embedded"))
  return config, input_pipeline.get_builder(config.dataset)


@pytest.fixture()
def gcs(tmp_path, monkeypatch):
  """gs://<bucket>/<name> is tmp_path/gcs/<bucket>/<name> for every library
  (tests/fake_gcs.py; see tests/test_cloud_workdir.py)."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  from etils.epath import gpath  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tests.fake_gcs import FakeGcs  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "gcs")
  os.makedirs(root)

  def local(path):
    path = os.fspath(path)
    return root + "/" + path[5:] if path.startswith("gs://") else path

  def remote(path):
    path = os.fspath(path)
    return "gs://" + path[len(root) + 1:] if path.startswith(root + "/") else path

  def one_path(fn, path, *args, **kwargs):
    return fn(local(path), *args, **kwargs)

  def two_paths(fn, src, dst, *args, **kwargs):
    return fn(local(src), local(dst), *args, **kwargs)

  def glob(fn, pattern):
    return [remote(p) for p in fn(local(pattern))]

  def walk(fn, top, **kwargs):
    for directory, dirs, files in fn(local(top), **kwargs):
      yield remote(directory), dirs, files

  create_file_writer = tf.summary.create_file_writer
  monkeypatch.setattr(tf.summary, "create_file_writer",
                      lambda logdir, *a, **k: create_file_writer(
                          local(logdir), *a, **k))
  # With TensorFlow installed, epath sends gs:// to TensorFlow's GCS client
  # before consulting the (mocked) backends.
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  with FakeGcs(root) as server:
    monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", server.url)
    monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "offline")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    with epath.testing.mock_epath(
        open=one_path, exists=one_path, isdir=one_path, listdir=one_path,
        makedirs=one_path, mkdir=one_path, remove=one_path, rmtree=one_path,
        stat=one_path, rename=two_paths, replace=two_paths, copy=two_paths,
        glob=glob, walk=walk):
      yield root
