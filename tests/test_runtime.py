"""Process-level settings: XLA's CPU kernels and the host allocator."""

import os
import subprocess
import sys

import pytest

from saccader_jax import runtime


def test_cpu_ynn_fusions_flag(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  runtime.use_cpu_ynn_fusions("reduce,dot")
  assert os.environ["XLA_FLAGS"] == (
      "--xla_cpu_enable_fast_math=false "
      "--xla_cpu_experimental_ynn_fusion_type=reduce,dot")
  # A flag the user set already wins.
  runtime.use_cpu_ynn_fusions("dot,eltwise")
  assert os.environ["XLA_FLAGS"].endswith("=reduce,dot")
  monkeypatch.setenv("XLA_FLAGS", "")
  runtime.use_cpu_ynn_fusions("")
  assert not os.environ["XLA_FLAGS"]
  with pytest.raises(ValueError, match=r"\['conv'\].*valid: \('dot'"):
    runtime.use_cpu_ynn_fusions("dot,conv")


def test_auto_fusions_follow_the_cpu_features(monkeypatch):
  assert runtime.auto_cpu_ynn_fusions(frozenset({"avx2", "avx512f"})) == (
      "dot,reduce")
  assert runtime.auto_cpu_ynn_fusions(frozenset({"avx2", "fma"})) == ""
  assert runtime.auto_cpu_ynn_fusions(frozenset()) == ""
  monkeypatch.setenv("XLA_FLAGS", "")
  chosen = runtime.use_cpu_ynn_fusions("auto")
  assert chosen == runtime.auto_cpu_ynn_fusions()
  assert os.environ["XLA_FLAGS"] == (
      f"--xla_cpu_experimental_ynn_fusion_type={chosen}" if chosen else "")
  assert not runtime.unknown_ynn_fusion_kinds("auto")


def _allocator_after_reexec(env):
  code = ("import sys; from saccader_jax import runtime; "
          "runtime.reexec_with_tcmalloc(); "
          "print(runtime.loaded_allocator(), sys.argv[1:])")
  result = subprocess.run([sys.executable, "-c", code, "a", "--b=1"],
                          env=env, capture_output=True, text=True,
                          timeout=120, check=True)
  return result.stdout.strip()


@pytest.mark.skipif(runtime.find_tcmalloc() is None,
                    reason="tcmalloc is not installed (libtcmalloc-minimal4)")
def test_entry_points_restart_on_tcmalloc_with_their_arguments():
  env = {k: v for k, v in os.environ.items()
         if k not in ("LD_PRELOAD", runtime.MALLOC_ENV)}
  assert _allocator_after_reexec(env) == "tcmalloc ['a', '--b=1']"
  assert _allocator_after_reexec(
      dict(env, **{runtime.MALLOC_ENV: "system"})) == "glibc ['a', '--b=1']"
