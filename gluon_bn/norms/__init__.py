"""The one registry of normalizations: each norm's name, label, layer, and what can run it.

The LeNets (``gluon_bn.models.lenet``), the command line's choices, the comparison, ``bench``
and the several-devices report all read ``NORMS``. Beside the batch norms are LayerNorm and
GroupNorm (``per_example.py``), whose statistics are each example's own (docs/norms.md).
Adding a norm is one ``register(Norm(...))`` call plus its layer; ``tests/test_norms.py``
registers a toy one and reproduces with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mxnet.gluon import nn

from ..chapter.layers import BatchNorm
from .fast import FastBatchNorm
from .per_example import group_norm, layer_norm
from .sync import SyncBatchNorm

__all__ = ["NORMS", "Norm", "get", "label", "names", "register"]


@dataclass(frozen=True)
class Norm:
    """One normalization of the chapter's LeNet.

    ``layer(num_features, num_dims, **options)`` builds it (``None``: the LeNet chapter's net, no BN).
    ``compiles``: every layer is Gluon's, so the whole LeNet compiles to one graph. ``benched``:
    ``gluon-bn bench`` times it by default. ``sharded``: it needs every device's shard at once
    (built for ``num_devices``). ``devices``: on several devices, the one-device norm its
    statistics are held against, and ``mechanism`` what it does with its moving statistics there.
    ``options``: the keyword options its layer takes from ``lenet``. ``per_example``: its statistics
    are each example's own, so it keeps no moving statistics and predicts as it trains.
    """

    name: str
    label: str
    layer: Callable[..., nn.Block] | None
    compiles: bool = False
    benched: bool = True
    sharded: bool = False
    devices: str | None = None
    mechanism: str = ""
    options: tuple[str, ...] = ()
    per_example: bool = False


#: Every norm by name, in the order the command line lists them.
NORMS: dict[str, Norm] = {}


def register(norm: Norm) -> Norm:
    """Add ``norm`` to the registry (a name already there is refused)."""
    if norm.name in NORMS or norm.name == "both":
        raise ValueError(f"a norm named {norm.name!r} is registered already: choose another name")
    NORMS[norm.name] = norm
    return norm


def get(name: str) -> Norm:
    """The norm called ``name``; a ValueError listing the names when there is none."""
    try:
        return NORMS[name]
    except KeyError:
        raise ValueError(f"unknown norm {name!r}: choose one of {', '.join(NORMS)}") from None


def names(**wanted: bool) -> tuple[str, ...]:
    """The registered names whose fields equal ``wanted``, e.g. ``names(benched=True)``."""
    return tuple(n.name for n in NORMS.values() if all(getattr(n, k) == v for k, v in wanted.items()))


def label(name: str) -> str:
    """How reports and plots name ``name`` (the name itself when it is no norm's)."""
    return NORMS[name].label if name in NORMS else name


register(
    Norm(
        "scratch",
        "from scratch",
        lambda c, num_dims: BatchNorm(c, num_dims=num_dims),
        devices="scratch",
        mechanism="one set, re-copied to each shard's device in turn: momentum applies once per device, "
        "each update sees one shard, and the set ends on the last device",
    )
)
register(
    Norm(
        "gluon",
        "nn.BatchNorm",
        lambda c, num_dims, **options: nn.BatchNorm(in_channels=c, **options),
        compiles=True,
        devices="gluon",
        options=("gluon_options",),
        mechanism="one copy per device, each updated from its own shard; `save_parameters` writes their mean",
    )
)
register(Norm("none", "no BN", None, compiles=True))
register(Norm("fast", "FastBatchNorm", lambda c, num_dims: FastBatchNorm(c, num_dims=num_dims)))
register(
    Norm(
        "sync",
        "synchronized BN",
        lambda c, num_dims, num_devices=1: SyncBatchNorm(c, num_dims=num_dims, num_devices=num_devices),
        benched=False,
        sharded=True,
        devices="scratch",
        options=("num_devices",),
        mechanism="one set, updated once per step with the whole batch's mean and variance",
    )
)
register(Norm("layer", "LayerNorm", layer_norm, compiles=True, benched=False, per_example=True))
register(Norm("group", "GroupNorm", group_norm, compiles=True, benched=False, per_example=True))
