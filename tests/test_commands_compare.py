"""``gluon-bn compare`` end to end on a real subset: its tables, report and record; exit 1 when an agreement fails."""

from dataclasses import replace

import pytest
from wrong_layers import wrong_layer

from gluon_bn import cli, norms
from gluon_bn.reliability.record import load_record

COMPARE_QUICK = ["--epochs", "1", "--num-train", "1024", "--num-test", "512", "--speed-repeats", "2", "--ctx", "cpu"]


@pytest.mark.slow
def test_compare_prints_tables_and_writes_report(tmp_path, real_data_dir, gluon_bn_cli):
    result = gluon_bn_cli("compare", *COMPARE_QUICK, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for heading in (
        "## Agreement with the float64 reference (cpu(0))",
        "## Known differences, shown and then closed",
        "## Which statistics each autograd scope uses",
        "## Two LeNets from the same start",
        "## Speed of the two layers",
    ):
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


@pytest.mark.usefixtures("figures_closed")
def test_compare_exits_1_when_an_agreement_fails(tmp_path, real_data_dir, monkeypatch, capsys):
    monkeypatch.setitem(norms.NORMS, "scratch", replace(norms.NORMS["scratch"], layer=wrong_layer("unbiased")))
    status = cli.main(["compare", *COMPARE_QUICK, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1
    assert "agreement(s) did not hold" in err and "scratch (8, 3, 2, 2) train output" in err
    assert "Agreements that did not hold" in (tmp_path / "compare.md").read_text()


@pytest.mark.slow
def test_compare_on_two_devices_measures_each_bn_kinds_statistics(tmp_path, real_data_dir, gluon_bn_cli):
    args = [a if a != "cpu" else "cpu:0,cpu:1" for a in COMPARE_QUICK]
    result = gluon_bn_cli("compare", *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "## On 2 devices: [cpu(0), cpu(1)]" in result.stdout
    assert "## Agreement with the float64 reference (cpu(0))" in result.stdout  # layer checks: one device
    devices = load_record(tmp_path / "compare.json")["results"]["devices"]
    ((sync,),) = devices["sync"]["stats_gap"]  # one epoch, one set of statistics
    ((chained,),) = devices["scratch"]["stats_gap"]
    assert sync < 1e-4 < 0.05 < chained  # synchronized: the one-device statistics; chained: far from them
    assert len(devices["gluon"]["stats_gap"][0]) == len(devices["gluon"]["stats_distance"][0]) == 2  # per device
    assert len(devices["gluon"]["test_acc"]["each_copy"]) == 2 and "mean_of_copies" in devices["gluon"]["test_acc"]
    assert "each_copy" not in devices["sync"]["test_acc"]
