"""A BN model's moving statistics on several devices: each copy, how far it is from one device's, what each predicts.

The chapter's layer (and FastBatchNorm, and synchronized BN) keep one set of moving statistics;
``nn.BatchNorm`` keeps one copy per device, and ``save_parameters`` writes their mean. These
functions let ``gluon-bn compare`` put numbers on that.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable

import numpy as np
from mxnet import autograd, gluon

from ..norms.bnstate import bn_layers, layer_stat_copies, stat_copies, swap_bn_stats
from ..runs.loop import evaluate_accuracy
from ..runtime.devices import Contexts, as_list, forward_shards, split_batch
from .drift import copy_state, relative_difference

__all__ = ["accuracy_per_copy", "statistics_gap", "stats_distance"]

_LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def stats_distance(net: gluon.Block, reference: np.ndarray) -> list[float]:
    """Relative distance of each copy from ``reference`` (one device's statistics, as ``stat_copies`` gives)."""
    return [relative_difference(copy, reference) for copy in stat_copies(net)]


def _with_copies(net: gluon.Block, copies_per_layer: list, data_iter: Iterable, ctx: Contexts) -> float:
    """Test accuracy with every device given the statistics in ``copies_per_layer``, then put back."""
    saved = swap_bn_stats(net, copies_per_layer, ctx)
    try:
        return evaluate_accuracy(data_iter, net, ctx)
    finally:
        swap_bn_stats(net, saved, ctx)


def accuracy_per_copy(net: gluon.Block, data_iter: Iterable, ctx: Contexts) -> dict:
    """Test accuracy as the devices predict (each with its own copy), with each copy on every
    device, and with the mean of the copies (what ``save_parameters`` keeps)."""
    layers = bn_layers(net)
    per_layer = [layer_stat_copies(layer) for layer in layers]
    count = len(per_layer[0])
    result = {"as_evaluated": evaluate_accuracy(data_iter, net, ctx)}
    if count > 1:
        result["each_copy"] = [
            _with_copies(net, [[copies[j]] * count for copies in per_layer], data_iter, ctx) for j in range(count)
        ]
        mean = [[tuple(np.mean([c[i] for c in copies], axis=0) for i in (0, 1))] * count for copies in per_layer]
        result["mean_of_copies"] = _with_copies(net, mean, data_iter, ctx)
    return result


def statistics_gap(
    clone: gluon.Block, twin: gluon.Block, net: gluon.Block, data_iter: Iterable, ctx: Contexts, num_batches: int = 20
) -> list[float]:
    """How far each statistics copy drifts from one device's when only the BN mechanism differs.

    ``clone`` and ``twin`` both get ``net``'s weights and statistics, then see the same training
    batches forward and backward with the weights held; returns each copy's distance from the
    twin's statistics. Training's own drift (at lr 1.0 rounding grows into visibly different
    weights) is left out.

    Args:
        clone: a model of ``net``'s kind on the devices ``ctx``.
        twin: the same kind of model on one device.
        net: the trained model whose weights and statistics both start from.
        data_iter: the training batches, split over the devices for ``clone``.
        ctx: the devices ``clone`` is on, a context or a list of them.
        num_batches: how many batches both models see.
    """
    contexts, one = as_list(ctx), twin.collect_params().list_ctx()[0]
    for model in (clone, twin):
        copy_state(net, model)
    for X, y in islice(data_iter, num_batches):
        for model, where in ((clone, contexts), (twin, one)):
            Xs, ys = split_batch(X, y, where)
            with autograd.record():
                losses = [_LOSS(y_hat, t) for y_hat, t in zip(forward_shards(model, Xs), ys)]
            autograd.backward(losses)  # nn.BatchNorm updates its CPU statistics in backward
    return stats_distance(clone, stat_copies(twin)[0])
