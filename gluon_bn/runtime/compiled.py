"""Compiled (hybridized) graphs: faster, same numbers. CPU threads are set before MXNet loads: see ``threads``."""

from __future__ import annotations

import contextlib
from typing import Iterator

from mxnet import gluon

__all__ = ["compile_net", "imperative", "is_compiled"]


def compile_net(net: gluon.Block) -> gluon.Block:
    """Hybridize ``net`` with static memory: one compiled graph per hybrid block, same numbers."""
    net.hybridize(static_alloc=True)
    return net


def is_compiled(net: gluon.Block) -> bool:
    """Whether ``hybridize`` compiled any block of ``net`` (blocks marked ``always_compiled`` aside).

    Gluon 1.9.1 has no public way to ask, so this reads ``HybridBlock._active``, the flag
    ``hybridize`` sets; ``tests/test_runtime.py`` fails loudly if MXNet renames it.
    """
    found: list[bool] = []
    net.apply(
        lambda block: found.append(
            isinstance(block, gluon.HybridBlock) and block._active and not getattr(block, "always_compiled", False)
        )
    )
    return any(found)


@contextlib.contextmanager
def imperative(net: gluon.Block) -> Iterator[gluon.Block]:
    """Run ``net`` imperatively inside the block (so forward hooks fire), compiled again after."""
    was_compiled = is_compiled(net)
    net.hybridize(active=False)
    try:
        yield net
    finally:
        if was_compiled:
            compile_net(net)
