"""The exercise catalogue: summaries over seeds, precise BN's spreads, and what the no-bias exercise measures."""

import math

import mxnet as mx
import pytest

from gluon_bn.experiments.exercises import precise_spreads
from gluon_bn.experiments.runner import ExerciseConfig, exercise_settings, run_exercise
from gluon_bn.experiments.summary import summarize


def test_no_bias_gradient_before_bn_is_negligible_and_accuracy_unchanged(tmp_path, real_data_dir):
    config = exercise_settings(ExerciseConfig(name="no-bias", quick=True, ctx="cpu"))
    result = run_exercise(config, mx.cpu(), log=lambda s: None)
    for run_ in result["runs"]:
        if run_["variant"] == "with bias":
            ratios = run_["extras"]["bias_grad_ratio"]
            assert len(ratios["before BN"]) == 4 and max(ratios["before BN"]) < 1e-3
            assert ratios["no BN after"][0] > 1e-2
    with_bias, without = result["summary"]
    assert abs(with_bias["test_acc"] - without["test_acc"]) < 0.02
    assert "within seed noise" in result["conclusion"]


def test_summary_means_and_spreads():
    runs = [
        {
            "variant": "a",
            "group": "",
            "lr": 1.0,
            "seed": s,
            "status": "trained",
            "history": [{"epoch": 1, "loss": l, "train_acc": t, "test_acc": v, "time": 1}],
        }
        for s, (l, t, v) in enumerate([(1.0, 0.5, 0.4), (3.0, 0.7, 0.6)])
    ]
    runs.append({"variant": "b", "group": "", "lr": 9.0, "seed": 0, "status": "diverged", "history": []})
    a, b = summarize(runs)
    assert (a["loss"], a["loss_std"], a["test_acc"], a["test_acc_std"]) == (2.0, 1.0, 0.5, pytest.approx(0.1))
    assert b["diverged"] == 1 and math.isnan(b["test_acc"])


def test_precise_spreads_measure_jumps_and_seed_spread():
    def run(seed, moving, precise):
        return {
            "variant": "v",
            "seed": seed,
            "status": "trained",
            "history": [{"test_acc": a} for a in moving],
            "extras": {"per_epoch": {"precise_test_acc": precise}},
        }

    s = precise_spreads(
        [run(0, [0.5, 0.8, 0.6, 0.8], [0.5, 0.8, 0.8, 0.8]), run(1, [0.5, 0.7, 0.8, 0.6], [0.5, 0.8, 0.8, 0.8])], "v"
    )
    assert s["moving"]["epoch_to_epoch"] == pytest.approx((0.2 + 0.2 + 0.1 + 0.2) / 4)  # from epoch 2 on
    assert s["precise"]["epoch_to_epoch"] == 0 and s["precise"]["seed_to_seed"] == 0
    assert s["moving"]["last_mean"] == pytest.approx(0.7)
