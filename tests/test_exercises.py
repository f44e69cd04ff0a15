"""The exercises: one runner, real data, conclusions drawn from the numbers; precise BN."""
import json
import math
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import init

from gluon_bn import evaluate_accuracy, lenet, load_data_fashion_mnist
from gluon_bn.bnstate import bn_layers, get_stats
from gluon_bn.exercises import EXERCISES, precise_spreads, summarize
from gluon_bn.experiments import ExerciseConfig, run_exercise
from gluon_bn.models import PLACEMENTS, WHERE
from gluon_bn.precise_bn import recompute_bn_stats, swap_bn_stats
from gluon_bn.record import load_record


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_exercise_runs_quick_on_real_data(name, tmp_path, real_data_dir):
    result = run_exercise(ExerciseConfig(name=name, quick=True, ctx="cpu", out=str(tmp_path)),
                          log=lambda s: None)
    exercise = EXERCISES[name]
    record = load_record(tmp_path / f"exercise-{name}.json")
    assert record["complete"] and record["results"]["conclusion"] == result["conclusion"]
    assert len(record["results"]["runs"]) == 2 * len(exercise.variants(None))
    assert (tmp_path / f"exercise-{name}.png").read_bytes().startswith(b"\x89PNG")
    md = (tmp_path / f"exercise-{name}.md").read_text()
    assert "Conclusion (from this run's numbers)" in md and "| variant | lr |" in md
    for row in result["summary"]:  # the conclusion quotes this run's numbers
        if not math.isnan(row["test_acc"]) and not row["diverged"]:
            assert f"{row['test_acc']:.3f}" in result["conclusion"] or name in ("learning-rate", "precise-bn")


def test_no_bias_gradient_before_bn_is_negligible_and_accuracy_unchanged(tmp_path, real_data_dir):
    result = run_exercise(ExerciseConfig(name="no-bias", quick=True, ctx="cpu", out=str(tmp_path)),
                          log=lambda s: None)
    for run in result["runs"]:
        if run["variant"] == "with bias":
            ratios = run["extras"]["bias_grad_ratio"]
            assert len(ratios["before BN"]) == 4 and max(ratios["before BN"]) < 1e-3
            assert ratios["no BN after"][0] > 1e-2
    with_bias, without = result["summary"]
    assert abs(with_bias["test_acc"] - without["test_acc"]) < 0.02
    assert "within seed noise" in result["conclusion"]


def test_learning_rate_sweep_reports_divergence_instead_of_crashing(tmp_path, real_data_dir):
    result = run_exercise(ExerciseConfig(name="learning-rate", quick=True, ctx="cpu", out=str(tmp_path)),
                          log=lambda s: None)
    top = [r for r in result["summary"] if r["lr"] == 1e38]
    assert top and all(r["diverged"] == r["seeds"] for r in top)
    diverged = [r for r in result["runs"] if r["status"] == "diverged"]
    assert diverged and all(r["diverged"]["loss"] in ("nan", "inf") for r in diverged)
    assert "diverges (NaN/inf loss) at 1e+38" in result["conclusion"]


def test_summary_means_and_spreads():
    runs = [{"variant": "a", "group": "", "lr": 1.0, "seed": s, "status": "trained",
             "history": [{"epoch": 1, "loss": l, "train_acc": t, "test_acc": v, "time": 1}]}
            for s, (l, t, v) in enumerate([(1.0, 0.5, 0.4), (3.0, 0.7, 0.6)])]
    runs.append({"variant": "b", "group": "", "lr": 9.0, "seed": 0, "status": "diverged", "history": []})
    a, b = summarize(runs)
    assert (a["loss"], a["loss_std"], a["test_acc"], a["test_acc_std"]) == (2.0, 1.0, 0.5, pytest.approx(0.1))
    assert b["diverged"] == 1 and math.isnan(b["test_acc"])


def test_precise_spreads_measure_jumps_and_seed_spread():
    def run(seed, moving, precise):
        return {"variant": "v", "seed": seed, "status": "trained",
                "history": [{"test_acc": a} for a in moving], "extras": {"per_epoch": {"precise_test_acc": precise}}}
    s = precise_spreads([run(0, [0.5, 0.8, 0.6, 0.8], [0.5, 0.8, 0.8, 0.8]),
                         run(1, [0.5, 0.7, 0.8, 0.6], [0.5, 0.8, 0.8, 0.8])], "v")
    assert s["moving"]["epoch_to_epoch"] == pytest.approx((0.2 + 0.2 + 0.1 + 0.2) / 4)  # from epoch 2 on
    assert s["precise"]["epoch_to_epoch"] == 0 and s["precise"]["seed_to_seed"] == 0
    assert s["moving"]["last_mean"] == pytest.approx(0.7)


@pytest.mark.parametrize("norm", ["scratch", "gluon"])
def test_recompute_bn_stats_gives_the_population_statistics(norm, real_data_dir):
    mx.random.seed(0)
    net = lenet(norm)
    net.initialize(init=init.Xavier())
    train_iter, test_iter = load_data_fashion_mnist(128, num_train=512, num_test=256)
    first = bn_layers(net)[0]
    seen = recompute_bn_stats(net, train_iter, num_batches=None)
    assert seen == 512
    # The first BN layer's input is the first convolution's output: its statistics over all 512 images.
    X = np.concatenate([x.asnumpy() for x, _ in train_iter])
    conv = net[0](mx.nd.array(X)).asnumpy().astype(np.float64)
    mean, var = get_stats(first)
    np.testing.assert_allclose(mean, conv.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, conv.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-6)

    # swap_bn_stats puts other statistics in place, hands back the ones it replaced, and swaps them back.
    recomputed = [get_stats(layer) for layer in bn_layers(net)]
    probe = next(iter(test_iter))[0]
    logits = net(probe).asnumpy()
    neutral = [(np.zeros_like(mean), np.ones_like(var)) for mean, var in recomputed]
    replaced = swap_bn_stats(net, neutral)
    for (mean, var), (want_mean, want_var) in zip(replaced, recomputed):
        np.testing.assert_array_equal(mean, want_mean)
        np.testing.assert_array_equal(var, want_var)
    for layer in bn_layers(net):
        np.testing.assert_array_equal(get_stats(layer)[1], 1.0)
    assert np.abs(net(probe).asnumpy() - logits).max() > 1e-3  # prediction uses the statistics swapped in
    swap_bn_stats(net, replaced)
    for layer, (want_mean, want_var) in zip(bn_layers(net), recomputed):
        np.testing.assert_array_equal(get_stats(layer)[0], want_mean)
        np.testing.assert_array_equal(get_stats(layer)[1], want_var)
    np.testing.assert_array_equal(net(probe).asnumpy(), logits)


def test_recompute_bn_stats_refuses_nets_without_bn(real_data_dir):
    net = lenet("none")
    net.initialize()
    train_iter, _ = load_data_fashion_mnist(64, num_train=64)
    with pytest.raises(ValueError, match="no BN layer"):
        recompute_bn_stats(net, train_iter)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("where", WHERE)
def test_lenet_variants_place_bn_where_asked(placement, where):
    net = lenet("gluon", placement=placement, where=where, use_bias=False)
    kinds = [type(layer).__name__ for layer in net]
    assert kinds.count("BatchNorm") == {"all": 4, "conv": 2, "dense": 2}[where]
    first = kinds.index("BatchNorm")
    assert kinds[first - 1] == ("Conv2D" if placement == "before" or False else "Activation") \
        or (where == "dense" and kinds[first - 1] in ("Dense", "Activation"))
    net.initialize()
    assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)


def test_frozen_affine_and_gluon_options_reach_the_layers():
    frozen = lenet("scratch", learn_affine=False)
    assert {p.grad_req for layer in bn_layers(frozen) for p in (layer.gamma, layer.beta)} == {"null"}
    gl = lenet("gluon", gluon_options={"momentum": 0.5, "use_global_stats": True})
    assert all(layer._kwargs["momentum"] == 0.5 and layer._kwargs["use_global_stats"] for layer in bn_layers(gl))
    with pytest.raises(ValueError, match="gluon_options apply to nn.BatchNorm only"):
        lenet("scratch", gluon_options={"momentum": 0.5})


def test_cli_exercise_list_and_unknown_name():
    listing = subprocess.run([sys.executable, "-m", "gluon_bn", "exercise", "--list"], capture_output=True, text=True)
    assert listing.returncode == 0 and all(name in listing.stdout for name in EXERCISES)
    bad = subprocess.run([sys.executable, "-m", "gluon_bn", "exercise", "bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'bogus'" in bad.stderr


def test_cli_exercise_resume_keeps_finished_runs(tmp_path, real_data_dir):
    cmd = [sys.executable, "-m", "gluon_bn", "exercise", "no-bias", "--quick", "--ctx", "cpu", "--out", str(tmp_path)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "training on" not in again.stdout  # every run was already done
    a = json.loads((tmp_path / "exercise-no-bias.json").read_text())["results"]["summary"]
    assert a[0]["seeds"] == 2


def test_resumed_precise_bn_keeps_every_epochs_measurement(tmp_path, real_data_dir):
    """Extras measured after each epoch are saved with its checkpoint and come back on --resume."""
    config = ExerciseConfig(name="precise-bn", quick=True, ctx="cpu", out=str(tmp_path), epochs=2)
    run_exercise(config, log=lambda s: None)
    ckpt = next((tmp_path / "checkpoints" / "exercise-precise-bn").glob("*/latest.json"))
    meta = json.loads(ckpt.read_text())
    assert len(meta["extras"]["per_epoch"]["precise_test_acc"]) == meta["epochs_done"]
