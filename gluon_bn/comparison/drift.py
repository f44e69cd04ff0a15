"""Two models of one architecture: copy one's state into the other, and measure how far apart they are.

The comparison trains the scratch and the Gluon LeNet from the same start and follows their
drift; the fast layer's whole-model test starts every step from the chapter LeNet's state.
Works across BN conventions (the chapter's NDArrays, Gluon's Parameters) through ``bnstate``.
"""

from __future__ import annotations

import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn

from ..norms.bnstate import bn_layers, get_stats, set_stats
from ..runs.loop import learned_parameters

__all__ = ["copy_parameters", "copy_state", "model_drift", "relative_difference"]


def copy_parameters(source: gluon.Block, target: gluon.Block) -> None:
    """Give ``target`` the learnable parameters of ``source`` (same architecture, any BN style)."""
    src, dst = list(learned_parameters(source).values()), list(learned_parameters(target).values())
    if [p.list_data()[0].size for p in src] != [p.list_data()[0].size for p in dst]:
        raise ValueError("copy_parameters needs two models with the same learnable parameters, in order")
    for s, d in zip(src, dst):  # on several devices every copy is the same; set_data sets them all
        d.set_data(s.list_data()[0].reshape(d.shape).as_in_context(d.list_ctx()[0]))


def copy_state(source: nn.Sequential, target: nn.Sequential) -> None:
    """``copy_parameters`` plus every BN layer's moving statistics."""
    copy_parameters(source, target)
    for a, b in zip(bn_layers(source), bn_layers(target)):
        set_stats(b, *get_stats(a), ctx=b.gamma.list_ctx()[0])


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| relative to the larger of ||a||, ||b||."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-12))


def model_drift(a: nn.Sequential, b: nn.Sequential, probe: nd.NDArray) -> dict:
    """How far two same-architecture models have drifted: weights, statistics, logits, predictions.

    Weights and statistics are compared as one vector each (relative norm of the difference), so
    the biases before BN, whose gradient is ~0 and norm ~1e-7, do not dominate.
    """

    def weights(net):
        return np.concatenate([p.list_data()[0].asnumpy().ravel() for p in learned_parameters(net).values()])

    def stats(net):
        return np.concatenate([s for layer in bn_layers(net) for s in get_stats(layer)] or [np.zeros(0)])

    wa, wb = weights(a), weights(b)
    ya, yb = a(probe), b(probe)
    return {
        "param_rel_diff": relative_difference(wa, wb),
        "param_max_abs_diff": float(np.max(np.abs(wa - wb))),
        "stats_rel_diff": relative_difference(stats(a), stats(b)),
        "logits_max_abs_diff": float(nd.abs(ya - yb).max().asscalar()),
        "prediction_agreement": float((ya.argmax(axis=1) == yb.argmax(axis=1)).mean().asscalar()),
    }
