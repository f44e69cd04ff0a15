"""Precise BN: re-estimate every BN layer's population statistics after training.

During training the moving averages trail weights that keep changing (at lr 1.0 they
change fast), so prediction-mode accuracy swings from epoch to epoch. Re-estimating the
statistics over a sample of the training set with the weights frozen removes that lag
(Ioffe & Szegedy, 2015, Alg. 2; Wu & Johnson, 2021, "Rethinking Batch in BatchNorm").
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from mxnet import autograd, gluon

from ..runtime.compiled import imperative
from ..runtime.devices import Contexts, as_list
from .axes import reduce_axes
from .bnstate import bn_layers, layer_stat_copies, set_layer_stat_copies, set_stats

__all__ = ["recompute_bn_stats"]


def recompute_bn_stats(
    net: gluon.Block, data_iter: Iterable, num_batches: int | None = 100, ctx: Contexts | None = None
) -> int:
    """Set each BN layer's moving mean/variance to its input's mean/variance over the data.

    The network runs forward in training mode (each BN layer normalizes with its batch's
    statistics, as during training); every BN layer's input is accumulated in float64, and its
    moving statistics become the mean and the (biased) variance of all those examples. Weights
    do not change. Works for the chapter's ``BatchNorm`` and ``nn.BatchNorm`` alike; returns the
    number of examples used.

    Args:
        net: the trained model; it must have at least one BN layer.
        data_iter: the batches, (X, y) pairs; only X is used (a sample of the training set).
        num_batches: the most batches used (positive); None uses every batch ``data_iter`` gives.
        ctx: where the net runs; of a list, the first. A net on several devices is run on the first
            (whole batches), and every device gets the result. None: where the first BN layer's gamma is.
    """
    layers = bn_layers(net)
    if not layers:
        raise ValueError("recompute_bn_stats: the net has no BN layer")
    if num_batches is not None and num_batches <= 0:
        raise ValueError(f"num_batches must be positive, got {num_batches}")
    ctx = as_list(ctx)[0] if ctx else layers[0].gamma.list_ctx()[0]
    sums = [None] * len(layers)
    with imperative(net):
        seen = _accumulate(net, layers, data_iter, num_batches, ctx, sums)
    for layer, (count, s1, s2) in zip(layers, sums):
        mean = s1 / count
        set_stats(layer, mean, np.maximum(s2 / count - mean**2, 0.0), ctx)
    return seen


def _accumulate(net, layers, data_iter, num_batches, ctx, sums) -> int:
    """Run ``net`` in training mode over the batches, summing each BN layer's input into ``sums``."""
    saved = None  # restored if anything fails: the chapter's layer updates its stats in forward

    def hook_for(i):
        def hook(block, inputs):
            X = inputs[0].astype("float64")
            axes = reduce_axes(X.ndim)
            count = X.size // X.shape[1]
            s1 = X.sum(axis=axes).asnumpy().reshape(-1)
            s2 = (X**2).sum(axis=axes).asnumpy().reshape(-1)
            sums[i] = (count, s1, s2) if sums[i] is None else (sums[i][0] + count, sums[i][1] + s1, sums[i][2] + s2)

        return hook

    handles = []
    seen = 0
    try:
        for b, (X, _) in enumerate(data_iter):
            if num_batches is not None and b >= num_batches:
                break
            X = X.as_in_context(ctx)
            if saved is None:
                net(X).wait_to_read()  # prediction mode: completes deferred shapes, changes nothing
                saved = [layer_stat_copies(layer) for layer in layers]
                handles = [layer.register_forward_pre_hook(hook_for(i)) for i, layer in enumerate(layers)]
            with autograd.train_mode():
                net(X).wait_to_read()
            seen += X.shape[0]
    except BaseException:
        for layer, copies in zip(layers, saved or []):
            set_layer_stat_copies(layer, copies, ctx)
        raise
    finally:
        for handle in handles:
            handle.detach()
    if seen == 0:
        raise ValueError("recompute_bn_stats: the data iterator gave no batch")
    return seen
