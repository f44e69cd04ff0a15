"""The norm registry: one entry plus its layer makes a norm the LeNet, the CLI and reproduce all take."""

import json

import pytest
from mxnet.gluon import nn

from gluon_bn import cli, lenet, norms
from gluon_bn.norms import Norm


@pytest.fixture
def toy(monkeypatch):
    """A toy norm, registered for one test: normalization over the channels of each position (LayerNorm)."""
    entry = Norm("toy", "toy norm", lambda c, num_dims: nn.LayerNorm(axis=1, in_channels=c), compiles=True)
    monkeypatch.setitem(norms.NORMS, "toy", entry)
    return entry


@pytest.mark.slow
@pytest.mark.usefixtures("figures_closed")
def test_a_registered_norm_is_reproduced_from_the_command_line(toy, tmp_path, real_data_dir, capsys):
    status = cli.main(["reproduce", "--quick", "--model", "toy", "--ctx", "cpu", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "== toy norm LeNet ==" in out and "toy norm" in out.split("model")[-1]
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert list(record["results"]) == ["toy"]
    assert len(record["results"]["toy"]["history"]) == 1


def test_the_lenet_places_the_registered_layer_where_the_chapter_puts_bn(toy):
    net = lenet("toy")
    assert isinstance(net, nn.HybridSequential) and isinstance(net[1], nn.LayerNorm)
    assert sum(isinstance(layer, nn.LayerNorm) for layer in net) == 4


def test_what_can_run_each_norm_is_read_from_its_entry():
    assert norms.names(benched=True) == ("scratch", "gluon", "none", "fast")
    assert norms.names(sharded=True) == ("sync",)
    assert norms.names(per_example=True) == ("layer", "group")  # no moving statistics: none held across devices
    assert {n.name: n.devices for n in norms.NORMS.values() if n.devices} == {
        "scratch": "scratch",
        "gluon": "gluon",
        "sync": "scratch",
    }
    assert norms.label("sync") == "synchronized BN" and norms.label("PyTorch") == "PyTorch"


def test_a_name_is_registered_once(toy):
    with pytest.raises(ValueError, match="registered already"):
        norms.register(toy)
    with pytest.raises(ValueError, match="unknown norm 'nope': choose one of scratch, gluon"):
        lenet("nope")
