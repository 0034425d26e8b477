"""Small configs and fake data shared by the tests and their subprocess
scripts (`python -m tests.<script>` from the repository root)."""

import contextlib
import os
import socket

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import imagenet_saccader


# The tests' programs are small and each runs a few times, so on a 2-core CPU
# compiling them is most of the suite's time: XLA's CPU backend compiles them
# without LLVM's optimisation passes (about a third less time per test) and
# with its older elemental emitters in place of the MLIR fusion emitters
# (half the compile time again for the tiny stages' steps: 8.7 -> 4.6 s,
# their steps ~1.2x slower). The same computations, not faster ones.
# conftest.py adds these to XLA_FLAGS; subprocesses inherit them, and those
# that set XLA_FLAGS add to it (`xla_flags_with`) or start from it.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0 "
                  "--xla_cpu_use_fusion_emitters=false")


def xla_flags_with(flag: str) -> str:
  """XLA_FLAGS of this process (the suite's compile settings, see
  conftest.py) plus flag, for a subprocess."""
  return f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the documented snippets live: README.md first, then docs/.
DOC_FILES = ("README.md",) + tuple(sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
    if name.endswith(".md")))


def doc_snippet(name: str) -> str:
  """The code of the ```python block after `<!-- name -->` in README.md or
  a docs/ page (a block indented in a list loses its indentation)."""
  import re  # pylint: disable=g-import-not-at-top
  for path in DOC_FILES:
    with open(os.path.join(ROOT, path)) as f:
      match = re.search(rf"<!-- {name} -->\s*```python\n(.*?)```", f.read(),
                        re.S)
    if match:
      code = match.group(1)
      indent = min((len(line) - len(line.lstrip()) for line in
                    code.splitlines() if line.strip()), default=0)
      return "\n".join(line[indent:] for line in code.splitlines()) + "\n"
  raise AssertionError(f"No documentation page holds the {name} snippet.")


def checkpoint_steps(workdir, stage: str) -> list[int]:
  """The steps of stage's checkpoints in workdir, ascending."""
  directory = os.path.join(workdir, "checkpoints", stage)
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def count_variables(tree) -> int:
  """Scalars in a tree of arrays or shapes."""
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def narrow_model_config(num_classes: int = 10) -> ml_collections.ConfigDict:
  """The ImageNet layout (so receptive field 77, stride 8), a few channels wide."""
  config = imagenet_saccader.get_model_config()
  config.num_classes = num_classes
  config.representation.planes = (4, 4, 4, 8)
  config.representation.stem_channels = 8
  config.representation.what_channels = 16
  config.attention.widths = (16, 8)
  config.mixed_channels = 8
  return config



def with_unit_bn_scales(params):
  """Every batch-norm scale set to one, so that no residual branch is
  switched off by its zero-initialised scale and every parameter gets a
  gradient."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.ones_like(x) if path[-1].key == "scale" else x,
      params)



def write_fake_fashion_mnist(directory, num_train=240, num_test=60, seed=0):
  """Four IDX files shaped like Fashion-MNIST: each class is a bar at its own
  height (learnable), plus noise. Files already there are kept (the same
  arguments give the same files), so that jobs reading a directory never see
  it rewritten."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import cluttered_fashion_mnist as cfm  # pylint: disable=g-import-not-at-top
  names = [f"{split}-{kind}-ubyte.gz" for split in ("train", "t10k")
           for kind in ("images-idx3", "labels-idx1")]
  marker = os.path.join(directory, f"written_{num_train}_{num_test}_{seed}")
  if os.path.exists(marker) and all(
      os.path.exists(os.path.join(directory, n)) for n in names):
    return directory
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)
  for split, n in (("train", num_train), ("t10k", num_test)):
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    items = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
      items[i, 2 + 2 * label:4 + 2 * label, 4:24] = 255
    cfm.write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"),
                  items)
    cfm.write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"),
                  labels)
  open(marker, "w").close()
  return directory


def tiny_train_config(tmp_dir, source_dir=None, canvas_size=36):
  """A full training config on small fake data; each stage a few steps."""
  from configs import fashion_mnist_whole_items_saccader  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_whole_items_saccader.get_config()
  config.dataset.data_dir = os.path.join(tmp_dir, "tfds")
  config.dataset.source_dir = source_dir or write_fake_fashion_mnist(
      os.path.join(tmp_dir, "idx"))
  config.dataset.image_size = canvas_size
  config.dataset.num_clutter = 4
  config.dataset.dev_size = 40
  return make_tiny(config)


def make_tiny(config):
  """config's models, batches and stages shrunk to the tests' tiny sizes
  (small BagNet, DRAM and classifier; each stage 3 steps; in place)."""
  config.cpu_ynn_fusions = ""
  rep = config.model.representation
  rep.blocks, rep.planes, rep.strides, rep.kernel3 = (1, 1, 1), (4, 8, 8), (
      2, 2, 1), (1, 1, 1)
  rep.stem_channels, rep.what_channels = 8, 16
  config.model.attention.widths = (16, 8)
  config.model.mixed_channels = 8
  dram = config.dram
  dram.glimpse_size = 15
  net = dram.glimpse_network
  net.units, net.widths, net.strides = (1, 1), (4, 8), (2, 1)
  net.root_channels = 8
  dram.classification_units = dram.location_units = 16
  config.classnet.input_size = 2 * config.dataset.image_size
  config.batch_size = 16
  config.eval_batch_size = 32
  for stage in config.stages.values():
    stage.num_steps = 3
  config.stages.location.num_glimpses = 4
  config.stages.policy.num_glimpses = 3
  config.stages.dram.num_glimpses = 3
  config.stages.classnet.num_glimpses = 3
  config.eval_glimpses = 5
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.async_checkpoints = False
  return config




SHAPE_CLASSES = ("disc", "square", "stripes")


def draw_shape(kind: str, size: int, rng) -> "np.ndarray":
  """A [size, size, 3] uint8 picture of one shape on noise."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  image = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
  side = size // 2
  y, x = rng.integers(0, size - side, 2)
  yy, xx = np.mgrid[:side, :side]
  if kind == "disc":
    mask = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 2) ** 2
  elif kind == "square":
    mask = np.ones((side, side), bool)
  else:
    mask = (xx // max(side // 6, 1)) % 2 == 0
  colour = rng.integers(150, 256, 3).astype(np.uint8)
  image[y:y + side, x:x + side][mask] = colour
  return image


def write_image_folder(root: str, per_class: int = 30,
                       splits: tuple = (), sizes=(48, 72), seed: int = 0
                       ) -> str:
  """A folder of generated shape pictures, one folder per class (inside
  each of `splits`' folders if given), JPEG and PNG at two sizes."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  for split in splits or ("",):
    for kind in SHAPE_CLASSES:
      folder = os.path.join(root, split, kind)
      os.makedirs(folder, exist_ok=True)
      for i in range(per_class):
        image = draw_shape(kind, sizes[i % len(sizes)], rng)
        if i % 2:
          data, ext = tf.io.encode_jpeg(image, quality=95).numpy(), "jpg"
        else:
          data, ext = tf.io.encode_png(image).numpy(), "PNG"
        with open(os.path.join(folder, f"{kind}_{i}.{ext}"), "wb") as f:
          f.write(data)
  return root


@contextlib.contextmanager
def mock_imagenet(image_size: int):
  """(config.dataset of configs/imagenet_saccader.py at image_size, its
  builder) on TFDS's mock ImageNet (24 random JPEGs per split; nothing is
  downloaded), for the duration of the context."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  dataset = imagenet_saccader.get_config().dataset
  dataset.image_size = image_size
  dataset.train_split = "train[8:]"
  dataset.dev_split = "train[:8]"
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield dataset, tfds.builder("imagenet2012", file_format="array_record")
