"""BagNet-lowD and its stage-1 train step in TF-Keras: the TensorFlow peer of
the project's representation network, for `benchmark_train`.

The layers follow `saccader_jax.models.bagnet.BagNet` one for one (VALID 3x3
stem; bottlenecks with a VALID-cropped shortcut; lowD 1x1; 1x1 logits with a
bias), so the variables match in number and shape: with 1001 classes,
20,574,249 trainable and 54,144 batch-norm statistics. `copy_flax_variables`
loads a Flax BagNet's variables, which lets a test check that both compute
the same function. The step is eq. 4 as the project's stage 1 computes it
(cross entropy of the mean per-location log-probabilities + normalized L2)
under SGD with Nesterov momentum, run by TensorFlow's graph executor with
its oneDNN kernels (no XLA).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _layers():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.keras.layers


def bagnet(image_size: int, num_channels: int, num_classes: int,
           blocks: Sequence[int] = (3, 4, 6, 3),
           planes: Sequence[int] = (64, 128, 256, 512),
           strides: Sequence[int] = (2, 2, 2, 1),
           kernel3: Sequence[int] = (2, 2, 2, 2), stem_channels: int = 64,
           expansion: int = 4, what_channels: int = 512,
           bn_momentum: float = 0.9, bn_epsilon: float = 1e-5) -> Any:
  """A Keras model: [batch, size, size, channels] -> logits2d
  [batch, h, w, num_classes]. Layer names are the Flax module paths,
  joined by dots."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  layers = _layers()

  def conv(x, filters, kernel, stride, name):
    return layers.Conv2D(filters, kernel, stride, padding="valid",
                         use_bias=False, kernel_initializer="he_normal",
                         name=name)(x)

  def norm(x, name, zero_scale=False):
    return layers.BatchNormalization(
        momentum=bn_momentum, epsilon=bn_epsilon, name=name,
        gamma_initializer="zeros" if zero_scale else "ones")(x)

  images = tf.keras.Input((image_size, image_size, num_channels))
  x = layers.ReLU()(norm(conv(images, stem_channels, 3, 1, "stem_conv"),
                         "stem_bn"))
  for g, (num_blocks, width, stride, num_3x3) in enumerate(
      zip(blocks, planes, strides, kernel3)):
    for i in range(num_blocks):
      name = f"group{g}_block{i}"
      kernel = 3 if i < num_3x3 else 1
      block_stride = stride if i == 0 else 1
      out_channels = width * expansion
      y = layers.ReLU()(norm(conv(x, width, 1, 1, f"{name}.conv_a"),
                             f"{name}.bn_a"))
      y = layers.ReLU()(norm(conv(y, width, kernel, block_stride,
                                  f"{name}.conv_b"), f"{name}.bn_b"))
      y = norm(conv(y, out_channels, 1, 1, f"{name}.conv_c"), f"{name}.bn_c",
               zero_scale=True)
      shortcut = x
      trim = (kernel - 1) // 2
      if trim:
        shortcut = layers.Cropping2D(trim)(shortcut)
      if block_stride != 1 or x.shape[-1] != out_channels:
        shortcut = norm(conv(shortcut, out_channels, 1, block_stride,
                             f"{name}.conv_proj"), f"{name}.bn_proj")
      x = layers.ReLU()(layers.Add()([y, shortcut]))
  x = layers.ReLU()(norm(conv(x, what_channels, 1, 1, "lowd_conv"),
                         "lowd_bn"))
  logits2d = layers.Conv2D(num_classes, 1, name="logits2d")(x)
  return tf.keras.Model(images, logits2d, name="bagnet")


def from_model_config(config: Any, image_size: int, num_channels: int) -> Any:
  """The Keras BagNet of a Saccader model config (config.model)."""
  rep = config.representation
  return bagnet(image_size, num_channels, config.num_classes,
                blocks=rep.blocks, planes=rep.planes, strides=rep.strides,
                kernel3=rep.kernel3, stem_channels=rep.stem_channels,
                expansion=rep.expansion, what_channels=rep.what_channels,
                bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon)


def variable_counts(model: Any) -> tuple[int, int]:
  """(trainable, non-trainable) scalar counts of a Keras model."""
  def count(variables):
    return int(sum(np.prod(v.shape) for v in variables))
  return count(model.trainable_variables), count(model.non_trainable_variables)


def representation_variable_counts(config: Any) -> tuple[int, int]:
  """(parameters, batch-norm statistics) of the project's representation
  network for a full config, from shapes alone (`jax.eval_shape`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from saccader_jax import models  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(lambda k: models.init_variables(
      models.create_model(config.model), config.dataset, k),
                          jax.random.key(0))
  return tuple(int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(
      shapes[kind]["representation"]))) for kind in ("params", "batch_stats"))


def copy_flax_variables(model: Any, params: Any, batch_stats: Any) -> None:
  """Loads a Flax BagNet's {params, batch_stats} (the representation part)
  into the Keras BagNet of the same layout."""
  for layer in model.layers:
    path = layer.name.split(".")
    if not layer.weights:
      continue
    node_params, node_stats = params, batch_stats
    for part in path:
      node_params, node_stats = node_params[part], node_stats.get(part, {})
    if isinstance(layer, _layers().BatchNormalization):
      layer.set_weights([np.asarray(node_params["scale"]),
                         np.asarray(node_params["bias"]),
                         np.asarray(node_stats["mean"]),
                         np.asarray(node_stats["var"])])
    else:
      layer.set_weights([np.asarray(node_params[k]) for k in ("kernel", "bias")
                         if k in node_params])


def stage1_loss(model: Any, l2_weight: float = 8e-5) -> Any:
  """(images [batch, size, size, c], labels [batch]) -> eq. 4's loss in
  training mode (batch statistics): the cross entropy of the mean
  per-location log-probabilities + l2_weight * mean(kernel^2) over all
  kernels (the project's "normalized" L2)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  kernels = [v for v in model.trainable_variables if "kernel" in v.path]
  kernel_size = float(sum(np.prod(v.shape) for v in kernels))

  def loss(images, labels):
    logits2d = model(images, training=True)
    log_probs = tf.reduce_mean(tf.nn.log_softmax(logits2d), axis=(1, 2))
    cross_entropy = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, log_probs))
    l2 = l2_weight * tf.add_n(
        [tf.reduce_sum(tf.square(k)) for k in kernels]) / kernel_size
    return cross_entropy + l2

  return loss


def train_step(model: Any, learning_rate: float = 0.1, l2_weight: float = 8e-5,
               momentum: float = 0.9) -> Any:
  """A `tf.function` (images [batch, size, size, c], labels [batch]) -> loss:
  one stage-1 step (`stage1_loss`, SGD with Nesterov momentum)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  optimizer = tf.keras.optimizers.SGD(learning_rate, momentum=momentum,
                                      nesterov=True)
  loss_fn = stage1_loss(model, l2_weight)

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(images, labels)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return step
