"""BagNet-77-lowD: geometry, the receptive field of the classification path,
and the paper's parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet_saccader
from saccader_jax import models
from saccader_jax.models import geometry
from tests.helpers import count_variables as count


def imagenet_variable_shapes(num_classes):
  config = imagenet_saccader.get_model_config()
  config.num_classes = num_classes
  model = models.create_model(config)
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                         num_glimpses=1))


def test_parameter_count_is_the_papers_35583913():
  shapes = imagenet_variable_shapes(1001)
  assert count(shapes["params"]) == 35_523_625
  assert count(shapes["batch_stats"]) == 60_288
  assert count(shapes) == 35_583_913
  assert count(shapes["params"]["representation"]) == 20_574_249
  location_network = {k: v for k, v in shapes["params"].items()
                      if k != "representation"}
  assert count(location_network) == 14_949_376


def test_parameter_count_with_1000_classes():
  shapes = imagenet_variable_shapes(1000)
  assert count(shapes["params"]) == 35_523_112
  assert count(shapes) == 35_583_400


def test_imagenet_grid_is_19x19_with_receptive_field_77_and_stride_8():
  model = models.create_model(imagenet_saccader.get_model_config())
  grid = model.grid_geometry(224, 224)
  assert (grid.receptive_field, grid.stride) == (77, 8)
  assert (grid.grid_height, grid.grid_width) == (19, 19)
  out = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0),
                                     jnp.zeros((2, 224, 224, 3)),
                                     num_glimpses=6)[0])
  assert out.logits2d.shape == (2, 19, 19, 1001)
  assert out.location_logits.shape == (2, 6, 361)


def test_receptive_field_arithmetic():
  convs = [geometry.ConvSpec(3, 1), geometry.ConvSpec(3, 2),
           geometry.ConvSpec(1, 1), geometry.ConvSpec(3, 2)]
  # 1 + 2 + 2 + 0 + 2 * 2 = 9; jump 4.
  assert geometry.receptive_field(convs) == (9, 4)
  # 20 -> 18 -> ceil(16 / 2) = 8 -> 8 -> ceil(6 / 2) = 3.
  assert geometry.output_size(convs, 20) == 3
  assert geometry.output_size(convs, 8) == 0


@pytest.mark.parametrize("size", [(77, 77), (93, 101), (112, 96)])
def test_geometry_predicts_the_network_output(narrow_model, size):
  grid = narrow_model.grid_geometry(*size)
  out = jax.eval_shape(
      lambda: narrow_model.init_with_output(
          jax.random.key(0), jnp.zeros((1,) + size + (3,)),
          method=narrow_model.represent)[0])
  assert out.logits2d.shape[1:3] == (grid.grid_height, grid.grid_width)


def test_classification_path_sees_only_its_77x77_box(narrow_model,
                                                     narrow_variables):
  """Eq. 4's X^{ij}: location (i, j) is a function of one 77x77 patch."""
  grid = narrow_model.grid_geometry(93, 93)  # a 3x3 grid
  assert grid.receptive_field == 77 and grid.grid_height == 3
  logits2d = jax.jit(lambda x: narrow_model.apply(
      narrow_variables, x, method=narrow_model.represent).logits2d)
  image = np.asarray(jax.random.normal(jax.random.key(1), (1, 93, 93, 3)))
  base = np.asarray(logits2d(image))
  row, col = 1, 2
  y0, x0, y1, x1 = np.asarray(grid.boxes(jnp.array([row, col])))
  assert (y0, x0, y1, x1) == (8, 16, 85, 93)

  outside = image.copy()
  outside[0, :y0, :] += 5.0    # every row above the box
  outside[0, y1:, :] -= 5.0    # every row below it
  outside[0, :, :x0] *= -3.0   # every column left of it
  changed = np.asarray(logits2d(outside))
  np.testing.assert_array_equal(changed[0, row, col], base[0, row, col])
  # The same edits reach locations whose boxes overlap them.
  assert not np.array_equal(changed[0, 0, 0], base[0, 0, 0])

  # Each border line of the box, and its centre pixel, is seen.
  lines = {"top": np.s_[y0, x0:x1], "bottom": np.s_[y1 - 1, x0:x1],
           "left": np.s_[y0:y1, x0], "right": np.s_[y0:y1, x1 - 1],
           "centre": np.s_[(y0 + y1) // 2, (x0 + x1) // 2]}
  for name, line in lines.items():
    edited = image.copy()
    edited[0][line] += 5.0
    assert not np.array_equal(np.asarray(logits2d(edited))[0, row, col],
                              base[0, row, col]), name


def test_whole_image_logits_are_the_mean_of_logits2d(narrow_model,
                                                     narrow_variables):
  image = jax.random.normal(jax.random.key(2), (2, 93, 93, 3))
  out = narrow_model.apply(narrow_variables, image,
                           method=narrow_model.represent)
  np.testing.assert_allclose(out.logits, out.logits2d.mean(axis=(1, 2)),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters(narrow_config,
                                                   narrow_variables):
  config = narrow_config.copy_and_resolve_references()
  config.dtype = "bfloat16"
  model = models.create_model(config)
  image = jax.random.normal(jax.random.key(3), (2, 93, 93, 3))
  variables = model.init(jax.random.key(0), image, num_glimpses=2)
  assert all(x.dtype == jnp.float32
             for x in jax.tree_util.tree_leaves(variables))
  rep = model.apply(narrow_variables, image, method=model.represent)
  assert rep.features2d.dtype == jnp.bfloat16
  assert rep.logits2d.dtype == jnp.float32
  reference = models.create_model(narrow_config).apply(
      narrow_variables, image, method=model.represent)
  error = np.linalg.norm(rep.logits2d - reference.logits2d)
  assert error < 0.1 * np.linalg.norm(reference.logits2d)
  assert not np.array_equal(rep.logits2d, reference.logits2d)


def test_unknown_dtype_and_model_names_list_the_valid_ones(narrow_config):
  config = narrow_config.copy_and_resolve_references()
  config.dtype = "float16"
  with pytest.raises(ValueError, match="bfloat16.*float32"):
    models.create_model(config)
  config.dtype = "float32"
  config.name = "resnet"
  with pytest.raises(ValueError, match="saccader"):
    models.create_model(config)


def _projecting_block(projection_norm):
  from saccader_jax.models import bagnet  # pylint: disable=g-import-not-at-top
  from saccader_jax.models import layers  # pylint: disable=g-import-not-at-top
  return bagnet.Bottleneck(
      planes=4, kernel_size=3, stride=2, expansion=4,
      conv=layers.conv(jnp.float32),
      norm=layers.batch_norm(False, 0.9, 1e-5, jnp.float32),
      projection_norm=projection_norm)


def _with_random_norms(variables, key):
  """Every batch norm given a non-trivial scale, bias, mean and variance (the
  zero-initialised bn_c would hide the main branch)."""
  leaves, tree = jax.tree_util.tree_flatten_with_path(variables)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    name = jax.tree_util.keystr(path)
    if "bn_" in name:
      low = 0.5 if ("scale" in name or "var" in name) else -0.5
      leaf = jax.random.uniform(k, leaf.shape, minval=low, maxval=low + 1.0)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(tree, out)


def test_projection_norm_moves_bn_proj_to_the_main_branch_as_the_original():
  """shortcut: relu(bn_c(.) + bn_proj(conv_proj(x))); main_branch (the
  original TF bottleneck): relu(bn_proj(bn_c(.)) + conv_proj(x)); equal
  variable trees, different functions."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
  blocks = {name: _projecting_block(name)
            for name in models.PROJECTION_NORMS}
  trees = {name: jax.tree_util.tree_map(jnp.shape, block.init(
      jax.random.key(1), x)) for name, block in blocks.items()}
  assert trees["shortcut"] == trees["main_branch"]
  variables = _with_random_norms(
      blocks["shortcut"].init(jax.random.key(1), x), jax.random.key(2))
  stats, params = variables["batch_stats"]["bn_proj"], variables["params"][
      "bn_proj"]

  def bn_proj(v):
    return ((v - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-5)
            * params["scale"] + params["bias"])

  outputs = {}
  for name, block in blocks.items():
    out, state = block.apply(variables, x, capture_intermediates=True,
                             mutable=["intermediates"])
    seen = state["intermediates"]
    outputs[name] = out
    main = seen["bn_c"]["__call__"][0]
    projection = seen["conv_proj"]["__call__"][0]
    expected = (jax.nn.relu(main + bn_proj(projection)) if name == "shortcut"
                else jax.nn.relu(bn_proj(main) + projection))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5,
                               err_msg=name)
  assert float(jnp.max(jnp.abs(outputs["shortcut"] -
                               outputs["main_branch"]))) > 0.1


def test_projection_norm_is_a_model_option_checked_before_the_run(
    narrow_config):
  config = narrow_config.copy_and_resolve_references()
  config.representation.projection_norm = "main_branch"
  model = models.create_model(config)
  assert model.representation.projection_norm == "main_branch"
  with pytest.raises(ValueError, match="Unknown projection_norm 'main'"):
    config.representation.projection_norm = "main"
    models.create_model(config)
