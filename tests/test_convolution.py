"""The conv primitive: 1x1 kernels as dots, strided kernels as phases on CPU,
everything else unchanged; values and gradients equal to lax's."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saccader_jax.models import convolution

NHWC = ("NHWC", "HWIO", "NHWC")


def _reference(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                      dimension_numbers=NHWC)


def _ours(x, kernel, strides, padding):
  return convolution.conv_general_dilated(x, kernel, strides, padding,
                                          dimension_numbers=NHWC)


def _primitives(fn, *args):
  """Primitive names in fn's jaxpr, inner jaxprs (custom rules) included."""
  return set(re.findall(r"\b([a-z_]+)\[", str(jax.make_jaxpr(fn)(*args))))


def _assert_matches_lax_with_gradients(x, kernel, strides, padding):
  cotangent = jnp.asarray(
      np.random.default_rng(3).normal(
          size=_reference(x, kernel, strides, padding).shape), jnp.float32)

  def pullback(conv):
    out, vjp = jax.vjp(lambda a, k: conv(a, k, strides, padding), x, kernel)
    return (out, *vjp(cotangent))

  for ours, reference in zip(pullback(_ours), pullback(_reference)):
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides,padding", [
    ((1, 1), "VALID"), ((1, 1), "SAME"), ((2, 2), "VALID"), ((2, 2), "SAME"),
    ((3, 2), "VALID"), ((1, 1), ((0, 0), (0, 0)))])
def test_pointwise_matches_convolution_and_its_gradients(strides, padding):
  rng = np.random.default_rng(0)
  # Odd sizes: a strided 1x1 kernel must keep the last row and column.
  x = jnp.asarray(rng.normal(size=(2, 7, 9, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(1, 1, 5, 4)), jnp.float32)
  _assert_matches_lax_with_gradients(x, kernel, strides, padding)
  primitives = _primitives(lambda a, k: _ours(a, k, strides, padding),
                           x, kernel)
  assert "dot_general" in primitives
  assert "conv_general_dilated" not in primitives


@pytest.mark.parametrize("kernel_size,strides,padding", [
    ((3, 3), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME"),
    ((3, 3), (2, 2), ((1, 0), (2, 1))), ((2, 5), (3, 2), "VALID"),
    ((3, 1), (2, 1), "SAME"), ((3, 3), (1, 2), "VALID")])
def test_strided_matches_convolution_and_its_gradients(kernel_size, strides,
                                                       padding):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 11, 10, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(*kernel_size, 3, 4)), jnp.float32)
  _assert_matches_lax_with_gradients(x, kernel, strides, padding)
  jaxpr = jax.make_jaxpr(lambda a, k: _ours(a, k, strides, padding))(x,
                                                                     kernel)
  convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  assert convs and all(e.params["window_strides"] == (1, 1) for e in convs)


def test_strided_stays_one_convolution_off_cpu(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  x = jnp.zeros((1, 9, 9, 3), jnp.float32)
  kernel = jnp.zeros((3, 3, 3, 4), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda a, k: _ours(a, k, (2, 2), "VALID"))(x, kernel)
  convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  assert [e.params["window_strides"] for e in convs] == [(2, 2)]


@pytest.mark.parametrize("kernel_shape,kwargs", [
    ((3, 3, 5, 4), {}),
    ((1, 1, 5, 4), {"padding": ((1, 1), (0, 0))}),
    ((1, 1, 5, 4), {"lhs_dilation": (2, 2), "padding": ((0, 0), (0, 0))}),
    ((3, 3, 5, 4), {"strides": (2, 2), "padding": ((-1, 0), (0, 0))}),
    ((3, 3, 5, 4), {"strides": (2, 2), "rhs_dilation": (2, 1)}),
    ((1, 1, 1, 5), {"feature_group_count": 5}),
    ((4, 7, 1, 1), {"dimension_numbers": ("NCHW", "OIHW", "NCHW")}),
])
def test_everything_else_is_left_to_lax(kernel_shape, kwargs):
  rng = np.random.default_rng(1)
  kwargs = {"strides": (1, 1), "padding": "VALID", "dimension_numbers": NHWC,
            **kwargs}
  x = jnp.asarray(rng.normal(size=(2, 7, 9, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=kernel_shape), jnp.float32)
  strides = kwargs.pop("strides")
  conv = lambda fn: fn(x, kernel, strides, **kwargs)  # pylint: disable=unnecessary-lambda-assignment
  np.testing.assert_array_equal(
      conv(convolution.conv_general_dilated),
      conv(jax.lax.conv_general_dilated))
  assert "conv_general_dilated" in _primitives(
      lambda: conv(convolution.conv_general_dilated))


def test_pointwise_forward_mode_matches_convolution():
  """The 1x1 dot's custom tangent rule: jvp and the kernel-only gradient
  (the input a symbolic zero) equal lax's convolution's."""
  rng = np.random.default_rng(1)
  x, x_dot = (jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
              for _ in range(2))
  kernel, kernel_dot = (jnp.asarray(rng.normal(size=(1, 1, 3, 4)),
                                    jnp.float32) for _ in range(2))
  for strides in ((1, 1), (2, 2)):
    ours = jax.jvp(lambda a, k: _ours(a, k, strides, "VALID"), (x, kernel),
                   (x_dot, kernel_dot))
    reference = jax.jvp(lambda a, k: _reference(a, k, strides, "VALID"),
                        (x, kernel), (x_dot, kernel_dot))
    for a, b in zip(ours, reference):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    def loss(conv, k):
      return jnp.sum(jnp.sin(conv(x, k, strides, "VALID")))
    np.testing.assert_allclose(jax.grad(lambda k: loss(_ours, k))(kernel),
                               jax.grad(lambda k: loss(_reference, k))(kernel),
                               rtol=1e-5, atol=1e-5)


def test_bfloat16_pointwise_keeps_the_dtype():
  x = jnp.ones((1, 3, 3, 4), jnp.bfloat16)
  kernel = jnp.full((1, 1, 4, 2), 0.5, jnp.bfloat16)
  out = _ours(x, kernel, (1, 1), "VALID")
  assert out.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(out, np.float32), 2.0)
