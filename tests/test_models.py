"""The chapter's LeNet in its three variants."""
import pytest
from mxnet import init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, lenet

CHAPTER_ORDER = [nn.Conv2D, "BN", nn.Activation, nn.MaxPool2D, nn.Conv2D, "BN", nn.Activation,
                 nn.MaxPool2D, nn.Dense, "BN", nn.Activation, nn.Dense, "BN", nn.Activation, nn.Dense]


@pytest.mark.parametrize("norm,bn_type", [("scratch", BatchNorm), ("gluon", nn.BatchNorm)])
def test_bn_lenet_has_the_chapters_layers_in_order(norm, bn_type):
    net = lenet(norm)
    kinds = [bn_type if k == "BN" else k for k in CHAPTER_ORDER]
    assert [type(layer) for layer in net] == kinds
    assert isinstance(net[1], bn_type)
    net.initialize(init=init.Xavier())
    assert net(nd.zeros((3, 1, 28, 28))).shape == (3, 10)
    assert net[0]._channels == 6 and net[4]._channels == 16
    assert net[8]._units == 120 and net[11]._units == 84 and net[14]._units == 10


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
