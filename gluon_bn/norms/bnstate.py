"""Reading and writing a BN block's state, for the chapter's convention and Gluon's alike.

The chapter's ``BatchNorm`` keeps its moving statistics as plain NDArray attributes
(``moving_mean``/``moving_var``, shaped like gamma); ``nn.BatchNorm`` keeps them as
Parameters (``running_mean``/``running_var``, shape (C,)). Everything that inspects or
changes moving statistics goes through these functions. Two ways save and put back a whole
net's statistics: ``snapshot_stats``/``restore_stats`` hold the device arrays (cheap, inside the
training loop), ``swap_bn_stats`` their values on the host (to swap in other statistics).
Only BN blocks have moving statistics (``is_bn``, ``bn_layers``); ``norm_layers`` finds every
normalization block, LayerNorm and GroupNorm too, for its gamma and beta.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

__all__ = [
    "bn_layers",
    "get_stats",
    "is_bn",
    "layer_stat_copies",
    "norm_layers",
    "restore_stats",
    "set_affine",
    "set_layer_stat_copies",
    "set_stats",
    "snapshot_stats",
    "stat_copies",
    "swap_bn_stats",
]


def _is_gluon_style(layer: gluon.Block) -> bool:
    return isinstance(getattr(layer, "running_mean", None), gluon.Parameter)


def is_bn(layer: gluon.Block) -> bool:
    """Whether ``layer`` is a BN block in either convention."""
    return isinstance(getattr(layer, "gamma", None), gluon.Parameter) and (
        _is_gluon_style(layer) or isinstance(getattr(layer, "moving_mean", None), nd.NDArray)
    )


def bn_layers(net: gluon.Block) -> list[gluon.Block]:
    """Every BN block inside ``net``, in order."""
    found: list[gluon.Block] = []
    net.apply(lambda block: found.append(block) if is_bn(block) else None)
    return found


def norm_layers(net: gluon.Block) -> list[gluon.Block]:
    """Every normalization block inside ``net``, in order: those with ``gamma`` and ``beta`` Parameters
    (BN in either convention, LayerNorm, GroupNorm), not the blocks inside one (``GroupNorm``'s own)."""
    found: list[gluon.Block] = []
    net.apply(lambda block: found.append(block) if _has_affine(block) else None)
    inside = {p for block in found for p in block.collect_params().values() if p not in (block.gamma, block.beta)}
    return [block for block in found if block.gamma not in inside]


def _has_affine(block: gluon.Block) -> bool:
    return all(isinstance(getattr(block, name, None), gluon.Parameter) for name in ("gamma", "beta"))


def get_stats(layer: gluon.Block) -> tuple[np.ndarray, np.ndarray]:
    """The block's moving mean and variance as flat float64 vectors."""
    if _is_gluon_style(layer):
        mean, var = layer.running_mean.data(), layer.running_var.data()
    else:
        mean, var = layer.moving_mean, layer.moving_var
    return mean.asnumpy().astype(np.float64).reshape(-1), var.asnumpy().astype(np.float64).reshape(-1)


def set_stats(layer: gluon.Block, mean, var, ctx: mx.Context) -> None:
    """Overwrite the block's moving mean and variance.

    Args:
        layer: a BN block, in the chapter's convention or Gluon's.
        mean: the new moving mean, one value per feature (reshaped to the block's own shape).
        var: the new moving variance, one value per feature (reshaped likewise).
        ctx: where the new arrays are made; the chapter's layer keeps its one copy there.
    """
    if _is_gluon_style(layer):
        for param, value in ((layer.running_mean, mean), (layer.running_var, var)):
            param.set_data(nd.array(np.reshape(value, param.shape), ctx=ctx, dtype=param.dtype))
    else:
        shape, dtype = layer.moving_mean.shape, layer.moving_mean.dtype
        layer.moving_mean = nd.array(np.reshape(mean, shape), ctx=ctx, dtype=dtype)
        layer.moving_var = nd.array(np.reshape(var, shape), ctx=ctx, dtype=dtype)


def layer_stat_copies(layer: gluon.Block) -> list[tuple[np.ndarray, np.ndarray]]:
    """The moving mean and variance of every copy the block keeps: one per device for
    ``nn.BatchNorm`` on several devices, a single one for the chapter's convention."""
    if not _is_gluon_style(layer):
        return [get_stats(layer)]
    return [
        (m.asnumpy().astype(np.float64), v.asnumpy().astype(np.float64))
        for m, v in zip(layer.running_mean.list_data(), layer.running_var.list_data())
    ]


def set_layer_stat_copies(layer: gluon.Block, copies: list, ctx: mx.Context) -> None:
    """Put back what ``layer_stat_copies`` returned (the chapter's single copy goes to ``ctx``)."""
    if not _is_gluon_style(layer):
        set_stats(layer, *copies[0], ctx)
        return
    for param, which in ((layer.running_mean, 0), (layer.running_var, 1)):
        if len(copies) != len(param.list_data()):
            raise ValueError(
                f"{len(copies)} saved copies of {param.name} for {len(param.list_data())} devices: "
                "resume on as many devices as the run was started with"
            )
        for target, copy in zip(param.list_data(), copies):
            nd.array(np.reshape(copy[which], param.shape), dtype=param.dtype).copyto(target)


def set_affine(layer: gluon.Block, gamma, beta) -> None:
    """Overwrite the block's scale and shift."""
    for param, value in ((layer.gamma, gamma), (layer.beta, beta)):
        param.set_data(nd.array(np.reshape(value, param.shape), ctx=param.list_ctx()[0]))


def snapshot_stats(net: gluon.Block) -> list[tuple]:
    """Every BN layer's moving statistics as they are now, cheaply, for ``restore_stats``.

    The chapter's layer replaces its NDArrays on each update, so holding the current ones is
    enough; Gluon's are Parameters updated in place (in backward on CPU, in forward with
    cuDNN), so theirs are copied, on every context (none yet before the first batch has
    completed their deferred shapes). Neither waits for the device.
    """
    saved = []
    for layer in bn_layers(net):
        if _is_gluon_style(layer):
            try:
                arrays = [d.copy() for p in (layer.running_mean, layer.running_var) for d in p.list_data()]
            except gluon.parameter.DeferredInitializationError:  # shapes come with the first batch
                continue
            saved.append((layer, arrays))
        else:
            saved.append((layer, (layer.moving_mean, layer.moving_var)))
    return saved


def restore_stats(saved: list[tuple]) -> None:
    """Put back the moving statistics ``snapshot_stats`` took."""
    for layer, arrays in saved:
        if _is_gluon_style(layer):
            targets = [d for p in (layer.running_mean, layer.running_var) for d in p.list_data()]
            for source, target in zip(arrays, targets):
                source.copyto(target)
        else:
            layer.moving_mean, layer.moving_var = arrays


def swap_bn_stats(net: gluon.Block, stats: list | None = None, ctx=None) -> list[list[tuple]]:
    """Return every BN layer's statistics, a list of (mean, var), one per device copy; with ``stats``
    (such lists as this returned, or one (mean, var) per layer for every copy), put those in their place."""
    layers = bn_layers(net)
    current = [layer_stat_copies(layer) for layer in layers]
    if stats is not None:
        ctx = (ctx if isinstance(ctx, mx.Context) else list(ctx)[0]) if ctx else layers[0].gamma.list_ctx()[0]
        for layer, copies, now in zip(layers, stats, current):
            set_layer_stat_copies(layer, copies if isinstance(copies, list) else [copies] * len(now), ctx)
    return current


def stat_copies(net: gluon.Block) -> list[np.ndarray]:
    """Every copy of the model's moving statistics, each as one vector over all BN layers."""
    per_layer = [layer_stat_copies(layer) for layer in bn_layers(net)]
    return [np.concatenate([v for copies in per_layer for v in copies[j]]) for j in range(len(per_layer[0]))]
