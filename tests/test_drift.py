"""Two LeNets of one architecture: copying one's state into the other, and measuring their drift."""

import pytest
from mxnet import autograd, init, nd

from gluon_bn import lenet
from gluon_bn.comparison.drift import copy_parameters, copy_state, model_drift


def test_copy_parameters_gives_the_same_function_from_the_same_start():
    a, b = lenet("scratch"), lenet("gluon")
    probe = nd.random.uniform(shape=(16, 1, 28, 28))
    for net in (a, b):
        net.initialize(init=init.Xavier())
        net(probe)
    copy_state(a, b)  # weights and moving statistics: the two models now compute the same thing
    drift = model_drift(a, b, probe)
    assert drift["param_rel_diff"] == 0 and drift["stats_rel_diff"] == 0
    assert drift["logits_max_abs_diff"] < 1e-3 and drift["prediction_agreement"] == 1.0
    with autograd.record():
        ya, yb = a(probe), b(probe)
    assert float(nd.abs(ya - yb).max().asscalar()) < 1e-3


def test_copy_parameters_refuses_different_architectures():
    a, b = lenet("scratch"), lenet("none")
    for net in (a, b):
        net.initialize()
        net(nd.zeros((1, 1, 28, 28)))
    with pytest.raises(ValueError, match="same learnable parameters"):
        copy_parameters(a, b)
