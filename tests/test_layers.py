"""The chapter's batch_norm and BatchNorm against the float64 reference of the formulas, and on bad input."""

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mxnet import autograd, nd
from mxnet.gluon import nn
from tolerances import rounding_tolerance

from gluon_bn import BatchNorm, batch_norm
from gluon_bn.comparison.reference import bn_backward, bn_forward

SHAPES = [(8, 5), (6, 3, 4, 5)]


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    stat_shape = (1, c) if len(shape) == 2 else (1, c, 1, 1)
    x = rng.normal(2.0, 3.0, size=shape).astype(np.float32)
    gamma = rng.uniform(0.5, 2.0, size=stat_shape).astype(np.float32)
    beta = rng.normal(size=stat_shape).astype(np.float32)
    mm = rng.normal(size=stat_shape).astype(np.float32)
    mv = rng.uniform(0.5, 2.0, size=stat_shape).astype(np.float32)
    return x, gamma, beta, mm, mv


def _run(x, gamma, beta, mm, mv, training, dy=None):
    X, G, B = nd.array(x), nd.array(gamma), nd.array(beta)
    for a in (X, G, B):
        a.attach_grad()
    with autograd.record(train_mode=training):
        Y, new_mm, new_mv = batch_norm(X, G, B, nd.array(mm), nd.array(mv), eps=1e-5, momentum=0.9)
    Y.backward(nd.array(dy) if dy is not None else None)
    return Y.asnumpy(), new_mm.asnumpy(), new_mv.asnumpy(), X.grad.asnumpy(), G.grad.asnumpy(), B.grad.asnumpy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_reference_forward_and_moving_stats(shape, training):
    x, gamma, beta, mm, mv = _inputs(shape)
    y, new_mm, new_mv, *_ = _run(x, gamma, beta, mm, mv, training)
    ref_y, ref_mm, ref_mv = bn_forward(x, gamma, beta, mm, mv, training=training)
    np.testing.assert_allclose(y, ref_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_mm.reshape(-1), ref_mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_mv.reshape(-1), ref_mv, rtol=1e-5, atol=1e-6)
    if training:  # output normalised per feature: mean beta, std gamma
        axes = (0,) if len(shape) == 2 else (0, 2, 3)
        np.testing.assert_allclose(y.mean(axis=axes), beta.reshape(-1), atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients_match_analytic(shape, training):
    x, gamma, beta, mm, mv = _inputs(shape, seed=1)
    dy = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    *_, dx, dgamma, dbeta = _run(x, gamma, beta, mm, mv, training, dy)
    ref_dx, ref_dgamma, ref_dbeta = bn_backward(x, gamma, dy, training=training, moving_mean=mm, moving_var=mv)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(dgamma.reshape(-1), ref_dgamma, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbeta.reshape(-1), ref_dbeta, rtol=1e-4, atol=1e-4)


def test_reference_gradient_is_the_derivative():
    """The analytic reference agrees with central finite differences (so it can be trusted)."""
    x, gamma, beta, mm, mv = _inputs((5, 3), seed=3)
    x, dy = x.astype(np.float64), np.random.default_rng(4).normal(size=(5, 3))
    dx, dgamma, _ = bn_backward(x, gamma, dy)
    loss = lambda xx, gg: (dy * bn_forward(xx, gg, beta, mm, mv)[0]).sum()  # noqa: E731
    h = 1e-6
    for idx in [(0, 0), (3, 2)]:
        e = np.zeros_like(x)
        e[idx] = h
        assert (loss(x + e, gamma) - loss(x - e, gamma)) / (2 * h) == pytest.approx(dx[idx], rel=1e-5)
    g = gamma.astype(np.float64).copy()
    e = np.zeros_like(g)
    e[0, 1] = h
    assert (loss(x, g + e) - loss(x, g - e)) / (2 * h) == pytest.approx(dgamma[1], rel=1e-5)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_rejects_other_ranks_naming_the_shape(shape, training):
    X = nd.ones(shape)
    stats = nd.ones((1, shape[-1]))
    with autograd.record(train_mode=training), pytest.raises(ValueError) as err:
        batch_norm(X, stats, stats, stats, stats, eps=1e-5, momentum=0.9)
    assert str(shape) in str(err.value)
    assert f"{len(shape)}-D" in str(err.value)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 9),
    c=st.integers(1, 4),
    hw=st.integers(1, 4),
    conv=st.booleans(),
    scale=st.floats(0.1, 100.0),
    training=st.booleans(),
)
def test_batch_norm_property_against_reference(n, c, hw, conv, scale, training):
    shape = (n, c, hw, hw) if conv else (n, c)
    x, gamma, beta, mm, mv = _inputs(shape, seed=n * 100 + c * 10 + hw)
    x = x * np.float32(scale)
    y, new_mm, new_mv, *_ = _run(x, gamma, beta, mm, mv, training)
    ref_y, ref_mm, ref_mv = bn_forward(x, gamma, beta, mm, mv, training=training)
    np.testing.assert_allclose(y, ref_y, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(new_mm.reshape(-1), ref_mm, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(new_mv.reshape(-1), ref_mv, rtol=1e-4, atol=1e-4 * scale**2)


@pytest.mark.parametrize("num_dims,shape", [(2, (1, 7)), (4, (1, 7, 1, 1))])
def test_block_parameters_and_moving_stats_start_as_in_the_chapter(num_dims, shape):
    layer = BatchNorm(7, num_dims=num_dims)
    layer.initialize()
    assert layer.gamma.shape == shape and layer.beta.shape == shape
    np.testing.assert_array_equal(layer.gamma.data().asnumpy(), np.ones(shape))
    np.testing.assert_array_equal(layer.beta.data().asnumpy(), np.zeros(shape))
    np.testing.assert_array_equal(layer.moving_mean.asnumpy(), np.zeros(shape))
    np.testing.assert_array_equal(layer.moving_var.asnumpy(), np.zeros(shape))


def test_block_switches_on_autograd_training_mode():
    x, *_ = _inputs((16, 3, 4, 4))
    layer = BatchNorm(3, num_dims=4)
    layer.initialize()
    X = nd.array(x)
    with autograd.record():
        Y = layer(X)
    ref_y, ref_mm, ref_mv = bn_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3))
    np.testing.assert_allclose(Y.asnumpy(), ref_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.asnumpy().reshape(-1), ref_mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_var.asnumpy().reshape(-1), ref_mv, rtol=1e-5, atol=1e-6)
    Y_pred = layer(X)  # outside record(): prediction mode, moving statistics, no update
    pred, _, _ = bn_forward(x, np.ones(3), np.zeros(3), ref_mm, ref_mv, training=False)
    np.testing.assert_allclose(Y_pred.asnumpy(), pred, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.asnumpy().reshape(-1), ref_mm, rtol=1e-5, atol=1e-6)


def test_block_moves_its_moving_stats_to_the_input_context():
    """cpu(1) is a different context from cpu(0) in MXNet: the stats must follow the input."""
    ctx = mx.cpu(1)
    layer = BatchNorm(4, num_dims=2)
    layer.initialize(ctx=ctx)
    assert layer.moving_mean.context == mx.cpu(0)
    X = nd.random.normal(shape=(8, 4), ctx=ctx)
    with autograd.record():
        Y = layer(X)
    Y.backward()
    assert Y.context == ctx
    assert layer.moving_mean.context == ctx and layer.moving_var.context == ctx
    assert float(layer.moving_var.abs().sum().asscalar()) > 0
    assert layer(X).context == ctx  # prediction on the same context works too


# -- bad input to the layers -------------------------------------------------------------------


def _layers(c, num_dims, ctx=None):
    scratch, gl = BatchNorm(c, num_dims), nn.BatchNorm(in_channels=c)
    for layer in (scratch, gl):
        layer.initialize(ctx=ctx)
    return scratch, gl


@pytest.mark.parametrize(
    "shape,match",
    [
        ((4, 5), r"got input of shape \(4, 5\): expected 2-D with 3"),
        ((4, 3, 2, 2), r"expected 2-D with 3 features"),
        ((4, 3, 2), r"shape \(4, 3, 2\): expected 2-D"),
    ],
)
def test_block_names_a_shape_that_does_not_fit(shape, match):
    scratch, _ = _layers(3, 2)
    with pytest.raises(ValueError, match=match):
        scratch(nd.ones(shape))


@pytest.mark.parametrize("args", [(6, 3), (0, 2)])
def test_block_refuses_impossible_construction(args):
    with pytest.raises(ValueError, match="num_dims is 2 after a Dense layer"):
        BatchNorm(*args)


def test_empty_training_batch_is_refused_clearly():
    scratch, _ = _layers(3, 2)
    empty = nd.array(np.zeros((0, 3), np.float32))  # nd.zeros((0, 3)) reads 0 as "unknown"
    with autograd.record(), pytest.raises(ValueError, match=r"empty batch \(shape \(0, 3\)\)"):
        scratch(empty)
    with pytest.raises(ValueError, match="empty batch"):  # prediction too: MXNet cannot compute on it
        scratch(empty)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_batch_of_one_gives_beta_like_gluon(shape):
    scratch, gl = _layers(3, len(shape))
    x = nd.random.normal(shape=shape)
    with autograd.record():
        ys, yg = scratch(x), gl(x)
    np.testing.assert_allclose(ys.asnumpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(ys.asnumpy(), yg.asnumpy(), atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_propagate_like_gluon(bad):
    scratch, gl = _layers(3, 2)
    x = nd.array([[bad, 1.0, 2.0], [1.0, 2.0, 3.0]])
    with autograd.record():
        ys, yg = scratch(x), gl(x)
    np.testing.assert_array_equal(np.isnan(ys.asnumpy()), np.isnan(yg.asnumpy()))
    assert np.isnan(ys.asnumpy()[:, 0]).all() and np.isfinite(ys.asnumpy()[:, 1:]).all()


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_other_dtypes_need_a_cast_and_then_work(dtype):
    scratch, _ = _layers(3, 2)
    x = np.random.default_rng(0).normal(2, 3, (16, 3))
    with pytest.raises(TypeError, match=f"input is {dtype} but gamma is float32: cast the layer"):
        scratch(nd.array(x, dtype=dtype))
    scratch.cast(dtype)
    with autograd.record():
        y = scratch(nd.array(x, dtype=dtype))
    assert y.dtype == np.dtype(dtype) and scratch.moving_var.dtype == np.dtype(dtype)
    ref = bn_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3))[0]
    np.testing.assert_allclose(y.asnumpy(), ref, atol=1e-12 if dtype == "float64" else 1e-2)


def test_input_on_another_context_is_named():
    scratch, _ = _layers(3, 2, ctx=mx.cpu(0))
    with pytest.raises(ValueError, match=r"input is on cpu\(1\) but this BatchNorm's parameters are on"):
        scratch(nd.ones((4, 3), ctx=mx.cpu(1)))


def test_net_on_two_contexts_uses_the_inputs_copy():
    scratch = BatchNorm(3, 2)
    scratch.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    with autograd.record():
        y = scratch(nd.random.normal(shape=(4, 3), ctx=mx.cpu(1)))
    assert y.context == mx.cpu(1)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(2, 8),
    c=st.integers(1, 5),
    hw=st.integers(1, 3),
    conv=st.booleans(),
    loc=st.floats(-50, 50),
    scale=st.floats(0.01, 50),
    steps=st.integers(1, 3),
)
def test_block_and_gluon_follow_the_reference_over_steps(n, c, hw, conv, loc, scale, steps):
    shape = (n, c, hw, hw) if conv else (n, c)
    rng = np.random.default_rng(n * 1000 + c * 100 + hw)
    tol = rounding_tolerance(loc, scale)
    scratch, gl = _layers(c, len(shape))
    mm_s, mv_s, mm_g, mv_g = np.zeros(c), np.zeros(c), np.zeros(c), np.ones(c)
    for _ in range(steps):
        x = rng.normal(loc, scale, shape).astype(np.float32)
        with autograd.record():
            ys, yg = scratch(nd.array(x)), gl(nd.array(x))
        yg.backward()
        ref_s, mm_s, mv_s = bn_forward(x, np.ones(c), np.zeros(c), mm_s, mv_s)
        ref_g, mm_g, mv_g = bn_forward(x, np.ones(c), np.zeros(c), mm_g, mv_g)
        np.testing.assert_allclose(ys.asnumpy(), ref_s, rtol=1e-3, atol=tol)
        np.testing.assert_allclose(yg.asnumpy(), ref_g, rtol=1e-3, atol=tol)
    np.testing.assert_allclose(scratch.moving_var.asnumpy().ravel(), mv_s, rtol=1e-3, atol=1e-4 * scale**2)
    np.testing.assert_allclose(gl.running_var.data().asnumpy(), mv_g, rtol=1e-3, atol=1e-4 * scale**2)
