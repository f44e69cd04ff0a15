"""The comparison harness: agreements hold, differences show and close, wrong layers are caught."""

import mxnet as mx
import pytest
from mxnet.gluon import nn
from wrong_layers import wrong_layer

from gluon_bn.comparison.checks import COMPARED, check_layer
from gluon_bn.comparison.differences import known_differences, mode_table, variance_estimator
from gluon_bn.norms import NORMS

SHAPES = [(64, 4, 5, 5), (32, 10), (8, 3, 2, 2)]


@pytest.mark.parametrize("name", COMPARED)
@pytest.mark.parametrize("shape", SHAPES)
def test_both_layers_agree_with_the_reference(name, shape):
    checks = check_layer(NORMS[name].layer, shape, name, steps=3)
    assert [c.quantity for c in checks] == [
        "train output",
        "dX",
        "dgamma",
        "dbeta",
        "moving mean",
        "moving var",
        "predict output",
    ]
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


@pytest.mark.parametrize(
    "mistake,shape,caught",
    [
        ("unbiased", (8, 3, 2, 2), {"train output", "dX", "moving var", "predict output"}),
        ("unbiased", (256, 120), {"train output", "moving var"}),
        ("axis", (8, 3, 2, 2), {"train output", "dX", "moving mean", "moving var"}),
        ("momentum", (32, 10), {"moving mean", "moving var", "predict output"}),
    ],
)
def test_harness_catches_a_wrong_layer(mistake, shape, caught):
    checks = check_layer(wrong_layer(mistake), shape, f"wrong-{mistake}")
    failed = {c.quantity for c in checks if not c.passed}
    assert caught <= failed


def test_harness_refuses_a_block_it_cannot_read():
    with pytest.raises(TypeError, match="moving_mean/moving_var"):
        check_layer(lambda c, ndim: nn.Dense(c), (4, 3), "dense")


def test_every_known_difference_shows_and_closes_on_cpu():
    rows = {d.name: d for d in known_differences(mx.cpu())}
    assert set(rows) == {
        "initial moving_var",
        "update in forward vs backward",
        "running-variance estimator",
        "momentum convention",
        "eps convention",
    }
    for d in rows.values():
        assert d.ok and d.closes, d
        assert d.explanation
    for name in ("initial moving_var", "update in forward vs backward", "momentum convention", "eps convention"):
        assert rows[name].visible
    assert not rows["running-variance estimator"].visible  # biased on CPU, like the chapter


def test_cpu_operator_uses_the_biased_variance_for_running_var():
    est = variance_estimator(mx.cpu())
    assert est["estimator"] == "biased" and est["gap_to_biased"] < 1e-5 < est["gap_to_unbiased"]


def test_mode_table_both_layers_use_the_same_statistics_everywhere():
    rows = mode_table(mx.cpu())
    table = {(r.scope, r.layer): (r.statistics, r.updated) for r in rows}
    for scope in {r.scope for r in rows}:
        assert table[(scope, "scratch")][0] == table[(scope, "gluon")][0] != "neither"
    assert table[("record() + backward()", "gluon")] == ("batch", True)
    assert table[("record() without backward()", "scratch")] == ("batch", True)
    assert table[("record() without backward()", "gluon")] == ("batch", False)
    assert table[("train_mode() without record()", "gluon")] == ("batch", False)
    assert table[("record(train_mode=False) + backward()", "scratch")] == ("moving", False)
    assert table[("no scope (plain call)", "gluon")] == ("moving", False)
