"""Several devices, d2l's way: a ``--ctx`` list, a batch split across the devices, a net run on the shards.

``cpu(0)``, ``cpu(1)``, ... are distinct MXNet contexts, so everything here runs (and is
tested) on one CPU exactly as it runs on ``gpu(0)``, ``gpu(1)``, ...
"""

from __future__ import annotations

from typing import Sequence, Union

import mxnet as mx
from mxnet import gluon, nd

from ..errors import UsageError
from . import gpus, threads

__all__ = [
    "CONTEXTS",
    "Contexts",
    "as_list",
    "check_threads",
    "describe",
    "forward_shards",
    "parse_contexts",
    "resolve_context",
    "split_batch",
]

#: --ctx names for one device; several are listed as kind:index, e.g. cpu:0,cpu:1 (``parse_contexts``).
CONTEXTS = ("cpu", "gpu", "auto")

#: One context, or a list of them (data parallel).
Contexts = Union[mx.Context, Sequence[mx.Context]]


def as_list(ctx: Contexts) -> list[mx.Context]:
    """``ctx`` as a list of contexts (a single one becomes a list of one)."""
    return [ctx] if isinstance(ctx, mx.Context) else list(ctx)


def describe(ctx: Contexts) -> str:
    """How logs and reports name the devices: ``cpu(0)`` or ``[cpu(0), cpu(1)]``."""
    contexts = as_list(ctx)
    return str(contexts[0]) if len(contexts) == 1 else "[" + ", ".join(map(str, contexts)) + "]"


def parse_contexts(text: str) -> list[mx.Context]:
    """A comma-separated list such as ``cpu:0,cpu:1`` or ``gpu:0,gpu:1`` as contexts.

    Raises ValueError naming the problem and the fix: a malformed entry, a duplicate,
    CPUs mixed with GPUs (their copies would not run at one pace), or a GPU MXNet does not see.
    """
    contexts = []
    for entry in text.split(","):
        kind, _, index = entry.strip().partition(":")
        if kind not in ("cpu", "gpu") or not index.isdigit():
            raise ValueError(
                f"--ctx {text}: {entry.strip()!r} is not a device; write kind:index, e.g. cpu:0,cpu:1 or gpu:0,gpu:1"
            )
        contexts.append(mx.Context(kind, int(index)))
    if len(set(contexts)) != len(contexts):
        raise ValueError(f"--ctx {text}: a device is listed twice; each shard needs a device of its own")
    if len({c.device_type for c in contexts}) > 1:
        raise ValueError(f"--ctx {text}: CPUs and GPUs mixed; list devices of one kind")
    gpus = [c for c in contexts if c.device_type == "gpu"]
    visible = mx.context.num_gpus() if gpus else 0
    missing = [str(c) for c in gpus if c.device_id >= visible]
    if missing:
        raise ValueError(
            f"--ctx {text}: MXNet sees {visible} GPU(s), so {', '.join(missing)} does not exist; "
            "list GPUs from gpu:0 up, or use cpu:0,cpu:1"
        )
    return contexts


def check_threads(contexts: list[mx.Context], operator_threads: int) -> None:
    """Refuse a set-up that can hang: several CPU contexts, oneDNN off and more than one operator thread."""
    cpus = [c for c in contexts if c.device_type == "cpu"]
    if len(cpus) > 1 and not threads.onednn() and operator_threads > 1:
        raise ValueError(
            f"{len(cpus)} CPU contexts with MXNET_MKLDNN_ENABLED=0 and {operator_threads} operator "
            "threads can hang MXNet 1.9.1 (OpenMP regions of two contexts at once): use --threads 1, "
            "or leave oneDNN on"
        )


def split_batch(X: nd.NDArray, y: nd.NDArray, ctx: Contexts) -> tuple[list[nd.NDArray], list[nd.NDArray]]:
    """One shard of (X, y) per device (gluon's ``split_and_load``); a batch smaller than the
    device count goes to its first devices, one example each."""
    contexts = as_list(ctx)[: X.shape[0]]
    return (
        gluon.utils.split_and_load(X, contexts, even_split=False),
        gluon.utils.split_and_load(y, contexts, even_split=False),
    )


def forward_shards(net: gluon.Block, shards: Sequence[nd.NDArray]) -> list[nd.NDArray]:
    """``net`` on every shard: one call per shard, or one call on them all for a net whose
    layers must see every shard at once (``takes_shards``: synchronized BN)."""
    if getattr(net, "takes_shards", False):
        return net(list(shards))
    return [net(X) for X in shards]


def resolve_context(name: str) -> Contexts:
    """'cpu', 'gpu' (must exist) or 'auto' (a GPU when MXNet sees one) to an MXNet context;
    a list such as 'cpu:0,cpu:1' to a list of contexts (data parallel; one entry: that context).

    Every GPU is checked first: one MXNet 1.9.1 cannot run on is a ``UsageError``, never a CPU instead."""
    if name == "auto":
        return gpus.try_gpu()
    contexts = _named_contexts(name)
    for ctx in as_list(contexts):
        gpus.check_gpu(ctx)
    return contexts


def _named_contexts(name: str) -> Contexts:
    """The context(s) ``name`` names ('cpu', 'gpu' or a list), as MXNet sees them; GPUs not yet checked."""
    if name == "cpu":
        return mx.cpu()
    if name == "gpu":
        if mx.context.num_gpus() == 0:
            raise UsageError(
                "--ctx gpu: MXNet sees no GPU (this mxnet build or machine has none); "
                "install a CUDA build such as mxnet-cu112 on a GPU machine, or use --ctx cpu"
            )
        return mx.gpu(0)
    if ":" not in name:
        raise UsageError(
            f"unknown context {name!r}: choose from {', '.join(CONTEXTS)}, "
            "or list devices as kind:index, e.g. cpu:0,cpu:1"
        )
    try:
        contexts = parse_contexts(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return contexts[0] if len(contexts) == 1 else contexts
