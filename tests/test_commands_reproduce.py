"""``gluon-bn reproduce`` end to end on a real Fashion-MNIST subset: its lines, record and plot; a kill -9
or Ctrl-C at a named point then --resume gives the uninterrupted numbers; --resume refuses other settings;
a divergence keeps the last good checkpoint and record."""

import json
import re
import signal

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, nd
from poisoned import Poisoned

from gluon_bn import lenet
from gluon_bn.commands import reproduce
from gluon_bn.commands.reproduce import ReproduceConfig
from gluon_bn.errors import Diverged
from gluon_bn.norms.bnstate import bn_layers, get_stats
from gluon_bn.reliability.checkpoint import Checkpointer
from gluon_bn.reliability.record import load_record
from gluon_bn.runs import settings

QUICK = ["--epochs", "2", "--num-train", "2048", "--num-test", "1000", "--batch-size", "256"]
LINE = re.compile(r"^epoch (\d), loss \d\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, time \d+\.\d sec$", re.M)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, real_data_dir, gluon_bn_cli):
    out = tmp_path_factory.mktemp("reproduce")
    result = gluon_bn_cli("reproduce", *QUICK, "--ctx", "cpu", "--seed", "3", "--out", str(out))
    return result, out


@pytest.mark.slow
def test_reproduce_prints_the_chapters_lines(quick_run):
    result, _ = quick_run
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.count("training on cpu(0)") == 2
    assert [int(m) for m in LINE.findall(text)] == [1, 2, 1, 2]
    assert text.index("== from scratch LeNet ==") < text.index("== nn.BatchNorm LeNet ==")
    assert len(re.findall(r"first BN layer \(net\[1\]\) gamma: \[", text)) == 2
    assert len(re.findall(r"first BN layer \(net\[1\]\) beta: +\[", text)) == 2
    table = text[text.index("chapter loss") :]
    assert re.search(r"from scratch +2 +\d\.\d{4} .*\| +0\.3051 +0\.890 +0\.870", table)
    assert re.search(r"nn\.BatchNorm +2 +\d\.\d{4} .*\| +0\.3071 +0\.889 +0\.881", table)


@pytest.mark.slow
def test_reproduce_writes_record_and_plot(quick_run):
    result, out = quick_run
    record = load_record(out / "reproduce.json")
    assert record["command"] == "reproduce" and record["complete"] is True
    assert record["config"]["epochs"] == 2 and record["config"]["seed"] == 3
    assert record["environment"]["context"] == "cpu(0)"
    assert record["environment"]["packages"]["mxnet"] == "1.9.1"
    assert record["data"]["release"] == "current"
    assert record["wall_time"] > 0
    for name in ("scratch", "gluon"):
        model = record["results"][name]
        assert [e["epoch"] for e in model["history"]] == [1, 2]
        assert len(model["first_bn"]["gamma"]) == len(model["first_bn"]["beta"]) == 6
    # The printed lines are the recorded numbers.
    printed = LINE.findall(result.stdout)
    assert len(printed) == 4
    scratch_last = record["results"]["scratch"]["history"][-1]
    assert f"loss {scratch_last['loss']:.4f}, train acc {scratch_last['train_acc']:.3f}" in result.stdout
    png = (out / "reproduce.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_same_seed_repeats_its_numbers_on_cpu(quick_run, tmp_path, gluon_bn_cli):
    _, out = quick_run
    again = gluon_bn_cli(
        "reproduce", *QUICK, "--ctx", "cpu", "--seed", "3", "--model", "scratch", "--out", str(tmp_path)
    )
    assert again.returncode == 0, again.stderr
    strip = lambda h: [{k: v for k, v in e.items() if k != "time"} for e in h]  # noqa: E731
    first = json.loads((out / "reproduce.json").read_text())["results"]["scratch"]
    second = json.loads((tmp_path / "reproduce.json").read_text())["results"]["scratch"]
    assert strip(first["history"]) == strip(second["history"])
    assert first["first_bn"] == second["first_bn"]


# -- interrupted, resumed, refused -------------------------------------------------------------

SETTINGS = {
    "--ctx": "cpu",
    "--epochs": "2",
    "--num-train": "1024",
    "--num-test": "256",
    "--batch-size": "256",
    "--lr": "1.0",
    "--seed": "11",
}


def _run(cli, out, *args, fault=None, **changed):
    """``gluon-bn reproduce`` (both models) on a real subset; ``fault`` goes to $GLUON_BN_FAULT."""
    values = {**SETTINGS, **{f"--{k.replace('_', '-')}": v for k, v in changed.items()}}
    return cli("reproduce", "--out", str(out), *[part for item in values.items() for part in item], *args, fault=fault)


def _histories(out):
    results = json.loads((out / "reproduce.json").read_text())["results"]
    return {
        name: ([{k: v for k, v in e.items() if k != "time"} for e in r["history"]], r["first_bn"])
        for name, r in results.items()
    }


def _leftovers(out):
    """Temporary files and folders of an interrupted write that nothing cleaned up."""
    return [str(p.relative_to(out)) for p in out.rglob(".*")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_data_dir, gluon_bn_cli):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run(gluon_bn_cli, out)
    assert result.returncode == 0, result.stderr
    return _histories(out)


#: Where a kill -9 lands, and what the resumed run must say about each model's checkpoint.
KILLS = {
    "before the first checkpoint": ("kill@batch:model=scratch,epoch=1,batch=2", []),
    "mid-epoch in the second model": (
        "kill@batch:model=gluon,epoch=2,batch=3",
        ["scratch after epoch 2\n", "gluon after epoch 1\n"],
    ),
    "while a checkpoint folder is written": ("kill@checkpoint:model=scratch,number=2", ["scratch after epoch 1\n"]),
    "while the record is written": ("kill@write:file=reproduce.json", ["scratch after epoch 2\n"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault, resumed_from", KILLS.values(), ids=KILLS.keys())
def test_sigkill_at_a_named_point_then_resume_gives_the_uninterrupted_numbers(
    fault, resumed_from, uninterrupted, tmp_path, gluon_bn_cli
):
    killed = _run(gluon_bn_cli, tmp_path, fault=fault)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    for latest in (tmp_path / "checkpoints").glob("*/latest.json"):  # what is on disk is readable
        meta = json.loads(latest.read_text())
        assert (latest.parent / meta["folder"] / "params").is_file()
    resumed = _run(gluon_bn_cli, tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    said = re.findall(r"resuming from \S+/checkpoints/(\w+ after epoch \d+.*\n)", resumed.stdout)
    assert said == resumed_from
    assert _histories(tmp_path) == uninterrupted
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_mid_epoch_saves_the_partial_sums_and_resume_gives_the_same_numbers(
    uninterrupted, tmp_path, gluon_bn_cli
):
    stopped = _run(gluon_bn_cli, tmp_path, fault="interrupt@batch:model=scratch,epoch=2,batch=3")
    assert stopped.returncode == 130
    assert stopped.stderr.strip().splitlines() == [
        f"gluon-bn: error: interrupted during epoch 2 of from scratch; its state is saved in "
        f"{tmp_path / 'checkpoints' / 'scratch'}: run the same command with --resume to continue"
    ]
    meta = json.loads((tmp_path / "checkpoints" / "scratch" / "latest.json").read_text())
    loss_sum, correct, examples = meta["partial"]
    assert meta["epochs_done"] == 1 and examples == 3 * 256
    assert 0 < loss_sum < 3 * 256 * 2.31 and 0 < correct <= examples and correct == int(correct)
    resumed = _run(gluon_bn_cli, tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "scratch after epoch 1 and 768 examples of epoch 2\n" in resumed.stdout
    assert _histories(tmp_path) == uninterrupted  # epoch 2's numbers add the saved sums to the rest


@pytest.mark.slow
@pytest.mark.parametrize("model, devices", [("gluon", "cpu:0,cpu:1,cpu:2"), ("sync", "cpu:0,cpu:1")])
def test_several_devices_killed_mid_epoch_then_resumed_give_the_uninterrupted_numbers(
    model, devices, tmp_path, gluon_bn_cli
):
    """nn.BatchNorm keeps a moving-statistics copy per device, and 3 devices' mean of the weights is
    not the weights to the last bit: the checkpoint must keep each copy and the weights themselves."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _run(gluon_bn_cli, whole, "--model", model, ctx=devices).returncode == 0
    result = _run(
        gluon_bn_cli, killed, "--model", model, ctx=devices, fault=f"kill@batch:model={model},epoch=2,batch=3"
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    resumed = _run(gluon_bn_cli, killed, "--model", model, "--resume", ctx=devices)
    assert resumed.returncode == 0, resumed.stderr
    assert "training on [cpu(0), cpu(1)" in resumed.stdout and f"{model} after epoch 1\n" in resumed.stdout
    assert _histories(killed) == _histories(whole)
    final = [_final_state(out / "checkpoints" / model) for out in (whole, killed)]
    assert final[0].keys() == final[1].keys() and all(np.array_equal(final[0][k], final[1][k]) for k in final[0])
    if model == "gluon":  # the copies really differ, so keeping each one is tested
        assert not np.array_equal(final[0]["stats:0:0:mean"], final[0]["stats:0:1:mean"])


def _final_state(checkpoints):
    """Every array of the newest checkpoint: weights, each device's moving statistics."""
    folder = checkpoints / json.loads((checkpoints / "latest.json").read_text())["folder"]
    return {f"{part}:{k}": v.asnumpy() for part in ("params", "stats") for k, v in nd.load(str(folder / part)).items()}


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory, real_data_dir, gluon_bn_cli):
    """A finished one-epoch run of the Gluon LeNet, to resume with other settings."""
    out = tmp_path_factory.mktemp("checkpointed")
    result = _run(gluon_bn_cli, out, "--model", "gluon", epochs="1", num_train="512")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize(
    "flag, value, named",
    [
        ("lr", "0.5", "--lr 1 (now 0.5)"),
        ("batch_size", "128", "--batch-size 256 (now 128)"),
        ("seed", "12", "--seed 11 (now 12)"),
        ("num_train", "256", "--num-train 512 (now 256)"),
        ("num_test", "128", "--num-test 256 (now 128)"),
    ],
)
def test_resume_with_another_setting_is_one_line_naming_it_and_exit_2(checkpointed, flag, value, named, gluon_bn_cli):
    latest = checkpointed / "checkpoints" / "gluon" / "latest.json"
    before = latest.read_text()
    result = _run(
        gluon_bn_cli, checkpointed, "--model", "gluon", "--resume", **{"epochs": "1", "num_train": "512", flag: value}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluon-bn: error: --resume: the checkpoint in ")
    assert f"was made with {named}; rerun with those settings" in lines[0]
    assert latest.read_text() == before and "epoch 1, loss" not in result.stdout


# -- divergence --------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["scratch", "gluon", "group"])  # group: no moving statistics to put back
def test_divergence_names_epoch_and_batch_and_keeps_the_last_good_checkpoint_and_record(
    norm, tmp_path, real_data_dir, monkeypatch
):
    """A NaN in epoch 2 stops the run; epoch 1's checkpoint and record stay as they were, finite."""
    real_loader = settings.load_data_fashion_mnist
    monkeypatch.setattr(
        settings,
        "load_data_fashion_mnist",
        lambda *args, **kwargs: (lambda train, test: (Poisoned(train), test))(*real_loader(*args, **kwargs)),
    )
    config = ReproduceConfig(models=(norm,), epochs=3, num_train=1024, num_test=256, ctx="cpu", out=str(tmp_path))
    checkpoints = tmp_path / "checkpoints" / norm
    saved = {}
    real_save = Checkpointer.save

    def save(self, net, trainer, state):  # what epoch 1's checkpoint held when it was written
        folder = real_save(self, net, trainer, state)
        saved.update(
            {p.name: p.read_bytes() for p in folder.iterdir()}, latest=(checkpoints / "latest.json").read_text()
        )
        return folder

    monkeypatch.setattr(Checkpointer, "save", save)
    with pytest.raises(Diverged) as err:
        reproduce.run(config, log=lambda s: None)
    assert (err.value.epoch, err.value.batch) == (2, 3)
    assert "epoch 2, batch 3" in str(err.value) and "--lr 0.5" in str(err.value)
    meta = json.loads((checkpoints / "latest.json").read_text())
    assert meta["epochs_done"] == 1 and len(meta["history"]) == 1
    assert {p.name: p.read_bytes() for p in (checkpoints / meta["folder"]).iterdir()} | {
        "latest": (checkpoints / "latest.json").read_text()
    } == saved
    net = lenet(norm)
    net.initialize()
    net(nd.zeros((2, 1, 28, 28)))
    Checkpointer(checkpoints).load(net, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0}), mx.cpu())
    assert all(np.isfinite(p.data().asnumpy()).all() for p in net.collect_params().values())
    assert all(np.isfinite(s).all() for layer in bn_layers(net) for s in get_stats(layer))
    text = (tmp_path / "reproduce.json").read_text()
    record = json.loads(text)
    assert record["diverged"] == {"model": norm, "epoch": 2, "batch": 3, "loss": "nan"}
    assert record["complete"] is False and "NaN" not in text and "Infinity" not in text


def test_real_divergence_on_the_cli_is_one_line_and_exit_1(tmp_path, real_data_dir, gluon_bn_cli):
    result = gluon_bn_cli(
        "reproduce",
        "--model",
        "none",
        "--epochs",
        "1",
        "--num-train",
        "1024",
        "--num-test",
        "256",
        "--lr",
        "1e38",
        "--ctx",
        "cpu",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("gluon-bn: error: training diverged: loss")
    assert "at epoch 1, batch" in result.stderr and "try a lower learning rate" in result.stderr
    assert "Traceback" not in result.stderr
