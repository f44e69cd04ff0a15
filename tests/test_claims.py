"""The chapter's claims as exercises: recording leaves training as it is (a meddling recorder is caught), the
recorders see what they say, the verdicts follow the numbers, and each claim runs quick end to end."""

from dataclasses import replace

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from gluon_bn import cli
from gluon_bn.experiments.catalogue import EXERCISES
from gluon_bn.experiments.claims import BETWEEN, CLAIMS
from gluon_bn.experiments.recorders import ActivationRecorder, layer_names, sigmoid_blocks
from gluon_bn.experiments.runner import ExerciseConfig, exercise_markdown, exercise_settings, variant_config
from gluon_bn.experiments.summary import summarize
from gluon_bn.models import lenet, seeded_lenet
from gluon_bn.norms import label
from gluon_bn.reliability.record import load_record
from gluon_bn.runs.loop import Callback, OnEpochEnd
from gluon_bn.runs.supervised import train_model
from gluon_bn.runtime.compiled import is_compiled

CPU = mx.cpu()


def _quiet(line: str) -> None:
    pass


def _settings(name: str, variant_name: str):
    """A variant's run settings on a small real subset: 2 epochs of 8 batches, every batch recorded."""
    config = exercise_settings(
        ExerciseConfig(name=name, ctx="cpu", epochs=2, num_train=512, num_test=256, batch_size=64)
    )
    variant = next(v for v in EXERCISES[name].variants(config) if v.name == variant_name)
    return variant, variant_config(config, variant, seed=0)


def _train(name: str, variant_name: str, record: bool, extra: Callback | None = None, ctx=CPU, compiled=None):
    """Train one variant for seed 0, with the exercise's recorders and per-epoch measurements or without them
    (compiled or not, when told, over what the exercise sets)."""
    exercise = EXERCISES[name]
    variant, settings = _settings(name, variant_name)
    if compiled is not None:
        settings = replace(settings, hybridize=compiled)
    net = seeded_lenet(variant.norm, ctx, settings.seed, **variant.options)
    extras: dict = {}
    callbacks = []
    if record and exercise.recorders is not None:
        callbacks += exercise.recorders(net, settings, ctx, extras)
    if record and exercise.on_epoch is not None:
        callbacks.append(OnEpochEnd(lambda result, net: extras.update(exercise.on_epoch(result, net, settings, ctx))))
    if extra is not None:
        callbacks.append(extra(net, settings))
    run = train_model(variant.norm, settings, ctx, _quiet, net=net, callbacks=callbacks, extras=extras)
    losses = [(e.loss, e.train_acc, e.test_acc) for e in run.history]
    params = [(name, p.data().asnumpy()) for name, p in net.collect_params().items()]
    return losses, params, extras, net


def _differences(a, b) -> list[str]:
    """Where two trainings differ: the per-epoch (loss, train acc, test acc), or a parameter (moving statistics too)."""
    found = ["history"] if a[0] != b[0] else []
    return found + [name for (name, x), (_, y) in zip(a[1], b[1]) if not np.array_equal(x, y)]


RECORDED = [  # every variant of every claim that records during training
    (name, variant.name)
    for name, claim in CLAIMS.items()
    if claim.recorders is not None or claim.on_epoch is not None
    for variant in claim.variants(None)
]


@pytest.mark.parametrize("name, variant", RECORDED)
def test_recording_leaves_training_exactly_as_it_is(name, variant, real_data_dir):
    recorded, plain = _train(name, variant, record=True), _train(name, variant, record=False)
    assert recorded[0] == plain[0]  # every epoch's loss, train and test accuracy, to the last bit
    assert _differences(recorded, plain) == []  # every weight and every moving statistic
    assert recorded[2] and not plain[2]  # the recorded run did record


TWO_DEVICES = [mx.cpu(0), mx.cpu(1)]


@pytest.mark.parametrize("name, variant", [("gradients", "BN, lr 1"), ("activations", "no BN")])
def test_recording_on_two_devices_leaves_training_exactly_as_it_is(name, variant, real_data_dir):
    recorded = _train(name, variant, record=True, ctx=TWO_DEVICES)
    plain = _train(name, variant, record=False, ctx=TWO_DEVICES)
    assert _differences(recorded, plain) == [] and recorded[2] and not plain[2]


@pytest.mark.parametrize("name, keys", [("gradients", ["grad_norm"]), ("activations", ["std", "percentiles"])])
def test_recorders_on_two_devices_see_the_whole_batch(name, keys, real_data_dir):
    """Without BN each example is on its own: the first batch split over two devices must give what one device sees
    (the gradient of the whole batch, the sigmoids' inputs of all its examples), up to float32 rounding."""
    variant = {"gradients": "no BN, lr 1", "activations": "no BN"}[name]
    one = _train(name, variant, record=True)[2][name][0]
    two = _train(name, variant, record=True, ctx=TWO_DEVICES)[2][name][0]
    for key in keys:
        assert list(two[key]) == list(one[key])
        np.testing.assert_allclose(
            np.array(list(two[key].values())), np.array(list(one[key].values())), rtol=1e-4, atol=1e-6
        )


class _Meddler(Callback):
    """A recorder that meddles once: an extra pass in training mode after a step. Its gradient is overwritten by
    the next batch's, but BN's moving statistics move (nn.BatchNorm moves them in its backward pass)."""

    def __init__(self, net, settings):
        self.net, self.X = net, next(iter(settings.loaders()[0]))[0]

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        if (epoch, batch) == (1, 3):
            with autograd.record():
                y = self.net(self.X)
            y.backward()
        return False


def test_a_recorder_that_meddles_is_caught(real_data_dir):
    clean = _train("gradients", "BN, lr 1", record=True)
    meddled = _train("gradients", "BN, lr 1", record=True, extra=_Meddler)
    assert any("running_mean" in name for name in _differences(meddled, clean))


def test_the_activations_claim_trains_imperatively_with_the_compiled_runs_losses(real_data_dir):
    variant, settings = _settings("activations", "BN")
    assert not settings.hybridize  # forward hooks fire only on blocks that run their own forward
    imperative = _train("activations", "BN", record=True)
    compiled = _train("activations", "BN", record=False, compiled=True)
    assert is_compiled(compiled[3]) and not is_compiled(imperative[3])
    assert imperative[0] == compiled[0]  # every epoch's loss and accuracies, to the last bit


@pytest.mark.parametrize("norm", ["none", "gluon"])
def test_the_activation_recorder_reads_each_sigmoids_input(norm):
    net = lenet(norm)
    net.initialize(mx.init.Xavier())
    extras: dict = {}
    recorder = ActivationRecorder(net, extras, batches_per_epoch=1, every=1)
    assert layer_names(net) == ["conv1", "conv2", "dense1", "dense2", "dense3"]
    assert recorder.names == ["conv1", "conv2", "dense1", "dense2"]
    X = nd.random.uniform(shape=(16, 1, 28, 28))
    net(X)  # a prediction-mode pass is not recorded
    assert not any(recorder.inputs)
    with autograd.record():
        net(X)
    inputs = [shards[0] for shards in recorder.inputs]
    if norm == "none":  # the sigmoid inside the conv layer: its output is the sigmoid of what was recorded
        np.testing.assert_allclose(inputs[0].sigmoid().asnumpy(), net[0](X).asnumpy(), rtol=1e-5, atol=1e-6)
    else:  # the sigmoid block after BN: what was recorded is BN's output in training mode
        with autograd.record():
            bn_out = net[1](net[0](X))
        np.testing.assert_allclose(inputs[0].asnumpy(), bn_out.asnumpy(), rtol=1e-5, atol=1e-6)
    recorder.on_batch_end(1, 1)
    row = extras["activations"][0]
    assert row["std"]["conv1"] == pytest.approx(float(inputs[0].asnumpy().std()), rel=1e-6)
    assert row["percentiles"]["dense2"] == pytest.approx(np.percentile(inputs[3].asnumpy()[:, 0], (15, 50, 85)))
    assert len(sigmoid_blocks(net)) == 4


def test_the_activation_recorder_says_a_compiled_net_hides_its_layers():
    net = lenet("gluon")
    net.initialize()
    net.hybridize()
    recorder = ActivationRecorder(net, {}, batches_per_epoch=1, every=1)
    with autograd.record():
        net(nd.zeros((2, 1, 28, 28)))
    with pytest.raises(RuntimeError, match="hybridize=False"):
        recorder.on_batch_end(1, 1)


def _gradient_runs(plain: tuple[float, float], bn: tuple[float, float]) -> list[dict]:
    """Runs whose gradients are (first layer's over the last's, the last layer's norm) without BN and with it."""

    def run(variant, ratio, last):
        rows = [{"step": s, "epoch": 1, "grad_norm": {"conv1": ratio * last, "dense3": last}} for s in (1, 2, 3)]
        return {"variant": variant, "status": "trained", "history": [], "extras": {"gradients": rows}}

    return [
        run(f"{name}, lr {lr:g}", *(plain if name == "no BN" else bn)) for lr in (1, 10) for name in ("no BN", "BN")
    ]


def test_the_gradient_verdict_follows_the_numbers():
    conclude = CLAIMS["gradients"].conclude
    calm = _gradient_runs(plain=(1e-4, 1.0), bn=(0.5, 1.0))  # nothing grows: vanishing alone is judged
    assert "this holds for vanishing gradients (nothing explodes here to judge):" in conclude([], calm)
    worse = conclude([], _gradient_runs(plain=(0.5, 1.0), bn=(1e-4, 1.0)))
    assert "this does not hold for vanishing gradients (nothing explodes here to judge):" in worse
    runs = _gradient_runs(plain=(1e-4, 1.0), bn=(0.5, 1.0))
    for run in runs:  # BN's gradients grow 50-fold after the start: less vanishing, more exploding
        if run["variant"].startswith("BN"):
            for row in run["extras"]["gradients"][1:]:
                row["grad_norm"] = {name: 50 * value for name, value in row["grad_norm"].items()}
    part = conclude([], runs)
    assert "this holds in part:" in part and "1x the first step's without BN and 50x with it" in part


def test_the_gradient_verdict_leaves_out_the_initializations_gradients():
    runs = _gradient_runs(plain=(1e-4, 1.0), bn=(0.5, 1.0))
    for run in runs:  # with BN the first step's gradient is its largest: after the start it is 50 times smaller
        if run["variant"].startswith("BN"):
            run["extras"]["gradients"][0]["grad_norm"]["dense3"] = 50.0
    assert "1x the first step's without BN and 0.02x with it" in CLAIMS["gradients"].conclude([], runs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLAIMS))
@pytest.mark.usefixtures("figures_closed")
def test_each_claim_runs_quick_and_says_whether_it_holds(name, tmp_path, real_data_dir, capsys):
    assert cli.main(["exercise", name, "--quick", "--ctx", "cpu", "--out", str(tmp_path)]) == 0
    record = load_record(tmp_path / f"exercise-{name}.json")
    conclusion = record["results"]["conclusion"]
    assert record["complete"] and record["config"]["quick"]
    for passage in CLAIMS[name].claim.split(BETWEEN):
        assert f'The chapter: "{passage}". For its LeNet on Fashion-MNIST this ' in conclusion
    assert (tmp_path / f"exercise-{name}.png").read_bytes().startswith(b"\x89PNG")
    md = (tmp_path / f"exercise-{name}.md").read_text()
    assert f'The chapter: "{CLAIMS[name].claim}"' in md and conclusion in md
    recorded = {"gradients": "gradients", "activations": "activations"}.get(name)
    if recorded:
        assert all(r["extras"][recorded] for r in record["results"]["runs"])


def test_the_learning_rate_exercise_quotes_its_claim():
    assert EXERCISES["learning-rate"].claim == "we can be more aggressive in picking large learning rates on the data"


def _batch_summary(bn_accuracy: dict[int, float]) -> list[dict]:
    """Summary rows: BN's test accuracy by batch size as given, every other norm at 0.8 (LayerNorm 0.9 at batch 4)."""
    rows = []
    for norm in ("none", "gluon", "layer", "group"):
        for b in (4, 64, 512):
            acc = bn_accuracy[b] if norm == "gluon" else 0.9 if (norm, b) == ("layer", 4) else 0.8
            rows.append({"group": label(norm), "batch_size": b, "test_acc": acc, "test_acc_std": 0.001})
    return rows


def test_the_batch_size_verdict_follows_the_numbers():
    conclude = CLAIMS["batch-size"].conclude
    runs = [{"history": [{"epoch": 1}, {"epoch": 2}]}]
    moderate = conclude(_batch_summary({4: 0.7, 64: 0.85, 512: 0.8}), runs)
    assert "this holds:" in moderate and "best at batch 64" in moderate and "0.850 ± 0.001" in moderate
    assert "LayerNorm beats BN beyond seed noise at batch 4 (0.900 vs 0.700)" in moderate
    assert "GroupNorm beats BN beyond seed noise at batch 4 (0.800 vs 0.700)" in moderate
    large = conclude(_batch_summary({4: 0.82, 64: 0.8, 512: 0.85}), runs)
    assert "this does not hold:" in large and "best at batch 512" in large
    assert "GroupNorm never beats BN beyond seed noise" in large
    tied = conclude(_batch_summary({4: 0.7, 64: 0.8495, 512: 0.85}), runs)  # 64 ties with the best, 512, alone
    assert "this holds only within seed noise:" in tied and "within seed noise of it at batch 64 " in tied
    flat = conclude(_batch_summary({4: 0.8495, 64: 0.8495, 512: 0.85}), runs)  # 4 ties too: 50-100 is not singled out
    assert "this is not borne out (sizes inside and outside 50-100 are within seed noise of the best):" in flat


def _regularization_runs(fits: dict[str, tuple[float, float]]) -> list[dict]:
    """Two seeds of every variant with the given (train accuracy in prediction mode, test accuracy); 0.1 elsewhere."""
    runs = []
    for variant in CLAIMS["regularization"].variants(None):
        train, test = fits.get(variant.name, (0.1, 0.1))
        for seed, wobble in enumerate((-0.001, 0.001)):
            epoch = {"epoch": 1, "loss": 1.0, "train_acc": train, "test_acc": test + wobble, "time": 1.0}
            runs.append(
                {
                    "variant": variant.name,
                    "group": "",
                    "lr": 1.0,
                    "seed": seed,
                    "status": "trained",
                    "history": [epoch],
                    "extras": {"per_epoch": {"train_acc_eval": [train]}},
                }
            )
    return runs


def test_the_regularization_verdict_compares_gaps_only_of_nets_that_fit():
    conclude = CLAIMS["regularization"].conclude

    def verdict_on(fits):
        runs = _regularization_runs(fits)
        return conclude(summarize(runs), runs)

    smaller = verdict_on({"BN": (0.9, 0.85), "LayerNorm (no batch noise)": (0.9, 0.7)})
    assert 'overfitting too badly". For its LeNet on Fashion-MNIST this holds:' in smaller
    assert "BN +0.050 ± 0.001 (train 0.900, test 0.850)" in smaller
    larger = verdict_on({"BN": (0.95, 0.75), "LayerNorm (no batch noise)": (0.75, 0.72)})
    assert 'overfitting too badly". For its LeNet on Fashion-MNIST this does not hold:' in larger
    unfit = verdict_on({"BN": (0.9, 0.85)})
    assert (
        "this cannot be judged from this run (no norm does not fit its training images: train accuracy 0.100" in unfit
    )
    assert '"batch-normalized models seldom even use dropout". For its LeNet on Fashion-MNIST this holds' in unfit


@pytest.mark.parametrize("sizes, said", [([64, 64], "batch 64, on"), ([4, 512], "the batch size the row names, on")])
def test_the_report_states_the_batch_size_the_runs_trained_with(sizes, said):
    config = exercise_settings(ExerciseConfig(name="regularization", ctx="cpu"))
    result = {"runs": [{"batch_size": b} for b in sizes], "table": "", "details": "", "conclusion": ""}
    text = exercise_markdown(config, CPU, result)
    assert config.batch_size == 256 and said in text
