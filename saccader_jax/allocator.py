"""The host memory allocator: tcmalloc for entry points and research code.

Needs only the standard library: the restart (`reexec_with_tcmalloc`)
replaces the process image, so it must run before JAX and TensorFlow load.

  - entry points (`main`, the experiment scripts) and any plain script call
    `reexec_with_tcmalloc()` first thing;
  - a notebook cannot restart its own kernel process; a kernel that starts
    on tcmalloc is installed once with
        python -m saccader_jax.allocator --install_kernel
    (`install_kernel`: a Jupyter kernel spec with LD_PRELOAD set).
"""

import ctypes.util
import glob
import os
import sys
from typing import Optional


# The host allocator. XLA's CPU runtime allocates each execution's
# temporaries (4.1 GB for the ImageNet stage-1 step at batch 8) afresh; glibc
# serves such blocks with mmap and returns them with munmap, so every step
# faults in and zeroes every page again (a sixth of the step's CPU time in
# the kernel). tcmalloc keeps freed pages for the next step.
MALLOC_ENV = "SACCADER_JAX_MALLOC"
_REEXECUTED = "SACCADER_JAX_MALLOC_REEXECUTED"


def find_tcmalloc() -> Optional[str]:
  """A tcmalloc shared library on this machine (its soname, which the
  loader resolves, or its path), or None."""
  for name in ("tcmalloc_minimal", "tcmalloc"):
    found = ctypes.util.find_library(name)
    if found:
      return found
  for pattern in ("/usr/lib/*/libtcmalloc_minimal.so.4",
                  "/usr/lib/*/libtcmalloc.so.4", "/usr/lib/libtcmalloc*.so.4"):
    paths = sorted(glob.glob(pattern))
    if paths:
      return paths[0]
  return None


def loaded_allocator() -> str:
  """"tcmalloc" if this process runs on tcmalloc, else "glibc"."""
  try:
    with open("/proc/self/maps") as f:
      return "tcmalloc" if "libtcmalloc" in f.read() else "glibc"
  except OSError:
    return "glibc"


def reexec_with_tcmalloc(argv: Optional[list[str]] = None) -> None:
  """Restarts this process with tcmalloc preloaded, if it can.

  For entry points, before anything else runs (the process image is
  replaced: same PID, arguments and environment, plus LD_PRELOAD). Does
  nothing when tcmalloc is already loaded or not installed (Debian:
  libtcmalloc-minimal4), off Linux, or when SACCADER_JAX_MALLOC=system.

  Args:
    argv: the command line to run again; default `sys.orig_argv` (the
      interpreter's own, `-m module` included).
  """
  # The re-executed process itself: never again, even if the preload failed.
  if os.environ.pop(_REEXECUTED, None):
    return
  if "ipykernel" in sys.modules:
    # Replacing a Jupyter kernel's process would lose its connection; its
    # allocator is chosen when it starts (`install_kernel`).
    return
  if (os.environ.get(MALLOC_ENV, "tcmalloc") != "tcmalloc"
      or not sys.platform.startswith("linux")
      or loaded_allocator() == "tcmalloc"):
    return
  library = find_tcmalloc()
  if not library:
    return
  preload = os.environ.get("LD_PRELOAD", "")
  os.environ["LD_PRELOAD"] = f"{library} {preload}".strip()
  os.environ[_REEXECUTED] = "1"
  sys.stdout.flush()
  sys.stderr.flush()
  argv = list(sys.orig_argv if argv is None else argv)
  os.execv(sys.executable, [sys.executable, *argv[1:]])


KERNEL_NAME = "saccader_jax_tcmalloc"


def install_kernel(user: bool = True, prefix: Optional[str] = None) -> str:
  """Installs a Jupyter kernel ("Python 3 (saccader_jax, tcmalloc)") of
  this Python that starts with tcmalloc preloaded; returns its directory.

  Raises RuntimeError when no tcmalloc is installed (Debian:
  libtcmalloc-minimal4).
  """
  library = find_tcmalloc()
  if not library:
    raise RuntimeError("No tcmalloc library found: apt-get install -y "
                       "libtcmalloc-minimal4")
  from ipykernel import kernelspec  # pylint: disable=g-import-not-at-top
  return kernelspec.install(
      user=user and prefix is None, prefix=prefix, kernel_name=KERNEL_NAME,
      display_name="Python 3 (saccader_jax, tcmalloc)",
      env={"LD_PRELOAD": library, MALLOC_ENV: "tcmalloc"})


def main(argv: Optional[list[str]] = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="python -m saccader_jax.allocator",
      description="Install a Jupyter kernel that starts on tcmalloc.")
  parser.add_argument("--install_kernel", action="store_true", required=True)
  parser.add_argument("--prefix", default=None,
                      help="install under PREFIX/share/jupyter (default: "
                      "the user's Jupyter directory)")
  args = parser.parse_args(argv)
  try:
    path = install_kernel(prefix=args.prefix)
  except RuntimeError as e:
    print(f"Error: {e}", file=sys.stderr)
    return 1
  print(f"Installed the Jupyter kernel {KERNEL_NAME!r} (tcmalloc) in {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
