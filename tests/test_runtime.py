"""Process-level settings: XLA's CPU kernels and the host allocator."""

import os
import subprocess
import sys

import numpy as np
import pytest

from saccader_jax import allocator
from saccader_jax import cpu_kernels
from tests.helpers import TEST_XLA_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cpu_ynn_fusions_flag(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  cpu_kernels.use_cpu_ynn_fusions("reduce,dot")
  assert os.environ["XLA_FLAGS"] == (
      "--xla_cpu_enable_fast_math=false "
      "--xla_cpu_experimental_ynn_fusion_type=reduce,dot")
  # A flag the user set already wins.
  cpu_kernels.use_cpu_ynn_fusions("dot,eltwise")
  assert os.environ["XLA_FLAGS"].endswith("=reduce,dot")
  monkeypatch.setenv("XLA_FLAGS", "")
  cpu_kernels.use_cpu_ynn_fusions("")
  assert not os.environ["XLA_FLAGS"]
  with pytest.raises(ValueError, match=r"\['conv'\].*valid: \('dot'"):
    cpu_kernels.use_cpu_ynn_fusions("dot,conv")


def test_auto_fusions_follow_the_measured_cpu_classes():
  classes = {"avx512_amx": {"avx2", "fma", "avx512f", "amx_tile"},
             "avx512": {"avx2", "fma", "avx512f"},
             "avx2": {"avx2", "fma"}, "other": {"sse4_2"}}
  for name, flags in classes.items():
    assert cpu_kernels.cpu_class(frozenset(flags)) == name
  # "dot,reduce" measured fastest on every x86 class (cpu_kernels.AUTO_CHOICES);
  # CPUs without AVX2 (and non-x86 ones, which have no x86 flags) keep
  # XLA's own kernels.
  for flags in classes["avx512_amx"], classes["avx512"], classes["avx2"]:
    assert cpu_kernels.auto_cpu_ynn_fusions(frozenset(flags)) == "dot,reduce"
  assert cpu_kernels.auto_cpu_ynn_fusions(frozenset({"sse4_2"})) == ""
  assert cpu_kernels.auto_cpu_ynn_fusions(frozenset()) == ""
  assert not cpu_kernels.unknown_ynn_fusion_kinds("auto")
  for choice in cpu_kernels.AUTO_CHOICES.values():
    assert not cpu_kernels.unknown_ynn_fusion_kinds(choice)


def test_auto_falls_back_to_xla_kernels_when_the_probe_fails(
    monkeypatch, tmp_path, caplog):
  monkeypatch.setenv(cpu_kernels.PROBE_CACHE_ENV, str(tmp_path))
  monkeypatch.setattr(cpu_kernels, "auto_cpu_ynn_fusions", lambda: "dot,reduce")
  # A probe whose process aborts, as an XLA that does not know the flag does.
  monkeypatch.setattr(cpu_kernels, "_PROBE",
                      "import os, sys; sys.stderr.write('Unknown flag in "
                      "XLA_FLAGS\\n'); os.abort()")
  monkeypatch.setenv("XLA_FLAGS", "")
  with caplog.at_level("WARNING"):
    assert cpu_kernels.use_cpu_ynn_fusions("auto") == ""
  assert os.environ["XLA_FLAGS"] == ""
  assert "Unknown flag in XLA_FLAGS" in caplog.text
  assert "using XLA's own CPU kernels" in caplog.text
  # The verdict is cached per machine: no second probe.
  monkeypatch.setattr(cpu_kernels, "_PROBE", "raise SystemExit(3)")
  cached = cpu_kernels.probe_ynn_fusions("dot,reduce")
  assert "Unknown flag in XLA_FLAGS" in cached
  # A setting asked for by name is not probed: the user gets what they set.
  assert cpu_kernels.use_cpu_ynn_fusions("dot") == "dot"


@pytest.mark.slow
def test_auto_resolves_to_an_accepted_setting_that_trains(tmp_path):
  """On the machine the suite runs on: "auto" resolves (probe included) to
  known kinds, and one step of every stage trains with a finite loss that
  equals XLA's own kernels' up to float32 reordering."""
  out = {}
  for fusions in ("auto", ""):
    path = tmp_path / f"{fusions or 'none'}.npz"
    # The suite's compile settings alone: no YNNPACK flag that "auto" would
    # leave in place.
    env = dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS)
    env[cpu_kernels.PROBE_CACHE_ENV] = str(tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "tests.one_train_step",
                    f"--out={path}", f"--cpu_ynn_fusions={fusions}"],
                   env=env, check=True, timeout=600)
    out[fusions] = np.load(path)
  resolved = str(out["auto"]["cpu_ynn_fusions"])
  assert resolved in ("", cpu_kernels.auto_cpu_ynn_fusions())
  assert not cpu_kernels.unknown_ynn_fusion_kinds(resolved)
  for stage in ("representation", "location", "policy"):
    loss = float(out["auto"][f"{stage}/loss"])
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, float(out[""][f"{stage}/loss"]),
                               rtol=1e-4)


def _env_without_allocator_choice():
  """This process's environment, less a preload or an allocator setting
  that would keep an entry point from restarting on tcmalloc."""
  return {k: v for k, v in os.environ.items()
          if k not in ("LD_PRELOAD", allocator.MALLOC_ENV)}


def _allocator_after_reexec(env):
  code = ("import sys; from saccader_jax import allocator; "
          "allocator.reexec_with_tcmalloc(); "
          "print(allocator.loaded_allocator(), sys.argv[1:])")
  result = subprocess.run([sys.executable, "-c", code, "a", "--b=1"],
                          env=env, capture_output=True, text=True,
                          timeout=120, check=True)
  return result.stdout.strip()


@pytest.mark.skipif(allocator.find_tcmalloc() is None,
                    reason="tcmalloc is not installed (libtcmalloc-minimal4)")
def test_entry_points_restart_on_tcmalloc_with_their_arguments():
  env = _env_without_allocator_choice()
  assert _allocator_after_reexec(env) == "tcmalloc ['a', '--b=1']"
  assert _allocator_after_reexec(
      dict(env, **{allocator.MALLOC_ENV: "system"})) == "glibc ['a', '--b=1']"


def _imports(module):
  """The top-level modules a `python -m module --help` imported, in order,
  over the process and its restart (-X importtime lines on stderr)."""
  result = subprocess.run([sys.executable, "-X", "importtime", "-m", module,
                           "--help"], env=_env_without_allocator_choice(), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
  return [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
          if line.startswith("import time:") and "|" in line]


@pytest.mark.skipif(allocator.find_tcmalloc() is None,
                    reason="tcmalloc is not installed (libtcmalloc-minimal4)")
@pytest.mark.parametrize("module", ["saccader_jax.main",
                                    "experiments.paper_figures"])
def test_entry_points_restart_before_jax_loads(module):
  # Whatever loads before the restart loads twice: JAX alone costs seconds.
  imports = _imports(module)
  package = module.split(".")[0]   # each process imports it first
  assert imports.count(package) == 2, imports  # restarted
  assert imports.count("jax") == 1, imports
  assert imports.index("jax") > max(
      i for i, name in enumerate(imports) if name == package)


def test_the_package_loads_its_public_names_on_first_use():
  code = ("import sys, saccader_jax; "
          "print(sorted(m for m in ('jax', 'tensorflow') if m in sys.modules)); "
          "print(saccader_jax.make_policy.__module__, "
          "'make_policy' in dir(saccader_jax)); "
          "print(saccader_jax.run_record.load_config is "
          "saccader_jax.load_config)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=300, check=True, cwd=ROOT)
  # Submodules too load on first use, as attributes of the package.
  assert result.stdout.split("\n")[:3] == ["[]", "saccader_jax.policy True",
                                            "True"]
  import saccader_jax  # pylint: disable=g-import-not-at-top
  with pytest.raises(AttributeError, match="no attribute 'make_polcy'"):
    getattr(saccader_jax, "make_polcy")
