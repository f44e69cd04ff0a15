"""The chapter's LeNet, with any registered normalization (``gluon_bn.norms``), or none.

``lenet(norm)`` is the chapter's model. Its keyword options build the variants the
chapter's exercises ask about: no bias before BN, BN after the activation or only in
some layers, gamma/beta not learned, options passed to ``nn.BatchNorm``, and dropout.
"""

import mxnet as mx
import numpy as np
from mxnet import gluon, init
from mxnet.gluon import nn

from .norms import Norm, get
from .norms.sync import ShardedSequential
from .runtime.devices import Contexts, as_list

__all__ = ["DROPOUT_WHERE", "PLACEMENTS", "WHERE", "lenet", "seeded_lenet"]

#: BN before the activation (the chapter) or after it.
PLACEMENTS = ("before", "after")
#: Which layers get BN.
WHERE = ("all", "conv", "dense")
#: Which hidden layers get dropout: the dense ones, or all (conv too).
DROPOUT_WHERE = ("dense", "all")


def _bn(norm: Norm, num_features: int, num_dims: int, learn_affine: bool, options: dict) -> nn.Block:
    """One BN layer of the requested kind (``options`` go to its factory)."""
    layer = norm.layer(num_features, num_dims, **options)
    if not learn_affine:
        layer.gamma.grad_req = layer.beta.grad_req = "null"
    return layer


def lenet(
    norm: str = "scratch",
    *,
    use_bias: bool = True,
    placement: str = "before",
    where: str = "all",
    learn_affine: bool = True,
    gluon_options: dict | None = None,
    num_devices: int = 1,
    dropout: float = 0.0,
    dropout_where: str = "dense",
    conv_dropout: float | None = None,
) -> nn.Sequential:
    """Build the chapter's LeNet; with the defaults and BN, ``net[1]`` is the first BN layer.

    A ``HybridSequential`` (a kind of ``nn.Sequential``) when every layer is Gluon's.

    Args:
        norm: the normalization, a name in ``gluon_bn.norms.NORMS``; one without a layer gives the
            LeNet chapter's baseline (sigmoid inside the layers, no BN). ``'sync'`` synchronizes BN
            over ``num_devices`` devices (a ``ShardedSequential``).
        use_bias: False drops the bias of the layers BN normalizes (of every hidden layer without BN).
        placement: ``'before'`` puts BN before the sigmoid (the chapter), ``'after'`` after it.
        where: ``'all'`` layers get BN, or only the ``'conv'`` or the ``'dense'`` layers.
        learn_affine: False freezes gamma and beta (``grad_req='null'``).
        gluon_options: go to ``nn.BatchNorm`` (``norm='gluon'`` only).
        num_devices: the devices synchronized BN spans (``norm='sync'`` only).
        dropout: the rate of an ``nn.Dropout`` after each hidden dense layer's sigmoid (after the whole
            block: layer, BN, sigmoid); 0 adds none.
        dropout_where: ``'dense'`` hidden layers only, or ``'all'``: the conv layers too (before pooling).
        conv_dropout: the conv layers' rate with ``dropout_where='all'``; None: ``dropout``.
    """
    entry = get(norm)
    rates = _dropout_rates(dropout, dropout_where, conv_dropout)
    if placement not in PLACEMENTS or where not in WHERE:
        raise ValueError(
            f"placement must be one of {PLACEMENTS} and where one of {WHERE}, got {placement!r} and {where!r}"
        )
    if gluon_options and "gluon_options" not in entry.options:
        raise ValueError("gluon_options apply to nn.BatchNorm only: use norm='gluon'")
    if num_devices != 1 and not entry.sharded:
        raise ValueError(
            f"num_devices={num_devices} applies to synchronized BN only: use norm='sync' "
            "(the other layers need no count; they run on any devices)"
        )
    # With only Gluon's layers the whole net can compile to one graph (``runtime.compile_net``).
    net = nn.HybridSequential() if entry.compiles else ShardedSequential() if entry.sharded else nn.Sequential()
    options = gluon_options or ({"num_devices": num_devices} if entry.sharded else {})
    if entry.layer is None:
        # The LeNet chapter's baseline: sigmoid activations inside the layers.
        net.add(
            nn.Conv2D(channels=6, kernel_size=5, activation="sigmoid", use_bias=use_bias),
            *_dropout(rates["conv"]),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=5, activation="sigmoid", use_bias=use_bias),
            *_dropout(rates["conv"]),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120, activation="sigmoid", use_bias=use_bias),
            *_dropout(rates["dense"]),
            nn.Dense(84, activation="sigmoid", use_bias=use_bias),
            *_dropout(rates["dense"]),
            nn.Dense(10),
        )
        return net

    def block(make_layer, num_features, num_dims, kind):
        """layer, BN, sigmoid in the requested order (BN left out where not wanted), then any dropout."""
        with_bn = where == "all" or where == kind
        layer = make_layer(use_bias or not with_bn)
        bn = _bn(entry, num_features, num_dims, learn_affine, options) if with_bn else None
        parts = (
            [layer, bn, nn.Activation("sigmoid")] if placement == "before" else [layer, nn.Activation("sigmoid"), bn]
        )
        return [p for p in parts if p is not None] + _dropout(rates[kind])

    net.add(
        *block(lambda b: nn.Conv2D(6, kernel_size=5, use_bias=b), 6, 4, "conv"),
        nn.MaxPool2D(pool_size=2, strides=2),
        *block(lambda b: nn.Conv2D(16, kernel_size=5, use_bias=b), 16, 4, "conv"),
        nn.MaxPool2D(pool_size=2, strides=2),
        *block(lambda b: nn.Dense(120, use_bias=b), 120, 2, "dense"),
        *block(lambda b: nn.Dense(84, use_bias=b), 84, 2, "dense"),
        nn.Dense(10),
    )
    return net


def _dropout_rates(dropout: float, where: str, conv_dropout: float | None) -> dict[str, float]:
    """The dropout rate of the conv and of the dense hidden layers; a ValueError naming the fix."""
    if where not in DROPOUT_WHERE:
        raise ValueError(f"dropout_where must be one of {DROPOUT_WHERE}, got {where!r}")
    if conv_dropout is not None and where != "all":
        raise ValueError("conv_dropout applies to the conv layers: give dropout_where='all' with it")
    rates = {"dense": dropout, "conv": (dropout if conv_dropout is None else conv_dropout) if where == "all" else 0.0}
    for name, rate in (("dropout", dropout), ("conv_dropout", rates["conv"])):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(
                f"{name} is the fraction of units dropped: give a number from 0 up to 1 (not 1), got {rate!r}"
            )
    return rates


def _dropout(rate: float) -> list[nn.Block]:
    """An ``nn.Dropout`` of ``rate``, or nothing at rate 0."""
    return [nn.Dropout(rate)] if rate else []


def seeded_lenet(norm: str, ctx: Contexts, seed: int | None, **options) -> gluon.Block:
    """The chapter's LeNet with ``norm`` (and ``lenet`` options), Xavier-initialised on ``ctx`` (one or a list).

    MXNet's and NumPy's generators are seeded first, so a CPU run repeats its numbers.

    Args:
        norm: the normalization, a name in ``gluon_bn.norms.NORMS``.
        ctx: where the parameters are initialised, a context or a list of them. Synchronized BN is
            built for as many devices as ``ctx`` lists.
        seed: seeds MXNet's and NumPy's generators; None goes on from where they are (for a model
            whose weights are copied in after).
        **options: keyword options passed to ``lenet``.
    """
    if seed is not None:
        mx.random.seed(seed)
        np.random.seed(seed)
    if get(norm).sharded:
        options.setdefault("num_devices", len(as_list(ctx)))
    net = lenet(norm, **options)
    net.initialize(ctx=ctx, init=init.Xavier())
    return net
