"""XLA's CPU kernels: which YNNPACK fusions a job asks for, by CPU class.

Applied before the first computation (XLA reads its flags when the backend
starts). Needs only the standard library, so entry points can use it before
JAX loads.
"""

import json
import logging
import os
import subprocess
import sys
from typing import Optional

# XLA's CPU backend can hand fusions of these kinds to its YNNPACK kernels
# (results equal up to float32 reordering; ignored on GPU and TPU). Which kinds
# pay off depends on the model and the CPU; "auto" picks by the CPU's class
# (`AUTO_CHOICES`), checked once per machine by a probe. "" keeps XLA's
# default kernels.
AUTO = "auto"
DEFAULT_CPU_YNN_FUSIONS = AUTO
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_KINDS = ("dot", "eltwise", "reduce")


def cpu_info(field: str) -> Optional[str]:
  """A field of the first CPU in /proc/cpuinfo ("model name", "flags"), or
  None where there is no such file or field."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        name, _, value = line.partition(":")
        if name.strip() == field:
          return value.strip()
  except OSError:
    pass
  return None


def cpu_flags() -> frozenset[str]:
  """The x86 feature flags of this machine's CPU (empty elsewhere)."""
  return frozenset((cpu_info("flags") or "").split())


def cpu_class(flags: Optional[frozenset[str]] = None) -> str:
  """The CPU class the project's measurements separate, from x86 flags:
  "avx512_amx" (Sapphire Rapids-class), "avx512" (Cascade Lake-class, or a
  newer Xeon whose VM hides AMX), "avx2" (e.g. AMD EPYC Rome/Milan), or
  "other" (older x86, and every non-x86 CPU, which /proc/cpuinfo gives no
  x86 flags)."""
  flags = cpu_flags() if flags is None else flags
  if "avx512f" in flags:
    return "avx512_amx" if "amx_tile" in flags else "avx512"
  return "avx2" if "avx2" in flags else "other"


# What "auto" stands for, per CPU class. Stage-1 ImageNet step (BagNet-77,
# batch 8, 224 px; `experiments/benchmark_train.py`), ms/step, 2 cores, one
# process per setting:
#
#   class (CPU measured)                      ""      dot,reduce  dot,eltwise,reduce
#   avx512_amx (Sapphire Rapids-class Xeon)  6,027    3,841        3,891
#   avx512_amx (Xeon, cpuinfo model 167)     5,707    4,215        -
#   avx512     (Xeon model 207, AMX hidden)  8,854    5,748        7,424
#   avx2       (AMD EPYC, no AVX-512)       14,251    9,065       10,086
#
# "dot,reduce" is fastest on every class measured; "dot,eltwise,reduce"
# loses on the wide high-resolution activations of the first groups, where
# XLA's own elementwise loops beat the YNNPACK ones. CPUs without AVX2 are
# unmeasured and keep XLA's own kernels.
AUTO_CHOICES = {"avx512_amx": "dot,reduce", "avx512": "dot,reduce",
                "avx2": "dot,reduce", "other": ""}


def auto_cpu_ynn_fusions(flags: Optional[frozenset[str]] = None) -> str:
  """The YNNPACK fusion kinds "auto" stands for on a CPU with these flags
  (`AUTO_CHOICES` by `cpu_class`), before the probe (`probe_ynn_fusions`)."""
  return AUTO_CHOICES[cpu_class(flags)]


# A few convolutions, a matmul and reductions under the flag in a fresh
# process, checked against NumPy: an XLA that does not know the flag aborts
# the process, and a kernel that fails on this CPU crashes or miscomputes;
# either way the parent only sees a failed probe.
_PROBE = """
import numpy as np, jax, jax.numpy as jnp
rng = np.random.default_rng(0)
x = rng.normal(size=(2, 12, 12, 8)).astype(np.float32)
k = rng.normal(size=(3, 3, 8, 16)).astype(np.float32)
w = rng.normal(size=(16, 5)).astype(np.float32)
def f(x, k, w):
  y = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = jax.nn.relu(y)
  return jnp.mean(y, axis=(1, 2)) @ w, jnp.sum(y * y)
got = jax.jit(f)(x, k, w)
cols = np.stack([x[:, i:i + 10, j:j + 10] for i in range(3) for j in range(3)], 3)
y = np.maximum(np.einsum("bhwpc,pco->bhwo", cols, k.reshape(9, 8, 16)), 0)
want = (y.mean((1, 2)) @ w, (y * y).sum())
for a, b in zip(got, want):
  np.testing.assert_allclose(np.asarray(a), b, rtol=2e-3, atol=2e-3)
print("ok")
"""
PROBE_CACHE_ENV = "SACCADER_JAX_CACHE"


def _probe_cache_path() -> str:
  root = os.environ.get(PROBE_CACHE_ENV) or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
      "saccader_jax")
  return os.path.join(root, "ynn_fusion_probe.json")


def _probe_key(fusions: str) -> str:
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    jaxlib = metadata.version("jaxlib")
  except Exception:  # pylint: disable=broad-except
    jaxlib = "unknown"
  return "|".join([jaxlib, cpu_info("model name") or "unknown CPU",
                   cpu_info("model") or "", cpu_class(), fusions])


def probe_ynn_fusions(fusions: str, timeout_s: float = 300.0) -> Optional[str]:
  """Why `fusions` cannot be used on this machine, or None if it can.

  Runs `_PROBE` in a fresh Python under the flag, once per machine, jaxlib
  version and setting; the verdict is cached in
  $SACCADER_JAX_CACHE (default ~/.cache/saccader_jax)/ynn_fusion_probe.json.
  """
  kinds = [k for k in fusions.split(",") if k]
  if not kinds:
    return None
  path, key = _probe_cache_path(), _probe_key(fusions)
  try:
    with open(path) as f:
      cache = json.load(f)
  except (OSError, ValueError):
    cache = {}
  if key in cache:
    return cache[key] or None
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                      f"{_YNN_FLAG}={','.join(kinds)}").strip()
  env["JAX_PLATFORMS"] = "cpu"
  try:
    result = subprocess.run([sys.executable, "-c", _PROBE], env=env,
                            capture_output=True, text=True,
                            timeout=timeout_s, check=False)
    ok = result.returncode == 0 and result.stdout.strip().endswith("ok")
    tail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
            )[-1]
    reason = "" if ok else (f"a probe under {_YNN_FLAG}={fusions} failed "
                            f"(exit {result.returncode}): {tail}")
  except (OSError, subprocess.SubprocessError) as e:
    return f"the probe under {_YNN_FLAG}={fusions} did not run: {e}"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cache[key] = reason
    with open(path + ".tmp", "w") as f:
      json.dump(cache, f, indent=1)
    os.replace(path + ".tmp", path)
  except OSError:
    pass   # an unwritable cache only costs the probe next time
  return reason or None


def resolve_cpu_ynn_fusions(fusions: str) -> str:
  """fusions, with "auto" replaced by this CPU's choice: `AUTO_CHOICES`, or
  "" (with a logged warning) where the probe says the choice fails here."""
  if fusions != AUTO:
    return fusions
  chosen = auto_cpu_ynn_fusions()
  reason = probe_ynn_fusions(chosen)
  if reason:
    logging.warning("cpu_ynn_fusions 'auto': %s; using XLA's own CPU kernels "
                    "(\"\") instead.", reason)
    return ""
  return chosen


def unknown_ynn_fusion_kinds(fusions: str) -> list[str]:
  """The kinds in a comma-separated fusions string that XLA does not know
  ("auto" is known)."""
  if fusions == AUTO:
    return []
  return sorted(set(k for k in fusions.split(",") if k) - set(YNN_FUSION_KINDS))


def use_cpu_ynn_fusions(fusions: str = DEFAULT_CPU_YNN_FUSIONS) -> str:
  """Adds XLA's YNNPACK fusion flag to XLA_FLAGS.

  XLA reads XLA_FLAGS when the backend starts, on the first computation, so
  this works after `import jax` but not after any array has been created. A
  flag already in XLA_FLAGS wins.

  Args:
    fusions: comma-separated kinds from YNN_FUSION_KINDS, "" (adds nothing)
      or "auto" (`auto_cpu_ynn_fusions`).

  Returns:
    The kinds asked for, "auto" resolved.
  """
  fusions = resolve_cpu_ynn_fusions(fusions)
  kinds = [k for k in fusions.split(",") if k]
  unknown = unknown_ynn_fusion_kinds(fusions)
  if unknown:
    raise ValueError(f"Unknown YNNPACK fusion kinds {unknown} in "
                     f"{fusions!r}; valid: {YNN_FUSION_KINDS}.")
  flags = os.environ.get("XLA_FLAGS", "")
  if kinds and _YNN_FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_YNN_FLAG}={','.join(kinds)}".strip()
  return fusions
