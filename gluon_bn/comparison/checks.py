"""Side by side with ``gluon.nn.BatchNorm``: what agrees, what differs, and why, measured.

Three kinds of evidence, each a list of small records that reports and tests share:

- :func:`check_layer`: one BN block against the float64 reference of the paper's formulas
  (training output, gradients, moving statistics after k steps, prediction output);
- :func:`known_differences`: each known gap between the chapter's layer and Gluon's, shown
  at both layers' defaults and then closed by aligning its one cause;
- :func:`mode_table`: which statistics each layer uses under each ``autograd`` scope.

Any block with ``gamma``/``beta`` Parameters and either the chapter's ``moving_mean``/
``moving_var`` NDArrays or Gluon's ``running_mean``/``running_var`` Parameters can be checked.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..norms import NORMS
from .bnstate import get_stats, is_bn, set_affine, set_stats
from .reference import bn_backward, bn_forward, reduce_axes

__all__ = ["COMPARED", "Check", "Difference", "ModeRow", "check_layer", "known_differences", "mode_table",
           "variance_estimator"]

LayerFactory = Callable[[int, int], gluon.Block]

#: The two layers the chapter sets side by side, by their names in ``norms.NORMS``.
COMPARED = ("scratch", "gluon")


#: Tolerances (atol, rtol) for float32 layers against the float64 reference: a few times
#: the float32 error of MXNet's fused CPU operator at LeNet's largest BN shape (relative
#: ~2e-5 there, where the chapter's two-pass formulas stay near 1e-7), and far below what a
#: wrong reduction axis or the unbiased variance (relative 1/(m-1)) does at m <= 256.
TOLERANCES = {"train output": (3e-4, 1e-4), "dX": (1e-5, 1e-3), "dgamma": (1e-3, 1e-4),
              "dbeta": (1e-3, 1e-4), "moving mean": (1e-5, 1e-4), "moving var": (1e-5, 1e-4),
              "predict output": (3e-4, 1e-4)}


def _make(factory: LayerFactory, c: int, ndim: int, ctx: mx.Context) -> gluon.Block:
    layer = factory(c, ndim)
    layer.initialize(ctx=ctx)
    if not is_bn(layer):
        raise TypeError(
            f"cannot compare {type(layer).__name__}: a BN block needs gamma/beta Parameters and either "
            "moving_mean/moving_var NDArrays (the chapter's) or running_mean/running_var Parameters (Gluon's)")
    return layer


def _step(layer: gluon.Block, x: np.ndarray, dy: np.ndarray | None, ctx: mx.Context,
          scope: Callable[[], contextlib.AbstractContextManager] = autograd.record):
    """One forward (and backward with head gradient ``dy`` unless None) under ``scope``."""
    X = nd.array(x, ctx=ctx)
    X.attach_grad()
    with scope():
        Y = layer(X)
    if dy is not None:
        Y.backward(nd.array(dy, ctx=ctx))
    return Y.asnumpy().astype(np.float64), X.grad.asnumpy().astype(np.float64)


def _gap(a, b) -> float:
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
    return Check(layer, tuple(shape), quantity, float(err.max()), float(err.max()) / scale, atol, rtol,
                 bool(got.shape == want.shape and np.all(err <= atol + rtol * np.abs(want))))


def check_layer(factory: LayerFactory, shape: tuple, name: str = "layer", steps: int = 3,
                ctx: mx.Context | None = None, seed: int = 0, eps: float = 1e-5,
                momentum: float = 0.9) -> list[Check]:
    """Hold one BN block to the float64 reference of the paper's formulas.

    The reference starts from the block's own initial moving statistics. Step 1's training
    output and gradients are checked, the moving statistics after ``steps`` training steps
    (forward and backward), then the prediction output on a fresh batch.
    """
    ctx = ctx or mx.cpu()
    rng = np.random.default_rng(seed)
    c = shape[1]
    layer = _make(factory, c, len(shape), ctx)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0.0, 0.5, c)
    set_affine(layer, gamma, beta)
    mm, mv = get_stats(layer)
    checks = []
    for k in range(steps):
        x = rng.normal(1.5, 2.0, shape).astype(np.float32)
        dy = rng.normal(0.0, 1.0, shape).astype(np.float32)
        y, dx = _step(layer, x, dy, ctx)
        ref_y, mm, mv = bn_forward(x, gamma, beta, mm, mv, eps, momentum, training=True)
        if k == 0:
            ref_dx, ref_dgamma, ref_dbeta = bn_backward(x, gamma, dy, eps)
            checks += [_check(name, shape, "train output", y, ref_y),
                       _check(name, shape, "dX", dx, ref_dx),
                       _check(name, shape, "dgamma", layer.gamma.grad(ctx).asnumpy().reshape(-1), ref_dgamma),
                       _check(name, shape, "dbeta", layer.beta.grad(ctx).asnumpy().reshape(-1), ref_dbeta)]
    got_mm, got_mv = get_stats(layer)
    checks += [_check(name, shape, "moving mean", got_mm, mm), _check(name, shape, "moving var", got_mv, mv)]
    x = rng.normal(1.5, 2.0, shape).astype(np.float32)
    y = layer(nd.array(x, ctx=ctx)).asnumpy()
    checks.append(_check(name, shape, "predict output", y,
                         bn_forward(x, gamma, beta, mm, mv, eps, momentum, training=False)[0]))
    return checks


# -- 2. the known differences, shown and then closed -------------------------------------

@dataclass(frozen=True)
class Difference:
    """A gap between the layers at their defaults, and the same gap once its cause is aligned."""

    name: str
    measured: str
    default_gap: float
    aligned_gap: float
    tolerance: float
    expected_visible: bool | None  # None: depends on the context, only measured
    explanation: str

    @property
    def visible(self) -> bool:
        return self.default_gap > self.tolerance

    @property
    def closes(self) -> bool:
        return self.aligned_gap <= self.tolerance

    @property
    def ok(self) -> bool:
        return self.closes and self.expected_visible in (None, self.visible)

    def to_dict(self) -> dict:
        return {**asdict(self), "visible": self.visible, "closes": self.closes, "ok": self.ok}


def _pair(ctx, c, ndim, align_init: bool, gluon_kwargs=None):
    """A scratch and a Gluon layer on ``ctx``; with ``align_init`` both start at mean 0, var 1."""
    scratch = _make(NORMS["scratch"].layer, c, ndim, ctx)
    gl = nn.BatchNorm(in_channels=c, **(gluon_kwargs or {}))
    gl.initialize(ctx=ctx)
    if align_init:
        set_stats(scratch, np.zeros(c), np.ones(c), ctx)
    return scratch, gl


def variance_estimator(ctx: mx.Context | None = None, shape=(4, 3, 2, 2), seed: int = 0) -> dict:
    """Measure which variance estimate ``nn.BatchNorm`` folds into its running variance here."""
    ctx = ctx or mx.cpu()
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, shape).astype(np.float32)
    _, gl = _pair(ctx, shape[1], len(shape), align_init=True)
    _step(gl, x, np.ones(shape, np.float32), ctx)
    got = get_stats(gl)[1]
    axes = reduce_axes(len(shape))
    m = x.size // shape[1]
    biased = 0.9 + 0.1 * x.astype(np.float64).var(axis=axes)
    unbiased = 0.9 + 0.1 * x.astype(np.float64).var(axis=axes) * m / (m - 1)
    gaps = {"biased": _gap(got, biased), "unbiased": _gap(got, unbiased)}
    return {"context": str(ctx), "estimator": min(gaps, key=gaps.get), "gap_to_biased": gaps["biased"],
            "gap_to_unbiased": gaps["unbiased"], "examples_per_channel": m}


def known_differences(ctx: mx.Context | None = None, seed: int = 0) -> list[Difference]:
    """Every known difference between the chapter's BatchNorm and ``nn.BatchNorm``, measured here."""
    ctx = ctx or mx.cpu()
    on_cpu = ctx.device_type == "cpu"
    rng = np.random.default_rng(seed)
    shape, c = (16, 3, 4, 4), 3
    x1, x2 = (rng.normal(1.5, 2.0, shape).astype(np.float32) for _ in range(2))
    dy = np.ones(shape, np.float32)
    tol = 1e-4
    rows = []

    # (a) Initial moving variance: zeros in the chapter, ones in Gluon.
    gaps = []
    for align in (False, True):
        scratch, gl = _pair(ctx, c, 4, align)
        for layer in (scratch, gl):
            _step(layer, x1, dy, ctx)
        gaps.append(_gap(scratch(nd.array(x2, ctx=ctx)).asnumpy(), gl(nd.array(x2, ctx=ctx)).asnumpy()))
    rows.append(Difference(
        "initial moving_var", "prediction output after one training step, max abs diff scratch vs gluon",
        gaps[0], gaps[1], tol, True,
        "The chapter starts moving_var at zeros, Gluon's running_var at ones. With momentum 0.9 "
        "the moving variance after one step is 0.1*var (chapter) vs 0.9 + 0.1*var (Gluon), so "
        "prediction-mode outputs differ a lot in the first steps; the gap decays as 0.9^t. "
        "Aligned: the chapter's moving_var set to ones."))

    # (b) When the running statistics are updated: forward (chapter) vs backward (MXNet's CPU operator).
    gaps = []
    for backward in (False, True):
        scratch, gl = _pair(ctx, c, 4, align_init=True)
        for layer in (scratch, gl):
            _step(layer, x1, dy if backward else None, ctx)
        gaps.append(max(_gap(a, b) for a, b in zip(get_stats(scratch), get_stats(gl))))
    rows.append(Difference(
        "update in forward vs backward", "moving statistics after a forward in record(), max abs diff scratch vs gluon",
        gaps[0], gaps[1], tol, True if on_cpu else None,
        "The chapter's layer updates its moving statistics in forward whenever autograd is "
        "training. MXNet's CPU BatchNorm operator folds the batch statistics into running_mean/var "
        "in its backward pass, so a forward inside autograd.record() without backward() (or under "
        "autograd.train_mode() without recording) leaves them unchanged. On a GPU, MXNet's cuDNN "
        "path hands the running statistics to cudnnBatchNormalizationForwardTraining, which "
        "updates them in forward. Aligned: call backward() after the forward."))

    # (c) The variance estimate folded into the running variance: biased (m) or unbiased (m - 1).
    est = variance_estimator(ctx, seed=seed)
    rows.append(Difference(
        "running-variance estimator", f"{est['estimator']} on {est['context']}: running_var after one "
        f"step vs the chapter's biased update (m = {est['examples_per_channel']} per channel)",
        est["gap_to_biased"], min(est["gap_to_biased"], est["gap_to_unbiased"]), tol, False if on_cpu else None,
        "Both layers normalise with the biased batch variance (divide by m). For the running "
        "variance MXNet's CPU operator also uses the biased one, like the chapter; with cuDNN on a "
        "GPU it uses the unbiased estimate var*m/(m-1), which shows up only for small m. Measured "
        "on this context; aligned: compared with the estimator that the context uses."))

    # (d) Momentum convention: MXNet's 0.9 keeps 90% of the old value, PyTorch's 0.1 means the same.
    _, gl = _pair(ctx, c, 4, align_init=True)
    _step(gl, x1, dy, ctx)
    var = x1.astype(np.float64).var(axis=(0, 2, 3))
    torch_update = lambda m: (1 - m) * 1.0 + m * var  # noqa: E731
    got = get_stats(gl)[1]
    rows.append(Difference(
        "momentum convention", "running_var after one step vs PyTorch's update rule with momentum m",
        _gap(got, torch_update(0.9)), _gap(got, torch_update(0.1)), tol, True,
        "MXNet and the chapter: moving = momentum*moving + (1 - momentum)*batch, so momentum 0.9 "
        "keeps 90% of the old value. PyTorch writes moving = (1 - momentum)*moving + momentum*batch: "
        "its default 0.1 is the same rule. Aligned: PyTorch momentum = 1 - 0.9."))

    # (e) eps: both add it to the variance inside the square root, default 1e-5.
    small = (x1 * 1e-2).astype(np.float32)
    gaps = []
    for eps in (1e-3, 1e-5):
        scratch, gl = _pair(ctx, c, 4, align_init=True, gluon_kwargs={"epsilon": eps})
        gaps.append(_gap(_step(scratch, small, dy, ctx)[0], _step(gl, small, dy, ctx)[0]))
    rows.append(Difference(
        "eps convention", "training output on an input of std 0.02, nn.BatchNorm(epsilon=1e-3) vs the "
        "chapter's eps=1e-5", gaps[0], gaps[1], 1e-3, True,
        "Both compute (x - mean) / sqrt(var + eps) with eps = 1e-5 by default, as the paper does. "
        "A different eps (Keras and TensorFlow default to 1e-3) matters only where the variance is "
        "near eps. cuDNN refuses eps below 1e-5. Aligned: nn.BatchNorm(epsilon=1e-5)."))
    return rows


# -- 3. which statistics each autograd scope uses -------------------------------------------

@dataclass(frozen=True)
class ModeRow:
    """Under one autograd scope: the statistics a layer normalised with, and if it updated them."""

    scope: str
    layer: str
    statistics: str  # "batch", "moving" or "neither"
    updated: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _nested(*managers):
    @contextlib.contextmanager
    def scope():
        with contextlib.ExitStack() as stack:
            for make in managers:
                stack.enter_context(make())
            yield
    return scope


#: Scope name -> (context manager factory, whether backward() follows).
SCOPES = {
    "record() + backward()": (autograd.record, True),
    "record() without backward()": (autograd.record, False),
    "record(train_mode=False) + backward()": (lambda: autograd.record(train_mode=False), True),
    "record() + predict_mode() + backward()": (_nested(autograd.record, autograd.predict_mode), True),
    "train_mode() without record()": (autograd.train_mode, False),
    "no scope (plain call)": (contextlib.nullcontext, False),
}


def mode_table(ctx: mx.Context | None = None, seed: int = 0) -> list[ModeRow]:
    """For each scope and layer: batch or moving statistics, and whether the moving ones changed."""
    ctx = ctx or mx.cpu()
    rng = np.random.default_rng(seed)
    shape, c = (16, 3, 4, 4), 3
    x = rng.normal(1.5, 2.0, shape).astype(np.float32)
    mean0, var0 = np.full(c, 0.5), np.full(c, 2.0)
    ones, zeros = np.ones(c), np.zeros(c)
    by_batch = bn_forward(x, ones, zeros, mean0, var0, training=True)[0]
    by_moving = bn_forward(x, ones, zeros, mean0, var0, training=False)[0]
    rows = []
    for scope, (manager, backward) in SCOPES.items():
        for name in COMPARED:
            layer = _make(NORMS[name].layer, c, 4, ctx)
            set_stats(layer, mean0, var0, ctx)
            y, _ = _step(layer, x, np.ones(shape, np.float32) if backward else None, ctx, scope=manager)
            used = ("batch" if _gap(y, by_batch) < 1e-3 else "moving" if _gap(y, by_moving) < 1e-3
                    else "neither")
            mean, var = get_stats(layer)
            rows.append(ModeRow(scope, name, used, _gap(mean, mean0) > 1e-7 or _gap(var, var0) > 1e-7))
    return rows
