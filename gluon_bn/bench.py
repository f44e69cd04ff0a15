"""Timing of BN layers at LeNet's shapes: medians of repeated runs, ratios to nn.BatchNorm."""
from __future__ import annotations

import time
from typing import Callable, Mapping

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

__all__ = ["LENET_BN_SHAPES", "time_bn_layers"]

#: The input shapes of LeNet's four BN layers at the chapter's batch size.
LENET_BN_SHAPES = ((256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84))


def _median_ms(fn: Callable[[], None], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def time_bn_layers(factories: Mapping[str, Callable[[int, int], gluon.Block]],
                   shapes=LENET_BN_SHAPES, ctx: mx.Context | None = None, repeats: int = 20,
                   baseline: str = "gluon") -> list[dict]:
    """Median training-mode forward and forward+backward time of each layer at each shape.

    Each row carries its ratio to ``baseline`` measured in the same run, at the same shape.
    """
    ctx = ctx or mx.cpu()
    rows = []
    for shape in shapes:
        X = nd.random.normal(shape=shape, ctx=ctx)
        dy = nd.ones(shape, ctx=ctx)
        X.attach_grad()
        per_shape = []
        for name, factory in factories.items():
            layer = factory(shape[1], len(shape))
            layer.initialize(ctx=ctx)

            def forward():
                with autograd.record():
                    layer(X).wait_to_read()

            def forward_backward():
                with autograd.record():
                    Y = layer(X)
                Y.backward(dy)
                nd.waitall()

            per_shape.append({"layer": name, "shape": list(shape),
                              "forward_ms": _median_ms(forward, repeats),
                              "forward_backward_ms": _median_ms(forward_backward, repeats)})
        base = next((r for r in per_shape if r["layer"] == baseline), None)
        for row in per_shape:
            for key in ("forward", "forward_backward"):
                row[f"{key}_ratio"] = row[f"{key}_ms"] / base[f"{key}_ms"] if base else None
        rows += per_shape
    return rows
