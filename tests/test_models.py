"""The chapter's LeNet in its variants: the BN layer kinds, and the exercises' placements and options."""

import mxnet as mx
import pytest
from mxnet import init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, lenet
from gluon_bn.models import PLACEMENTS, WHERE
from gluon_bn.norms.bnstate import bn_layers

CHAPTER_ORDER = [
    nn.Conv2D,
    "BN",
    nn.Activation,
    nn.MaxPool2D,
    nn.Conv2D,
    "BN",
    nn.Activation,
    nn.MaxPool2D,
    nn.Dense,
    "BN",
    nn.Activation,
    nn.Dense,
    "BN",
    nn.Activation,
    nn.Dense,
]


@pytest.mark.parametrize("norm,bn_type", [("scratch", BatchNorm), ("gluon", nn.BatchNorm)])
def test_bn_lenet_has_the_chapters_layers_in_order(norm, bn_type):
    net = lenet(norm)
    kinds = [bn_type if k == "BN" else k for k in CHAPTER_ORDER]
    assert [type(layer) for layer in net] == kinds
    assert isinstance(net[1], bn_type)
    net.initialize(init=init.Xavier())
    assert net(nd.zeros((3, 1, 28, 28))).shape == (3, 10)
    # (output channels, input channels, 5, 5) and (units, inputs): 6 and 16 channels, 120, 84 and 10 units
    assert net[0].weight.shape == (6, 1, 5, 5) and net[4].weight.shape == (16, 6, 5, 5)
    assert net[8].weight.shape == (120, 256) and net[11].weight.shape == (84, 120)
    assert net[14].weight.shape == (10, 84)


def test_scratch_bn_sizes_match_the_layers_they_follow():
    net = lenet("scratch")
    assert [net[i].gamma.shape for i in (1, 5, 9, 12)] == [(1, 6, 1, 1), (1, 16, 1, 1), (1, 120), (1, 84)]


def test_baseline_lenet_has_no_batch_norm():
    net = lenet("none")
    assert not any(isinstance(layer, (BatchNorm, nn.BatchNorm)) for layer in net)
    net.initialize()
    assert net(nd.zeros((2, 1, 28, 28))).shape == (2, 10)


def test_unknown_norm_names_the_choices():
    with pytest.raises(ValueError, match="scratch, gluon, none"):
        lenet("batch")


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("where", WHERE)
def test_lenet_variants_place_bn_where_asked(placement, where):
    net = lenet("gluon", placement=placement, where=where, use_bias=False)
    kinds = [type(layer).__name__ for layer in net]
    assert kinds.count("BatchNorm") == {"all": 4, "conv": 2, "dense": 2}[where]
    first = kinds.index("BatchNorm")
    assert kinds[first - 1] == ("Conv2D" if placement == "before" or False else "Activation") or (
        where == "dense" and kinds[first - 1] in ("Dense", "Activation")
    )
    net.initialize()
    assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)


def test_frozen_affine_and_gluon_options_reach_the_layers():
    frozen = lenet("scratch", learn_affine=False)
    assert {p.grad_req for layer in bn_layers(frozen) for p in (layer.gamma, layer.beta)} == {"null"}
    gl = lenet("gluon", gluon_options={"momentum": 0.5, "use_global_stats": True})
    # nn.BatchNorm's repr lists the options it was built with
    assert all("momentum=0.5," in repr(layer) and "use_global_stats=True" in repr(layer) for layer in bn_layers(gl))
    with pytest.raises(ValueError, match="gluon_options apply to nn.BatchNorm only"):
        lenet("scratch", gluon_options={"momentum": 0.5})


@pytest.mark.parametrize("norm", ["none", "gluon"])
def test_dropout_follows_each_hidden_layers_sigmoid_where_asked(norm):
    def kinds(**options):
        return [type(layer).__name__ for layer in lenet(norm, **options)]

    assert "Dropout" not in kinds()  # the chapter's LeNet has none
    dense = kinds(dropout=0.5)
    assert dense.count("Dropout") == 2 and dense[-1] == "Dense"
    assert [dense[i - 1] for i, k in enumerate(dense) if k == "Dropout"] == (
        ["Dense", "Dense"] if norm == "none" else ["Activation", "Activation"]
    )
    every = kinds(dropout=0.5, dropout_where="all", conv_dropout=0.1)
    assert every.count("Dropout") == 4
    assert [every[i + 1] for i, k in enumerate(every) if k == "Dropout"][:2] == ["MaxPool2D", "MaxPool2D"]
    rates = [
        layer._rate
        for layer in lenet(norm, dropout=0.5, dropout_where="all", conv_dropout=0.1)
        if isinstance(layer, nn.Dropout)
    ]
    assert rates == [0.1, 0.1, 0.5, 0.5]
    net = lenet(norm, dropout=0.5, dropout_where="all")
    net.initialize()
    X = mx.nd.ones((2, 1, 28, 28))
    assert (net(X) == net(X)).asnumpy().all()  # prediction mode: dropout is off


@pytest.mark.parametrize(
    "options, fix",
    [
        ({"dropout": 1.0}, "from 0 up to 1"),
        ({"dropout": -0.1}, "from 0 up to 1"),
        ({"dropout": 0.5, "dropout_where": "conv"}, r"dropout_where must be one of \('dense', 'all'\)"),
        ({"dropout": 0.5, "conv_dropout": 0.1}, "give dropout_where='all'"),
        ({"dropout": 0.5, "dropout_where": "all", "conv_dropout": 1.5}, "conv_dropout is the fraction"),
    ],
)
def test_bad_dropout_options_name_the_fix(options, fix):
    with pytest.raises(ValueError, match=fix):
        lenet("gluon", **options)
