"""Train-step throughput of the three stages, beside ResNet-50 references.

Prints Markdown tables:
  1. for each stage on the ImageNet config (224x224, small batch) and on the
     embedded config: images/s of the compiled train step and its achieved
     FLOP/s (FLOPs from XLA's cost analysis of the compiled step);
  2. the same network's stage-1 step in TF-Keras (oneDNN kernels;
     `experiments/keras_bagnet.py`), its variable count asserted equal to the
     representation network's, and the ratio of the two;
  3. the same measure for a Flax ResNet-50 train step and TensorFlow's Keras
     ResNet-50 train step (oneDNN kernels), same machine, same run;
  4. the embedded input pipeline's images/s beside the stage-1 step's.

    python -m experiments.benchmark_train [--imagenet_batch=8] [--repeats=3]
"""

import functools
import importlib
import os
import time

from saccader_jax import entry  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  # Before JAX and TensorFlow load: the restart replaces the process image.
  entry.restart_before_libraries()

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("imagenet_batch", 8, "Batch of the 224x224 rows.")
flags.DEFINE_integer("imagenet_size", 224,
                     "Image size of the ImageNet-config rows.")
flags.DEFINE_integer("embedded_batch", 128, "Batch of the embedded rows.")
flags.DEFINE_integer("resnet_batch", 16, "Batch of the ResNet-50 rows.")
flags.DEFINE_integer("repeats", 3, "Timed steps per row (median).")
flags.DEFINE_bool("keras", True, "Include the Keras rows (BagNet, ResNet-50).")
flags.DEFINE_bool("resnet", True, "Include the ResNet-50 reference rows.")
flags.DEFINE_bool("imagenet", True, "Include the ImageNet-config rows.")
flags.DEFINE_bool("embedded", True, "Include the embedded-config rows.")
flags.DEFINE_list("stages", ["representation", "location", "policy"],
                  "Stages to time.")
flags.DEFINE_string("data_dir", "~/tensorflow_datasets",
                    "TFDS data_dir of the embedded data set.")
flags.DEFINE_string("source_dir", None,
                    "Fashion-MNIST IDX files; default: the config's.")
flags.DEFINE_integer("dev_size", None, "Embedded dev split size override.")
flags.DEFINE_list("embedded_configs",
                  ["fashion_mnist_whole_items_saccader",
                   "fashion_mnist_parts_saccader"],
                  "configs/ modules of the embedded rows; the first one's "
                  "input pipeline is timed too.")


def row(name, batch, seconds, flops):
  rate = f"{flops / seconds / 1e9:.0f}" if flops else "n/a"
  gflop = f"{flops / batch / 1e9:.1f}" if flops else "n/a"
  print(f"| {name} | {batch} | {1e3 * seconds:.0f} | {batch / seconds:.1f} | "
        f"{gflop} | {rate} |", flush=True)


def saccader_rows(config, batch_size, label, repeats, stages):
  """Times each stage's train step; returns stage 1's (images/s, FLOPs)."""
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  from saccader_jax import stages as stages_lib  # pylint: disable=g-import-not-at-top
  model = models.create_model(config.model)
  batch = jax.tree_util.tree_map(jnp.asarray, timing.random_batch(config, batch_size))
  stage1 = None
  variables = jax.jit(lambda k: models.init_variables(
      model, config.dataset, k))(jax.random.key(0))
  for name in stages:
    state, step, *_ = stages_lib.create_stage(config, name, model,
                                              variables, 1000)
    step = jax.jit(step)
    compiled = step.lower(state, batch, jax.random.key(0)).compile()
    flops = compiled.cost_analysis()["flops"]
    seconds = timing.median_seconds(
        lambda: compiled(state, batch, jax.random.key(0))[1], repeats)
    row(f"{label}: stage {name}", batch_size, seconds, flops)
    if name == "representation":
      stage1 = batch_size / seconds, flops
  return stage1


def keras_bagnet_row(config, batch_size, repeats, flops):
  """The stage-1 step of the same BagNet in TF-Keras; returns images/s."""
  import tensorflow as tf
  from experiments import keras_bagnet  # pylint: disable=g-import-not-at-top
  size, channels = config.dataset.image_size, config.dataset.num_channels
  model = keras_bagnet.from_model_config(config.model, size, channels)
  expected = keras_bagnet.representation_variable_counts(config)
  counts = keras_bagnet.variable_counts(model)
  assert counts == expected, (
      f"Keras BagNet variables (trainable, statistics) {counts} != the "
      f"representation network's {expected}")
  stage = config.stages.representation
  step = keras_bagnet.train_step(model, stage.learning_rate, stage.l2_weight,
                                 config.optimizer.momentum)
  batch = {k: tf.constant(v) for k, v in
           timing.random_batch(config, batch_size).items()}
  # .numpy() waits for TensorFlow's step as block_until_ready does for JAX's.
  seconds = timing.median_seconds(
      lambda: step(batch["image"], batch["label"]).numpy(), repeats)
  # Same network: the JAX step's FLOP count stands for both.
  row(f"TF-Keras BagNet stage representation ({counts[0]:,} + {counts[1]:,} "
      "variables, oneDNN)", batch_size, seconds, flops)
  return batch_size / seconds


def flax_resnet50_row(batch_size, repeats):
  import flax.linen as nn
  import optax

  class Block(nn.Module):
    filters: int
    strides: int

    @nn.compact
    def __call__(self, x, train):
      norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                               momentum=0.9)
      y = nn.Conv(self.filters, (1, 1), use_bias=False)(x)
      y = nn.relu(norm()(y))
      y = nn.Conv(self.filters, (3, 3), (self.strides,) * 2, use_bias=False)(y)
      y = nn.relu(norm()(y))
      y = nn.Conv(4 * self.filters, (1, 1), use_bias=False)(y)
      y = norm(scale_init=nn.initializers.zeros)(y)
      if x.shape != y.shape:
        x = nn.Conv(4 * self.filters, (1, 1), (self.strides,) * 2,
                    use_bias=False)(x)
        x = norm()(x)
      return nn.relu(x + y)

  class ResNet50(nn.Module):

    @nn.compact
    def __call__(self, x, train):
      x = nn.Conv(64, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
                  use_bias=False)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
      for i, blocks in enumerate((3, 4, 6, 3)):
        for j in range(blocks):
          x = Block(64 * 2 ** i, 2 if i > 0 and j == 0 else 1)(x, train)
      return nn.Dense(1000)(jnp.mean(x, axis=(1, 2)))

  model = ResNet50()
  images = jnp.asarray(np.random.default_rng(0).normal(
      size=(batch_size, 224, 224, 3)), jnp.float32)
  labels = jnp.zeros((batch_size,), jnp.int32)
  variables = jax.jit(lambda k: model.init(k, images[:1], False))(
      jax.random.key(0))
  tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
  opt_state = tx.init(variables["params"])

  def step(params, batch_stats, opt_state):
    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": batch_stats},
                                    images, True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean(), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    deltas, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, deltas), updates["batch_stats"],
            opt_state, loss)

  compiled = jax.jit(step).lower(variables["params"], variables["batch_stats"],
                                 opt_state).compile()
  flops = compiled.cost_analysis()["flops"]
  seconds = timing.median_seconds(
      lambda: compiled(variables["params"], variables["batch_stats"],
                       opt_state)[3], repeats)
  row("Flax ResNet-50 (reference)", batch_size, seconds, flops)
  return flops / batch_size


def keras_resnet50_row(batch_size, repeats, flops_per_image):
  import tensorflow as tf
  model = tf.keras.applications.ResNet50(weights=None)
  optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
  images = tf.random.normal((batch_size, 224, 224, 3))
  labels = tf.zeros((batch_size,), tf.int32)
  loss_object = tf.keras.losses.SparseCategoricalCrossentropy()

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = loss_object(labels, model(images, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  # .numpy() waits for TensorFlow's step as block_until_ready does for JAX's.
  seconds = timing.median_seconds(lambda: step().numpy(), repeats)
  # Same network: the Flax model's FLOP count stands for both.
  row("TensorFlow Keras ResNet-50 (reference, oneDNN)", batch_size, seconds,
      flops_per_image * batch_size)


def pipeline_rate(config, batch_size, num_batches=30):
  from saccader_jax.data import input_pipeline
  builder = input_pipeline.get_builder(config.dataset)
  batches = input_pipeline.train_batches(config.dataset, builder, batch_size,
                                         seed=0)
  for _ in range(num_batches):  # fill the cache and the prefetch buffer
    next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  fusions = entry.prepare_process(timing.CPU_YNN_FUSIONS.value)
  from configs import imagenet_saccader  # pylint: disable=g-import-not-at-top
  print(f"# Train-step benchmark ({timing.machine()}; "
        f"--cpu_ynn_fusions={timing.CPU_YNN_FUSIONS.value!r} -> {fusions!r}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})\n")
  print("| step | batch | ms/step | images/s | GFLOP/image | GFLOP/s |")
  print("|---|---:|---:|---:|---:|---:|")
  stage1 = keras_rate = None
  if FLAGS.imagenet:
    imagenet = imagenet_saccader.get_config()
    imagenet.dataset.image_size = FLAGS.imagenet_size
    stage1 = saccader_rows(imagenet, FLAGS.imagenet_batch,
                           f"ImageNet {FLAGS.imagenet_size}px",
                           FLAGS.repeats, FLAGS.stages)
    if FLAGS.keras:
      keras_rate = keras_bagnet_row(imagenet, FLAGS.imagenet_batch,
                                    FLAGS.repeats,
                                    stage1[1] if stage1 else None)
  embedded_stage1 = embedded = None
  for module in FLAGS.embedded_configs if FLAGS.embedded else ():
    config = importlib.import_module(f"configs.{module}").get_config()
    config.dataset.data_dir = FLAGS.data_dir
    if FLAGS.source_dir:
      config.dataset.source_dir = FLAGS.source_dir
    if FLAGS.dev_size:
      config.dataset.dev_size = FLAGS.dev_size
    # e.g. "Fashion-MNIST whole items 64px", "Fashion-MNIST parts 64px".
    name = module.removeprefix("fashion_mnist").removesuffix("_saccader")
    name = name.strip("_").replace("_", " ")
    label = (f"Fashion-MNIST{' ' + name if name else ''} "
             f"{config.dataset.image_size}px")
    stage1 = saccader_rows(config, FLAGS.embedded_batch, label,
                           FLAGS.repeats, FLAGS.stages)
    if embedded is None:
      embedded, embedded_stage1 = config, stage1
  if FLAGS.resnet:
    resnet_flops = flax_resnet50_row(FLAGS.resnet_batch, FLAGS.repeats)
    if FLAGS.keras:
      keras_resnet50_row(FLAGS.resnet_batch, FLAGS.repeats, resnet_flops)

  if stage1 and keras_rate:
    print(f"\nStage 1 on the same BagNet-77-lowD ({FLAGS.imagenet_size} px, "
          f"batch "
          f"{FLAGS.imagenet_batch}): saccader_jax / TF-Keras = "
          f"{stage1[0] / keras_rate:.2f}x")
  if embedded_stage1:
    rate = pipeline_rate(embedded, FLAGS.embedded_batch)
    print("\n| embedded input pipeline (images/s) | stage-1 step (images/s) | "
          "headroom |")
    print("|---:|---:|---:|")
    print(f"| {rate:.0f} | {embedded_stage1[0]:.0f} | "
          f"{rate / embedded_stage1[0]:.1f}x |")


if __name__ == "__main__":
  app.run(main)
