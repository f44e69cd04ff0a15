"""The chapter's claims about BN as measured experiments: batch size, regularization, gradients, activations.

Each is an exercise of the catalogue (``gluon-bn exercise NAME``) whose ``claim`` quotes the chapter
word for word, and whose conclusion says, assembled from that run's numbers, whether the claim holds
for the chapter's LeNet on Fashion-MNIST; a claim that does not hold is reported as such.
"""

from __future__ import annotations

import math

import numpy as np
from mxnet import gluon

from ..chapter.training import Epoch
from ..norms import label
from ..reports.claim_plots import (
    PERCENTILES,
    gap_per_epoch,
    plot_activations,
    plot_batch_sizes,
    plot_gradients,
    plot_regularization,
    recordings,
)
from ..runs.loop import Callback, evaluate_accuracy
from ..runtime.devices import Contexts
from .exercises import Exercise, Variant, by_name
from .recorders import ActivationRecorder, GradientRecorder, sampling
from .summary import compare_sentence, fmt_mean_std, seed_noise

__all__ = ["BETWEEN", "CLAIMS", "verdict"]

#: Passages of one claim are joined by this (each passage is the chapter's words exactly).
BETWEEN = " … "


def verdict(claim: str, judged: str, evidence: str) -> str:
    """The conclusion's first sentence: the chapter's words, whether they hold here, and the numbers that say so."""
    return f'The chapter: "{claim}". For its LeNet on Fashion-MNIST this {judged}: {evidence}.'


def _judged(holds: list[bool]) -> str:
    """'holds' when every comparison agrees with the claim, 'does not hold' when none does, else 'holds in part'."""
    return "holds" if all(holds) else "does not hold" if not any(holds) else "holds in part"


def _accuracy(row: dict) -> float:
    """A summary row's test accuracy, with a run that never finished ranked last."""
    return -1.0 if math.isnan(row["test_acc"]) else row["test_acc"]


def _beyond_noise(better: dict, worse: dict) -> bool:
    """Whether ``better``'s test accuracy tops ``worse``'s by more than twice the larger seed spread."""
    return better["test_acc"] - worse["test_acc"] > 2 * seed_noise(better, worse)


def _by_noise(agrees: bool, disagrees: bool) -> str:
    """The verdict on a difference the claim predicts: seen beyond seed noise, the opposite seen, or neither."""
    if agrees:
        return "holds"
    return "does not hold" if disagrees else "is not borne out (the difference is within seed noise)"


# -- batch-size ---------------------------------------------------------------------------

CLAIM_BATCH = "this resolves the puzzle why BN works best for moderate sizes of minibatches, i.e. of size 50-100"
BATCH_SIZES = (4, 16, 64, 128, 256, 512)
QUICK_BATCH_SIZES = (16, 256)
BATCH_NORMS = ("none", "gluon", "layer", "group")
#: The chapter's batch and learning rate; lr = batch / 256 keeps each example's step fixed, since
#: ``trainer.step(batch)`` divides the summed gradient by the batch.
CHAPTER_BATCH = 256


def _batch_variants(config) -> list[Variant]:
    sizes = QUICK_BATCH_SIZES if getattr(config, "quick", False) else BATCH_SIZES
    return [
        Variant(f"{label(norm)}, batch {b}", norm, lr=b / CHAPTER_BATCH, group=label(norm), batch_size=b)
        for norm in BATCH_NORMS
        for b in sizes
    ]


def _by_batch(summary: list[dict], norm: str) -> list[dict]:
    return sorted((r for r in summary if r["group"] == label(norm)), key=lambda r: r["batch_size"])


def _curve(rows: list[dict]) -> str:
    return ", ".join(f"{r['batch_size']}: {fmt_mean_std(r['test_acc'], r['test_acc_std'])}" for r in rows)


def _overtakes(summary: list[dict], norm: str) -> str:
    """Where ``norm`` beats BN beyond seed noise (twice the larger std), by batch size."""
    bn = {r["batch_size"]: r for r in _by_batch(summary, "gluon")}
    wins = [
        f"{r['batch_size']} ({r['test_acc']:.3f} vs {bn[r['batch_size']]['test_acc']:.3f})"
        for r in _by_batch(summary, norm)
        if _beyond_noise(r, bn[r["batch_size"]])
    ]
    if not wins:
        return f"{label(norm)} never beats BN beyond seed noise"
    return f"{label(norm)} beats BN beyond seed noise at batch " + ", ".join(wins)


def _conclude_batch(summary, runs) -> str:
    bn = _by_batch(summary, "gluon")
    best = max(bn, key=_accuracy)
    moderate = [r for r in bn if 50 <= r["batch_size"] <= 100]
    near = [r for r in bn if not _beyond_noise(best, r)]  # the best, and those within seed noise of it
    if not moderate:
        judged = "cannot be judged from this run (no batch size tried lies in 50-100)"
    elif best in moderate:
        judged = "holds"
    elif not any(r in near for r in moderate):
        judged = "does not hold"
    elif all(r in moderate for r in near if r is not best):
        judged = "holds only within seed noise"
    else:  # sizes inside 50-100 and outside it tie with the best: the run cannot single out 50-100
        judged = "is not borne out (sizes inside and outside 50-100 are within seed noise of the best)"
    tied = [str(r["batch_size"]) for r in near if r is not best]
    evidence = (
        f"BN's test accuracy by batch size is {_curve(bn)}, best at batch {best['batch_size']} "
        + (f"and within seed noise of it at batch {', '.join(tied)} " if tied else "")
        + f"(lr = batch/{CHAPTER_BATCH}, the same examples, {max(len(r['history']) for r in runs)} epoch(s), "
        "for every size)"
    )
    others = "; ".join(
        f"{label(norm)} is best at batch {max(_by_batch(summary, norm), key=_accuracy)['batch_size']}"
        for norm in BATCH_NORMS
        if norm != "gluon"
    )
    return (
        verdict(CLAIM_BATCH, judged, evidence)
        + f" {others}. "
        + "; ".join(_overtakes(summary, norm) for norm in ("layer", "group"))
        + "."
    )


# -- regularization -----------------------------------------------------------------------

CLAIM_REGULARIZATION = (
    "This natural variation acts as *regularization* which prevents models from overfitting too badly"
)
CLAIM_CONV_DROPOUT = "dropout is nontrivial to use in convolutional layers and does not perform as well"
CLAIM_NO_DROPOUT = "batch-normalized models seldom even use dropout"
#: Dropout in the dense layers at the usual 0.5; the conv layers (6 and 16 channels of sigmoids) at 0.1.
DENSE_DROPOUT, CONV_DROPOUT = 0.5, 0.1
#: A net fits its training images when its train accuracy in prediction mode reaches this; a gap says
#: nothing about overfitting in a net that does not.
FITS = 0.5
#: Batch 64 (at lr 1): 32 steps an epoch, so that LayerNorm, the control, fits the 2,000 images in 20 epochs;
#: at the chapter's 256 (8 steps an epoch) only BN does (LayerNorm: train accuracy 0.46 after 20 epochs).
#: 60 epochs: the LeNet without a norm leaves chance only after 28 to 46, by seed (train accuracy 0.77 at 60).
REGULARIZATION_BATCH = 64
PLAIN, BN, LAYER = "no norm", "BN", "LayerNorm (no batch noise)"
DENSE = f"dropout {DENSE_DROPOUT:g}, dense layers"
EVERY = f"dropout {CONV_DROPOUT:g} conv + {DENSE_DROPOUT:g} dense"
BN_DENSE, BN_EVERY = f"BN + {DENSE}", f"BN + {EVERY}"


def _regularization_variants(config) -> list[Variant]:
    """The chapter's LeNet without a norm, with BN, and with LayerNorm (normalized without batch noise: the
    control that fits), each with dropout in the dense layers or in every hidden layer where it says."""
    dense = {"dropout": DENSE_DROPOUT}
    every = {**dense, "dropout_where": "all", "conv_dropout": CONV_DROPOUT}
    return [
        Variant(name, norm, options, batch_size=REGULARIZATION_BATCH)
        for name, norm, options in (
            (PLAIN, "none", {}),
            (BN, "gluon", {}),
            (LAYER, "layer", {}),
            (DENSE, "none", dense),
            (EVERY, "none", every),
            (BN_DENSE, "gluon", dense),
            (BN_EVERY, "gluon", every),
        )
    ]


def _train_accuracy_on_epoch(epoch: Epoch, net: gluon.Block, config, ctx: Contexts) -> dict:
    """Train accuracy in prediction mode (dropout off, BN's moving statistics) on the run's training subset."""
    train_iter, _ = config.loaders(seed=config.seed + 1000 + epoch.epoch)
    return {"train_acc_eval": evaluate_accuracy(train_iter, net, ctx)}


def _fit(runs: list[dict], variant: str) -> dict:
    """The last epoch's train accuracy (prediction mode), test accuracy and their gap, mean over seeds."""
    train, test, gap = gap_per_epoch(runs, variant)
    if not train.size:
        return {"train": float("nan"), "test": float("nan"), "gap": float("nan"), "gap_std": float("nan")}
    return {
        "train": float(train[:, -1].mean()),
        "test": float(test[:, -1].mean()),
        "gap": float(gap[:, -1].mean()),
        "gap_std": float(gap[:, -1].std()),
    }


def _fit_text(name: str, fit: dict) -> str:
    return f"{name} {fit['gap']:+.3f} ± {fit['gap_std']:.3f} (train {fit['train']:.3f}, test {fit['test']:.3f})"


def _combined(verdicts: list[str]) -> str:
    """One verdict from several comparisons': theirs when they agree, else 'holds in part'."""
    return verdicts[0] if len(set(verdicts)) == 1 else "holds in part"


def _unfit(names: list[str], fits: dict) -> str:
    return (
        "cannot be judged from this run ("
        + ", ".join(
            f"{name} does not fit its training images: train accuracy {fits[name]['train']:.3f}" for name in names
        )
        + ")"
    )


def _conclude_regularization(summary, runs) -> str:
    fits = {v: _fit(runs, v) for v in dict.fromkeys(r["variant"] for r in runs)}
    fitting = {v for v, f in fits.items() if f["train"] >= FITS}
    controls = [v for v in (LAYER, PLAIN) if v in fitting]
    gaps = "the last epoch's gap between train accuracy (prediction mode) and test accuracy is " + ", ".join(
        _fit_text(v, fits[v]) for v in (PLAIN, LAYER, BN)
    )
    if BN in fitting and controls:
        verdicts = []
        for control in controls:
            noise = 2 * max(fits[control]["gap_std"], fits[BN]["gap_std"], 0.002)
            less = fits[control]["gap"] - fits[BN]["gap"]
            verdicts.append(_by_noise(less > noise, -less > noise))
        judged = _combined(verdicts)
    else:
        judged = _unfit([v for v in (PLAIN, LAYER, BN) if v not in fitting], fits)
    row = {r["variant"]: r for r in summary}
    pairs = [(row[DENSE], row[EVERY], "without a norm"), (row[BN_DENSE], row[BN_EVERY], "with BN")]
    conv = "; ".join(
        compare_sentence(dense, every, f"adding dropout {CONV_DROPOUT:g} to the conv layers {how}")
        for dense, every, how in pairs
    )
    judged_conv = [
        _by_noise(_beyond_noise(dense, every), _beyond_noise(every, dense))
        for dense, every, _ in pairs
        if dense["variant"] in fitting
    ]
    extra = compare_sentence(row[BN], row[BN_DENSE], f"adding dropout {DENSE_DROPOUT:g} to BN's dense layers")
    return " ".join(
        (
            verdict(CLAIM_REGULARIZATION, judged, gaps),
            verdict(
                CLAIM_CONV_DROPOUT,
                _combined(judged_conv) if judged_conv else _unfit([DENSE, BN_DENSE], fits),
                conv,
            ),
            verdict(
                CLAIM_NO_DROPOUT,
                _unfit([BN], fits)
                if BN not in fitting
                else "does not hold (dropout helps BN here)"
                if _beyond_noise(row[BN_DENSE], row[BN])
                else "holds (BN needs no dropout here)",
                extra + f"; its gap {_fit_text(BN_DENSE, fits[BN_DENSE])}",
            ),
        )
    )


# -- gradients ----------------------------------------------------------------------------

CLAIM_GRADIENTS = "Empirically it appears to stabilize the gradient (less exploding or vanishing values)"
#: The chapter's lr, and 10: in the learning-rate exercise (docs/measurements.md) LeNet without BN stays
#: at chance from lr 10 on while LeNet with BN still trains there.
GRADIENT_LRS = (1.0, 10.0)
_WITH_AND_WITHOUT = (("none", "no BN"), ("gluon", "BN"))


def _gradient_variants(config) -> list[Variant]:
    return [
        Variant(f"{name}, lr {lr:g}", norm, lr=lr, group=name)
        for lr in GRADIENT_LRS
        for norm, name in _WITH_AND_WITHOUT
    ]


def _gradient_recorders(net: gluon.Block, config, ctx: Contexts, extras: dict) -> list[Callback]:
    return [GradientRecorder(net, extras, *sampling(config), batch_size=config.batch_size)]


#: A gradient explodes when a layer's norm, once training has left its start, grows past this many times the
#: largest norm of the first step (the initialization's, the same at every lr).
EXPLODES = 10.0


def _first_to_last(runs: list[dict], variant: str) -> tuple[float, float, float]:
    """Median over training of |grad first layer| / |grad last layer|, mean and std over seeds; and the largest
    norm after the first tenth of the samples over the largest of the first step (its growth)."""
    _, norms = recordings(runs, variant, "gradients", "grad_norm")
    if not norms or next(iter(norms.values())).shape[1] < 2:
        return float("nan"), float("nan"), float("nan")
    names = list(norms)
    ratios = np.median(norms[names[0]] / np.maximum(norms[names[-1]], 1e-30), axis=1)
    after_start = slice(max(1, norms[names[0]].shape[1] // 10), None)
    largest = max(v[:, after_start].max() for v in norms.values())
    first = max(v[:, 0].max() for v in norms.values())
    return float(ratios.mean()), float(ratios.std()), float(largest / max(first, 1e-30))


def _exploding(plain: float, bn: float) -> tuple[bool | None, str]:
    """Whether BN explodes less (None: neither explodes, so this run cannot judge it), and the words for it."""
    words = (
        f"exploding: the largest layer gradient norm after the first tenth of training is {plain:.3g}x the first "
        f"step's without BN and {bn:.3g}x with it"
    )
    if max(plain, bn) <= EXPLODES:
        return None, words + f" (neither grows past {EXPLODES:g}x: nothing explodes here to judge)"
    return bn < plain, words


def _conclude_gradients(summary, runs) -> str:
    """Vanishing: the first layer's gradient over the last's, nearer 1 with BN? Exploding: less growth with BN?"""
    parts, holds, judged_exploding = [], [], False
    for lr in GRADIENT_LRS:
        (plain, p_std, p_growth), (bn, b_std, b_growth) = (
            _first_to_last(runs, f"{name}, lr {lr:g}") for _, name in _WITH_AND_WITHOUT
        )
        holds.append(abs(math.log10(bn)) < abs(math.log10(plain)) if plain > 0 and bn > 0 else False)
        calmer, exploding = _exploding(p_growth, b_growth)
        if calmer is not None:
            holds.append(calmer)
            judged_exploding = True
        parts.append(
            f"at lr {lr:g}, vanishing: the first layer's weight gradient is {plain:.2g} ± {p_std:.2g} times the last "
            f"layer's without BN and {bn:.2g} ± {b_std:.2g} times with it (median over training, mean ± std over "
            f"seeds); {exploding}"
        )
    judged = _judged(holds) + ("" if judged_exploding else " for vanishing gradients (nothing explodes here to judge)")
    return verdict(CLAIM_GRADIENTS, judged, "; ".join(parts))


# -- activations --------------------------------------------------------------------------

CLAIM_ACTIVATIONS = "the activations for intermediate layers cannot diverge any longer"


def _activation_recorders(net: gluon.Block, config, ctx: Contexts, extras: dict) -> list[Callback]:
    return [ActivationRecorder(net, extras, *sampling(config))]


def _activation_numbers(runs: list[dict], variant: str) -> dict:
    """The last hidden layer's first unit (Ioffe & Szegedy's Fig. 1): its median's drift and band's width;
    the layers' scales (std of each sigmoid input): largest over smallest at the end, and the most any grew."""
    _, unit = recordings(runs, variant, "activations", "percentiles")
    _, scale = recordings(runs, variant, "activations", "std")
    if not unit:
        return {}
    band = np.array(unit[list(unit)[-1]])  # (seeds, samples, 3 percentiles)
    median, width = band[:, :, 1], band[:, :, 2] - band[:, :, 0]
    stds = np.stack(list(scale.values()))  # (layers, seeds, samples)
    return {
        "drift": float((median.max(axis=1) - median.min(axis=1)).mean()),
        "width": float(width.mean()),
        "ratio": float((stds[:, :, -1].max(axis=0) / stds[:, :, -1].min(axis=0)).mean()),
        "growth": float((stds[:, :, -1] / stds[:, :, 0]).max(axis=0).mean()),
        "layer": list(unit)[-1],
    }


def _conclude_activations(summary, runs) -> str:
    plain, bn = _activation_numbers(runs, "no BN"), _activation_numbers(runs, "BN")
    if not plain or not bn:
        return verdict(CLAIM_ACTIVATIONS, "cannot be judged from this run (a variant recorded nothing)", "no samples")
    holds = [bn["ratio"] < plain["ratio"], bn["growth"] < plain["growth"]]
    pct = "/".join(str(p) for p in PERCENTILES)
    evidence = (
        f"the sigmoid inputs' scale (std) differs between the largest and the smallest hidden layer by a factor "
        f"{plain['ratio']:.3g} without BN and {bn['ratio']:.3g} with it at the end of training, and the most any "
        f"layer's scale grew over training is {plain['growth']:.3g}x without and {bn['growth']:.3g}x with; the "
        f"{pct}th percentiles of one sigmoid's input (the first unit of {plain['layer']}, as in Ioffe & Szegedy's "
        f"Figure 1) span {plain['width']:.3g} without BN and {bn['width']:.3g} with it on average, and their median "
        f"moves by {plain['drift']:.3g} without and {bn['drift']:.3g} with over training"
    )
    return verdict(CLAIM_ACTIVATIONS, _judged(holds), evidence)


#: The chapter's claims, by name (``catalogue.EXERCISES`` lists them after the chapter's exercises).
CLAIMS = by_name(
    Exercise(
        "batch-size",
        "Is BN best at moderate batch sizes (50-100), and where do LayerNorm and GroupNorm overtake it?",
        _batch_variants,
        _conclude_batch,
        num_train=10000,
        claim=CLAIM_BATCH,
        plot=plot_batch_sizes,
    ),
    Exercise(
        "regularization",
        "Does BN's batch noise regularize (a smaller train-test gap than LayerNorm's), and does it make dropout "
        f"unneeded? (batch {REGULARIZATION_BATCH}, lr 1)",
        _regularization_variants,
        _conclude_regularization,
        on_epoch=_train_accuracy_on_epoch,
        epochs=60,
        num_train=2000,
        claim=BETWEEN.join((CLAIM_CONV_DROPOUT, CLAIM_REGULARIZATION, CLAIM_NO_DROPOUT)),
        plot=plot_regularization,
    ),
    Exercise(
        "gradients",
        "Does BN keep the gradient from vanishing or exploding from layer to layer?",
        _gradient_variants,
        _conclude_gradients,
        epochs=5,
        claim=CLAIM_GRADIENTS,
        plot=plot_gradients,
        recorders=_gradient_recorders,
    ),
    Exercise(
        "activations",
        "Does BN keep the hidden layers' activations (the sigmoids' inputs) from drifting and diverging?",
        lambda c: [Variant("no BN", "none"), Variant("BN", "gluon")],
        _conclude_activations,
        epochs=5,
        claim=CLAIM_ACTIVATIONS,
        plot=plot_activations,
        recorders=_activation_recorders,
        hybridize=False,
    ),
)
