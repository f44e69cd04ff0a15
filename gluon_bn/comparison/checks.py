"""Side by side with ``gluon.nn.BatchNorm``, first evidence: each layer against the float64 reference.

:func:`check_layer` checks one BN block against the paper's formulas in float64 (training
output, gradients, moving statistics after k steps, prediction output). The gaps between the
two layers, and which statistics each uses per ``autograd`` scope, are in :mod:`.differences`.

Any block with ``gamma``/``beta`` Parameters and either the chapter's ``moving_mean``/
``moving_var`` NDArrays or Gluon's ``running_mean``/``running_var`` Parameters can be checked.
:func:`check_per_example` checks a LayerNorm or GroupNorm block, which has no moving statistics,
against the float64 reference of group normalization.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from ..norms.bnstate import get_stats, is_bn, set_affine
from .reference import bn_backward, bn_forward, group_norm_backward, group_norm_forward

__all__ = [
    "COMPARED",
    "TOLERANCES",
    "Check",
    "LayerFactory",
    "build_layer",
    "check_layer",
    "check_per_example",
    "max_abs_gap",
    "run_step",
]

LayerFactory = Callable[[int, int], gluon.Block]

#: The two layers the chapter sets side by side, by their names in ``norms.NORMS``.
COMPARED = ("scratch", "gluon")


#: Tolerances (atol, rtol) for float32 layers against the float64 reference: a few times
#: the float32 error of MXNet's fused CPU operator at LeNet's largest BN shape (relative
#: ~2e-5 there, where the chapter's two-pass formulas stay near 1e-7), and far below what a
#: wrong reduction axis or the unbiased variance (relative 1/(m-1)) does at m <= 256.
TOLERANCES = {
    "train output": (3e-4, 1e-4),
    "dX": (1e-5, 1e-3),
    "dgamma": (1e-3, 1e-4),
    "dbeta": (1e-3, 1e-4),
    "moving mean": (1e-5, 1e-4),
    "moving var": (1e-5, 1e-4),
    "predict output": (3e-4, 1e-4),
    "predict dX": (1e-5, 1e-3),
}


def build_layer(factory: LayerFactory, c: int, ndim: int, ctx: mx.Context) -> gluon.Block:
    """A BN layer from ``factory`` for ``c`` features of an ``ndim``-D input, initialized on ``ctx``.

    Raises ``TypeError`` when the block built is not a BN block in either convention.

    Args:
        factory: builds the block from (num_features, num_dims), as ``Norm.layer`` does.
        c: the number of features (channels).
        ndim: the input's number of dimensions, 2 or 4.
        ctx: where the block is initialized.
    """
    layer = factory(c, ndim)
    layer.initialize(ctx=ctx)
    if not is_bn(layer):
        raise TypeError(
            f"cannot compare {type(layer).__name__}: a BN block needs gamma/beta Parameters and either "
            "moving_mean/moving_var NDArrays (the chapter's) or running_mean/running_var Parameters (Gluon's)"
        )
    return layer


def run_step(
    layer: gluon.Block,
    x: np.ndarray,
    dy: np.ndarray | None,
    ctx: mx.Context,
    scope: Callable[[], contextlib.AbstractContextManager] = autograd.record,
):
    """One forward (and backward with head gradient ``dy`` unless None) under ``scope``.

    Returns the output and the input's gradient, (y, dx), as float64 NumPy arrays.

    Args:
        layer: the BN block, initialized on ``ctx``.
        x: the input batch.
        dy: the head gradient for the backward pass, shaped like the output; None skips backward.
        ctx: where the input (and ``dy``) are placed.
        scope: makes the autograd scope the forward runs in (``autograd.record`` by default).
    """
    X = nd.array(x, ctx=ctx)
    X.attach_grad()
    with scope():
        Y = layer(X)
    if dy is not None:
        Y.backward(nd.array(dy, ctx=ctx))
    return Y.asnumpy().astype(np.float64), X.grad.asnumpy().astype(np.float64)


def max_abs_gap(a, b) -> float:
    """The largest absolute difference between two arrays, in float64."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# -- 1. agreement with the reference ---------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One quantity of one layer against the reference, with the tolerance it is held to."""

    layer: str
    shape: tuple
    quantity: str
    max_abs: float
    max_rel: float  # max |error| / max |reference|
    atol: float
    rtol: float
    passed: bool

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def _check(layer: str, shape, quantity: str, got, want) -> Check:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    atol, rtol = TOLERANCES[quantity]
    err = np.abs(got - want)
    scale = float(np.max(np.abs(want))) or 1.0
    return Check(
        layer,
        tuple(shape),
        quantity,
        float(err.max()),
        float(err.max()) / scale,
        atol,
        rtol,
        bool(got.shape == want.shape and np.all(err <= atol + rtol * np.abs(want))),
    )


def check_layer(
    factory: LayerFactory,
    shape: tuple,
    name: str = "layer",
    steps: int = 3,
    ctx: mx.Context | None = None,
    seed: int = 0,
    eps: float = 1e-5,
    momentum: float = 0.9,
) -> list[Check]:
    """Hold one BN block to the float64 reference of the paper's formulas.

    The reference starts from the block's own initial moving statistics. Step 1's training
    output and gradients are checked, the moving statistics after ``steps`` training steps
    (forward and backward), then the prediction output on a fresh batch.

    Args:
        factory: builds the block from (num_features, num_dims), as ``Norm.layer`` does.
        shape: the input's shape, (N, C) or (N, C, H, W).
        name: how the checks name the block.
        steps: training steps before the moving statistics are compared.
        ctx: where the block runs (the CPU by default).
        seed: seeds the inputs, gamma and beta.
        eps: the reference's epsilon (the chapter's and Gluon's 1e-5).
        momentum: the reference's momentum (the chapter's 0.9).
    """
    ctx = ctx or mx.cpu()
    rng = np.random.default_rng(seed)
    c = shape[1]
    layer = build_layer(factory, c, len(shape), ctx)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0.0, 0.5, c)
    set_affine(layer, gamma, beta)
    mm, mv = get_stats(layer)
    checks = []
    for k in range(steps):
        x = rng.normal(1.5, 2.0, shape).astype(np.float32)
        dy = rng.normal(0.0, 1.0, shape).astype(np.float32)
        y, dx = run_step(layer, x, dy, ctx)
        ref_y, mm, mv = bn_forward(x, gamma, beta, mm, mv, eps, momentum, training=True)
        if k == 0:
            ref_dx, ref_dgamma, ref_dbeta = bn_backward(x, gamma, dy, eps)
            checks += [
                _check(name, shape, "train output", y, ref_y),
                _check(name, shape, "dX", dx, ref_dx),
                _check(name, shape, "dgamma", layer.gamma.grad(ctx).asnumpy().reshape(-1), ref_dgamma),
                _check(name, shape, "dbeta", layer.beta.grad(ctx).asnumpy().reshape(-1), ref_dbeta),
            ]
    got_mm, got_mv = get_stats(layer)
    checks += [_check(name, shape, "moving mean", got_mm, mm), _check(name, shape, "moving var", got_mv, mv)]
    x = rng.normal(1.5, 2.0, shape).astype(np.float32)
    y = layer(nd.array(x, ctx=ctx)).asnumpy()
    checks.append(
        _check(name, shape, "predict output", y, bn_forward(x, gamma, beta, mm, mv, eps, momentum, training=False)[0])
    )
    return checks


def check_per_example(
    factory: LayerFactory,
    shape: tuple,
    num_groups: int,
    name: str = "layer",
    ctx: mx.Context | None = None,
    seed: int = 0,
    eps: float = 1e-5,
) -> list[Check]:
    """Hold one LayerNorm or GroupNorm block to the float64 reference of group normalization.

    One training step's output and gradients are checked, then the prediction output and input gradient
    on a fresh batch: with no moving statistics, prediction must normalize each example as training does.

    Args:
        factory: builds the block from (num_features, num_dims), as ``Norm.layer`` does.
        shape: the input's shape, (N, C) or (N, C, H, W).
        num_groups: the reference's groups of channels (1: layer normalization).
        name: how the checks name the block.
        ctx: where the block runs (the CPU by default).
        seed: seeds the inputs, gamma and beta.
        eps: the reference's epsilon (MXNet's 1e-5).
    """
    ctx = ctx or mx.cpu()
    rng = np.random.default_rng(seed)
    c = shape[1]
    layer = factory(c, len(shape))
    layer.initialize(ctx=ctx)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0.0, 0.5, c)
    set_affine(layer, gamma, beta)
    x = rng.normal(1.5, 2.0, shape).astype(np.float32)
    dy = rng.normal(0.0, 1.0, shape).astype(np.float32)
    y, dx = run_step(layer, x, dy, ctx)
    ref_dx, ref_dgamma, ref_dbeta = group_norm_backward(x, gamma, dy, num_groups, eps)
    checks = [
        _check(name, shape, "train output", y, group_norm_forward(x, gamma, beta, num_groups, eps)),
        _check(name, shape, "dX", dx, ref_dx),
        _check(name, shape, "dgamma", layer.gamma.grad(ctx).asnumpy().reshape(-1), ref_dgamma),
        _check(name, shape, "dbeta", layer.beta.grad(ctx).asnumpy().reshape(-1), ref_dbeta),
    ]
    x = rng.normal(1.5, 2.0, shape).astype(np.float32)
    dy = rng.normal(0.0, 1.0, shape).astype(np.float32)
    y, dx = run_step(layer, x, dy, ctx, scope=lambda: autograd.record(train_mode=False))
    return [
        *checks,
        _check(name, shape, "predict output", y, group_norm_forward(x, gamma, beta, num_groups, eps)),
        _check(name, shape, "predict dX", dx, group_norm_backward(x, gamma, dy, num_groups, eps)[0]),
    ]
