"""Process-level XLA settings."""

import os

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
