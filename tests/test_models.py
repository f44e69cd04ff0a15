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
