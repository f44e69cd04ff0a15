"""``gluon-bn exercise``: every exercise runs quick on real data and writes its record, report and plot;
a divergence is a row, not a crash; --resume keeps finished runs and every epoch's measurements."""

import json
import math

import fault_hook
import pytest

from gluon_bn.commands.exercise import ExerciseConfig, run
from gluon_bn.errors import Interrupted
from gluon_bn.experiments.exercises import CHAPTER_EXERCISES
from gluon_bn.reliability.record import load_record


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHAPTER_EXERCISES))  # the claims: tests/test_claims.py
def test_every_exercise_runs_quick_on_real_data(name, tmp_path, real_data_dir):
    result = run(ExerciseConfig(name=name, quick=True, ctx="cpu", out=str(tmp_path)), log=lambda s: None)
    exercise = CHAPTER_EXERCISES[name]
    record = load_record(tmp_path / f"exercise-{name}.json")
    assert record["complete"] and record["results"]["conclusion"] == result["conclusion"]
    assert len(record["results"]["runs"]) == 2 * len(exercise.variants(None))
    assert (tmp_path / f"exercise-{name}.png").read_bytes().startswith(b"\x89PNG")
    md = (tmp_path / f"exercise-{name}.md").read_text()
    assert "Conclusion (from this run's numbers)" in md and "| variant | lr |" in md
    for row in result["summary"]:  # the conclusion quotes this run's numbers
        if not math.isnan(row["test_acc"]) and not row["diverged"]:
            assert f"{row['test_acc']:.3f}" in result["conclusion"] or name in ("learning-rate", "precise-bn")


def test_learning_rate_sweep_reports_divergence_instead_of_crashing(tmp_path, real_data_dir):
    result = run(ExerciseConfig(name="learning-rate", quick=True, ctx="cpu", out=str(tmp_path)), log=lambda s: None)
    top = [r for r in result["summary"] if r["lr"] == 1e38]
    assert top and all(r["diverged"] == r["seeds"] for r in top)
    diverged = [r for r in result["runs"] if r["status"] == "diverged"]
    assert diverged and all(r["diverged"]["loss"] in ("nan", "inf") for r in diverged)
    assert "diverges (NaN/inf loss) at 1e+38" in result["conclusion"]


@pytest.mark.slow
def test_cli_exercise_resume_keeps_finished_runs(tmp_path, real_data_dir, gluon_bn_cli):
    args = ["exercise", "no-bias", "--quick", "--ctx", "cpu", "--out", str(tmp_path)]
    first = gluon_bn_cli(*args)
    assert first.returncode == 0, first.stderr
    again = gluon_bn_cli(*args, "--resume")
    assert again.returncode == 0 and "training on" not in again.stdout  # every run was already done
    a = json.loads((tmp_path / "exercise-no-bias.json").read_text())["results"]["summary"]
    assert a[0]["seeds"] == 2


@pytest.mark.slow
def test_resumed_precise_bn_keeps_every_epochs_measurement(tmp_path, real_data_dir, monkeypatch):
    """Extras measured after each epoch are saved with its checkpoint and come back on --resume."""

    def precise(out, **changes):
        config = ExerciseConfig(name="precise-bn", quick=True, ctx="cpu", out=str(out), epochs=2, **changes)
        return {
            (r["variant"], r["seed"]): r["extras"]["per_epoch"]["precise_test_acc"]
            for r in run(config, log=lambda s: None)["runs"]
        }

    uninterrupted = precise(tmp_path / "whole")
    monkeypatch.setenv(fault_hook.ENV, "interrupt@batch:model=scratch,epoch=2,batch=1")
    with pytest.raises(Interrupted):
        precise(tmp_path / "stopped")
    ckpt = json.loads(
        (
            tmp_path / "stopped" / "checkpoints" / "exercise-precise-bn" / "from-scratch-seed0" / "latest.json"
        ).read_text()
    )
    assert ckpt["epochs_done"] == 1 and len(ckpt["extras"]["per_epoch"]["precise_test_acc"]) == 1
    monkeypatch.delenv(fault_hook.ENV)
    resumed = precise(tmp_path / "stopped", resume=True)
    assert all(len(values) == 2 for values in resumed.values())
    assert resumed == uninterrupted


@pytest.mark.parametrize("name", ["no-bias", "precise-bn"])
def test_exercises_with_their_own_measurements_run_on_two_devices(name, tmp_path, real_data_dir):
    result = run(
        ExerciseConfig(name=name, quick=True, seeds=1, ctx="cpu:0,cpu:1", out=str(tmp_path)), log=lambda s: None
    )
    runs = result["runs"]
    assert all(r["status"] == "trained" and r["devices"] == 2 for r in runs)
    extras = [r["extras"] for r in runs]
    assert (
        all("bias_grad_ratio" in e for e in extras)
        if name == "no-bias"
        else all(len(e["per_epoch"]["precise_test_acc"]) == 1 for e in extras)
    )
