"""``gluon-bn reproduce`` end to end on a real Fashion-MNIST subset, and its refusals."""
import json
import re
import subprocess
import sys

import pytest

from gluon_bn.record import load_record

QUICK = ["--epochs", "2", "--num-train", "2048", "--num-test", "1000", "--batch-size", "256"]
LINE = re.compile(r"^epoch (\d), loss \d\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, time \d+\.\d sec$", re.M)


def gluon_bn(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gluon_bn", *args], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("reproduce")
    result = gluon_bn("reproduce", *QUICK, "--ctx", "cpu", "--seed", "3", "--out", str(out))
    return result, out


def test_reproduce_prints_the_chapters_lines(quick_run):
    result, _ = quick_run
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.count("training on cpu(0)") == 2
    assert [int(m) for m in LINE.findall(text)] == [1, 2, 1, 2]
    assert text.index("== from scratch LeNet ==") < text.index("== nn.BatchNorm LeNet ==")
    assert len(re.findall(r"first BN layer \(net\[1\]\) gamma: \[", text)) == 2
    assert len(re.findall(r"first BN layer \(net\[1\]\) beta: +\[", text)) == 2
    table = text[text.index("chapter loss"):]
    assert re.search(r"from scratch +2 +\d\.\d{4} .*\| +0\.3051 +0\.890 +0\.870", table)
    assert re.search(r"nn\.BatchNorm +2 +\d\.\d{4} .*\| +0\.3071 +0\.889 +0\.881", table)


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


def test_same_seed_repeats_its_numbers_on_cpu(quick_run, tmp_path):
    _, out = quick_run
    again = gluon_bn("reproduce", *QUICK, "--ctx", "cpu", "--seed", "3", "--model", "scratch",
                     "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr
    strip = lambda h: [{k: v for k, v in e.items() if k != "time"} for e in h]  # noqa: E731
    first = json.loads((out / "reproduce.json").read_text())["results"]["scratch"]
    second = json.loads((tmp_path / "reproduce.json").read_text())["results"]["scratch"]
    assert strip(first["history"]) == strip(second["history"])
    assert first["first_bn"] == second["first_bn"]


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "argument --epochs: must be positive and finite, got 0"),
    (["--lr", "inf"], "argument --lr: must be positive and finite, got inf"),
    (["--lr", "1e39"], "lr must be positive and at most 3.4e+38"),
    (["--batch-size", "-3"], "argument --batch-size: must be positive"),
    (["--lr", "abc"], "argument --lr: 'abc' is not a float"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["--ctx", "tpu"], "argument --ctx: invalid choice: 'tpu'"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path):
    result = gluon_bn("reproduce", *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_gpu_that_is_not_there_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """Holds on a machine with a GPU too: MXNet is made to see none."""
    import mxnet as mx
    from gluon_bn import cli
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    assert cli.main(["reproduce", "--ctx", "gpu", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith("gluon-bn: error: --ctx gpu: MXNet sees no GPU")
    assert len(captured.err.strip().splitlines()) == 1 and "training on" not in captured.out


def test_damaged_data_is_one_line_naming_the_file_and_exit_1(data_copy, tmp_path):
    damaged = data_copy / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-100])  # truncated
    result = gluon_bn("reproduce", "--ctx", "cpu", "--data-dir", str(data_copy), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gluon-bn: error: {damaged} is truncated or not a gzip file")
    assert "training on" not in result.stdout


def test_unwritable_out_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = gluon_bn("reproduce", "--ctx", "cpu", "--out", str(blocker / "out"))
    assert result.returncode == 2 and "--out" in result.stderr and "cannot write there" in result.stderr
    assert "Traceback" not in result.stderr and "training on" not in result.stdout


def test_missing_data_is_one_clear_line(tmp_path):
    import os
    env = {**os.environ, "GLUON_BN_DATA_URL": "http://127.0.0.1:9/"}
    result = gluon_bn("reproduce", "--ctx", "cpu", "--data-dir", str(tmp_path / "none"),
                      "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 1
    err = result.stderr.strip()
    assert err.startswith("gluon-bn: error: Fashion-MNIST not found. Searched: " + str(tmp_path / "none"))
    assert "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err


COMPARE_QUICK = ["--epochs", "1", "--num-train", "1024", "--num-test", "512", "--speed-repeats", "2",
                 "--ctx", "cpu"]


def test_compare_prints_tables_and_writes_report(tmp_path, real_data_dir):
    result = gluon_bn("compare", *COMPARE_QUICK, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for heading in ("## Agreement with the float64 reference (cpu(0))", "## Known differences, shown and then closed",
                    "## Which statistics each autograd scope uses", "## Two LeNets from the same start",
                    "## Speed of the two layers"):
        assert heading in result.stdout
    assert "**FAIL**" not in result.stdout and "UNEXPECTED" not in result.stdout
    report = (tmp_path / "compare.md").read_text()
    assert "Every agreement that should hold holds." in report
    assert "![compare_curves.png](compare_curves.png)" in report
    record = load_record(tmp_path / "compare.json")
    assert record["command"] == "compare" and record["failures"] == []
    assert len(record["results"]["checks"]) == 2 * 3 * 7
    assert [d["epoch"] for d in record["results"]["drift"]] == [0, 1]
    assert record["results"]["drift"][0]["param_rel_diff"] == 0
    assert {r["layer"] for r in record["results"]["speed"]} == {"scratch", "gluon"}
    for png in ("compare_curves.png", "compare_drift.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")


def test_compare_exits_1_when_an_agreement_fails(tmp_path, real_data_dir, monkeypatch, capsys):
    from gluon_bn import cli, experiments
    from wrong_layers import wrong_layer

    monkeypatch.setattr(experiments, "LAYERS", {"scratch": wrong_layer("unbiased"),
                                                "gluon": experiments.LAYERS["gluon"]})
    status = cli.main(["compare", *COMPARE_QUICK, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1
    assert "agreement(s) did not hold" in err and "scratch (8, 3, 2, 2) train output" in err
    assert "Agreements that did not hold" in (tmp_path / "compare.md").read_text()
