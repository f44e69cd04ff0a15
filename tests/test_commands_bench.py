"""``gluon-bn bench --quick`` end to end on a real subset: its record, report, targets and profiles."""

import json

import pytest

from gluon_bn import cli


@pytest.mark.slow
def test_bench_cli_quick_writes_record_report_and_targets(real_data_dir, tmp_path, gluon_bn_cli):
    out = tmp_path / "out"
    result = gluon_bn_cli(
        "bench", "--quick", "--models", "gluon", "fast", "--ctx", "cpu", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "bench.json").read_text())
    assert record["command"] == "bench" and set(record["results"]) == {"layers", "epochs", "memory", "profile"}
    setups = {(r["model"], r["setup"]) for r in record["results"]["epochs"]}
    for model in ("gluon", "fast"):
        assert {(model, "chapter's code, d2l pipeline"), (model, "chapter's code"), (model, "gluon-bn")} <= setups
    epochs = record["results"]["epochs"]
    d2l_s = {r["model"]: r["epoch_s"] for r in epochs if r["setup"] == "chapter's code, d2l pipeline"}
    torch_s = next((r["epoch_s"] for r in epochs if r["model"] == "pytorch"), None)
    for row in epochs:
        assert row["vs_d2l"] == (pytest.approx(row["epoch_s"] / d2l_s[row["model"]]) if row["model"] in d2l_s else None)
        assert row["vs_torch"] == (pytest.approx(row["epoch_s"] / torch_s) if torch_s else None)
    assert {r["layer"] for r in record["results"]["layers"]} == {"scratch", "gluon", "fast"}
    torch_installed = any(r["model"] == "pytorch" for r in epochs)
    assert len(record["results"]["memory"]) == 2
    assert set(record["results"]["profile"]) == {"gluon", "fast", "scratch"} | (
        {"pytorch"} if torch_installed else set()
    )
    ours = record["environment"]["threads"]["operator_threads"]
    by_setup = {(r["model"], r["setup"]): r for r in epochs}
    for row in epochs:  # every set-up ran in 3 interleaved rounds, each in its own process
        assert row["rounds"] == 3 and 0 < row["epoch_min_s"] <= row["epoch_s"] and row["epoch_spread"] >= 0
        assert row["same_numbers"]  # seeded: every round trains the same numbers
    assert by_setup[("gluon", "gluon-bn")]["threads"] == ours
    assert by_setup[("gluon", "chapter's code")]["threads"] <= ours  # MXNet's own default
    if ours > 1:
        assert by_setup[("gluon", "gluon-bn, 1 thread")]["threads"] == 1
    fast_vs_gluon = by_setup[("fast", "gluon-bn")]["epoch_s"] / by_setup[("gluon", "gluon-bn")]["epoch_s"]
    assert by_setup[("fast", "gluon-bn")]["vs_gluon"] == pytest.approx(fast_vs_gluon)
    text = (out / "bench.md").read_text()
    assert f"{record['environment']['cpu']}, " in text and f"with {ours} operator threads" in text
    targets = text.split("## Targets")[1]
    assert (
        f"- FastBatchNorm LeNet epoch at most 1.2x nn.BatchNorm's: {fast_vs_gluon:.2f}x, "
        f"{'met' if fast_vs_gluon <= 1.2 else 'NOT met'}"
    ) in targets
    if torch_installed:
        vs_torch = by_setup[("gluon", "gluon-bn")]["vs_torch"]
        assert f"- nn.BatchNorm LeNet epoch at most 1x PyTorch's: {vs_torch:.2f}x" in targets
    fast = [r for r in record["results"]["layers"] if r["layer"] == "fast"]
    worst = max(fast, key=lambda r: r["forward_backward_ratio"])
    met = sum(r["forward_backward_ratio"] <= 1.2 for r in fast)
    assert (
        f"- FastBatchNorm forward+backward at most 1.2x nn.BatchNorm: met at {met} of 4 shapes (worst "
        f"{worst['forward_backward_ratio']:.2f}x at {tuple(worst['shape'])})"
    ) in text.split("## Targets")[1]
    for row in record["results"]["memory"]:
        assert f"memory flat over 20 steps: {row['growth_mb']:+.1f} MB, {'met' if row['flat'] else 'NOT met'}" in text
    assert all((out / f"profile-{norm}.json").exists() for norm in ("gluon", "fast", "scratch"))
    assert not (out.parent / "profile.json").exists()  # MXNet's default trace file, in the working folder


def test_bench_times_the_layers_of_the_models_it_is_given_beside_the_bn_layers(real_data_dir, tmp_path):
    args = ["bench", "--quick", "--models", "layer", "group", "--sections", "layers", "--out", str(tmp_path)]
    assert cli.main([*args, "--ctx", "cpu"]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]["layers"]
    assert {r["layer"] for r in rows} == {"scratch", "gluon", "fast", "layer", "group"}
    assert all(r["forward_backward_ratio"] > 0 for r in rows if r["layer"] == "group")
