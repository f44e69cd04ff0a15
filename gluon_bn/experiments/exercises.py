"""The chapter's exercises as measured experiments, and precise BN, over several seeds.

Every exercise is a list of model variants run by one runner (:mod:`.runner`, behind
``gluon-bn exercise``): each
variant is trained for each seed with the chapter's training loop, and the exercise's own
measurements are taken from the trained model. Each exercise then states a conclusion drawn
from that run's numbers: the text is assembled from them, never written in advance.
The chapter's claims are exercises too (:mod:`.claims`); :mod:`.catalogue` holds them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from mxnet import autograd, gluon

from ..chapter.training import Epoch
from ..norms.bnstate import is_bn, swap_bn_stats
from ..norms.precise_bn import recompute_bn_stats
from ..reports.tables import markdown_table
from ..runs.loop import Callback, evaluate_accuracy
from ..runtime.devices import Contexts, forward_shards, split_batch
from .recorders import grad_norm
from .summary import compare_sentence, fmt_mean_std, row_of

__all__ = ["CHAPTER_EXERCISES", "Exercise", "Variant", "by_name", "precise_spreads"]


@dataclass(frozen=True)
class Variant:
    """One model setting of an exercise: a LeNet norm, ``lenet`` options, a learning rate."""

    name: str
    norm: str
    options: dict = field(default_factory=dict)
    lr: float | None = None  # None: the run's --lr
    group: str = ""  # rows that belong together (a curve in a sweep)
    devices: int | None = None  # data parallel over this many devices of the run's kind; None: the run's --ctx
    batch_size: int | None = None  # global batch; None: the run's --batch-size


@dataclass(frozen=True)
class Exercise:
    """An exercise: its question (and any claim of the chapter it tests), variants, measurements, conclusion."""

    name: str
    question: str
    variants: Callable[[object], list[Variant]]
    conclude: Callable[[list[dict], list[dict]], str]
    measure: Callable[[gluon.Block, object, Contexts], dict] | None = None
    on_epoch: Callable[[Epoch, gluon.Block, object, Contexts], dict] | None = None
    details: Callable[[list[dict]], str] | None = None  # an extra Markdown table
    x_axis: str | None = None  # plot against this numeric variant field (lr) instead of bars
    epochs: int = 2  # default epochs per run (the chapter's 5 where it matters)
    num_train: int | None = None  # default training subset (None: all 60,000)
    claim: str = ""  # the chapter's words it tests, quoted exactly (passages joined by " … ")
    # its own plot, (summary, runs, path, title) -> Figure, instead of reports.plots.plot_exercise
    plot: Callable[..., Figure] | None = None
    # per run, (net, config, ctx, extras) -> callbacks that record into the run's extras while it trains
    recorders: Callable[[gluon.Block, object, Contexts, dict], list[Callback]] | None = None
    hybridize: bool = True  # False: its runs train imperatively (forward hooks see each layer)


# -- 1. no-bias ---------------------------------------------------------------------------


def _bias_gradients(net: gluon.Block, config, ctx: Contexts) -> dict:
    """|grad bias| / |grad weight| on one training batch, for each layer with a bias."""
    train_iter, _ = config.loaders(num_train=config.batch_size)
    Xs, ys = split_batch(*next(iter(train_iter)), ctx)
    with autograd.record():
        ls = [gluon.loss.SoftmaxCrossEntropyLoss()(y_hat, y).sum() for y_hat, y in zip(forward_shards(net, Xs), ys)]
    autograd.backward(ls)
    ratios = {"before BN": [], "no BN after": []}
    layers = list(net)
    for i, layer in enumerate(layers):
        bias = getattr(layer, "bias", None)
        if bias is not None and bias.grad_req != "null":
            followed = i + 1 < len(layers) and is_bn(layers[i + 1])
            ratios["before BN" if followed else "no BN after"].append(
                grad_norm(bias) / max(grad_norm(layer.weight), 1e-30)
            )
    return {"bias_grad_ratio": ratios}


def _conclude_no_bias(summary, runs) -> str:
    with_bias = [
        r["extras"]["bias_grad_ratio"] for r in runs if r["variant"] == "with bias" and r["status"] == "trained"
    ]
    before_bn = [v for ratios in with_bias for v in ratios["before BN"]]
    last = [v for ratios in with_bias for v in ratios["no BN after"]]
    text = (
        f"With biases, the gradient reaching a bias that BN follows is at most "
        f"{max(before_bn):.1e} of its layer's weight gradient (the output layer's bias, which no BN "
        f"follows: {np.mean(last):.1e}): subtracting the batch mean cancels any constant shift, so "
        "the bias before BN gets no gradient and does nothing. "
        if before_bn and last
        else ""
    )
    return (
        text
        + compare_sentence(row_of(summary, "with bias"), row_of(summary, "without bias"), "Removing those biases")
        + "."
    )


# -- 2. learning-rate ---------------------------------------------------------------------

LEARNING_RATES = (0.05, 0.3, 1.0, 3.0, 10.0, 100.0, 1e4, 1e38)


def _lr_variants(config) -> list[Variant]:
    return [
        Variant(f"{label}, lr {lr:g}", norm, lr=lr, group=label)
        for norm, label in (("gluon", "with BN"), ("none", "without BN"))
        for lr in LEARNING_RATES
    ]


def _status(row: dict) -> str:
    if row["diverged"] == row["seeds"]:
        return "diverged"
    if row["diverged"]:
        return "diverged in some seeds"
    return "trains" if row["train_acc"] >= 0.5 else "fails to learn"


def _conclude_lr(summary, runs) -> str:
    parts = []
    for group in ("with BN", "without BN"):
        rows = [r for r in summary if r["group"] == group]
        trains = [r["lr"] for r in rows if _status(r) == "trains"]
        broken = [(r["lr"], _status(r)) for r in rows if _status(r) != "trains"]
        best = max(rows, key=lambda r: -1 if math.isnan(r["test_acc"]) else r["test_acc"])
        parts.append(
            f"{group}, the model trains (train accuracy >= 0.5) at "
            + (f"learning rates {min(trains):g} to {max(trains):g}" if trains else "no learning rate tried")
            + (
                f"; it {broken[0][1]} first at lr {broken[0][0]:g}"
                if broken and trains and broken[0][0] > min(trains)
                else ""
            )
            + (
                ", and diverges (NaN/inf loss) at "
                + ", ".join(f"{lr:g}" for lr, s in broken if s.startswith("diverged"))
                if any(s.startswith("diverged") for _, s in broken)
                else ", and never diverges in this sweep"
            )
            + f"; its best test accuracy is {fmt_mean_std(best['test_acc'], best['test_acc_std'])} at lr {best['lr']:g}"
        )
    return ". ".join(parts) + "."


# -- 3. placement, 4. frozen-affine, 5. global-stats ------------------------------------


def _conclude_against(baseline: str, label: str = "") -> Callable:
    def conclude(summary, runs) -> str:
        base = row_of(summary, baseline)
        best = max(summary, key=lambda r: -1 if math.isnan(r["test_acc"]) else r["test_acc"])
        sentences = [
            compare_sentence(base, r, f"{r['variant']} against {baseline}") for r in summary if r["variant"] != baseline
        ]
        return (
            label + "; ".join(sentences) + f". Best: {best['variant']} "
            f"({fmt_mean_std(best['test_acc'], best['test_acc_std'])})."
        )

    return conclude


def _conclude_frozen(summary, runs) -> str:
    return (
        "; ".join(
            compare_sentence(
                row_of(summary, f"{label}, learned"),
                row_of(summary, f"{label}, frozen"),
                f"{label}: gamma and beta frozen at 1 and 0",
            )
            for label in ("from scratch", "nn.BatchNorm")
        )
        + "."
    )


# -- 6. precise-bn ------------------------------------------------------------------------


def _precise_on_epoch(epoch: Epoch, net: gluon.Block, config, ctx: Contexts) -> dict:
    """Test accuracy with re-estimated statistics, training's own moving averages put back after."""
    train_iter, test_iter = config.loaders(seed=config.seed + 1000 + epoch.epoch)
    saved = swap_bn_stats(net)
    recompute_bn_stats(net, train_iter, num_batches=config.precise_batches, ctx=ctx)
    accuracy = evaluate_accuracy(test_iter, net, ctx)
    swap_bn_stats(net, saved, ctx)
    return {"precise_test_acc": accuracy}


def precise_spreads(runs: list[dict], variant: str) -> dict:
    """Test accuracy per epoch with moving vs re-estimated statistics: means and spreads."""
    mine = [r for r in runs if r["variant"] == variant and r["status"] == "trained"]
    moving = np.array([[e["test_acc"] for e in r["history"]] for r in mine])
    precise = np.array([r["extras"]["per_epoch"]["precise_test_acc"] for r in mine])
    out = {}
    for name, acc in (("moving", moving), ("precise", precise)):
        if acc.size == 0:
            return {}
        later = acc[:, 1:] if acc.shape[1] > 2 else acc  # epoch 1 is mostly the learning itself
        out[name] = {
            "per_epoch_mean": acc.mean(axis=0).tolist(),
            "per_epoch_std": acc.std(axis=0).tolist(),
            "last_mean": float(acc[:, -1].mean()),
            "last_std": float(acc[:, -1].std()),
            # epoch to epoch: mean |change| between consecutive epochs, per seed, then averaged
            "epoch_to_epoch": float(np.abs(np.diff(later, axis=1)).mean()) if later.shape[1] > 1 else 0.0,
            # seed to seed: the std across seeds, averaged over epochs
            "seed_to_seed": float(acc.std(axis=0).mean()),
        }
    return out


def _precise_by_variant(runs) -> dict[str, tuple[dict, dict]]:
    """(moving, precise) spreads of every variant that has them."""
    spreads = {variant: precise_spreads(runs, variant) for variant in dict.fromkeys(r["variant"] for r in runs)}
    return {variant: (s["moving"], s["precise"]) for variant, s in spreads.items() if s}


def _conclude_precise(summary, runs) -> str:
    parts = []
    for variant, (m, p) in _precise_by_variant(runs).items():
        parts.append(
            f"{variant}: last-epoch test accuracy {m['last_mean']:.3f} ± {m['last_std']:.3f} with the moving "
            f"averages, {p['last_mean']:.3f} ± {p['last_std']:.3f} with re-estimated statistics; the mean "
            f"jump between consecutive epochs goes from {m['epoch_to_epoch']:.3f} to {p['epoch_to_epoch']:.3f} "
            f"and the spread across seeds from {m['seed_to_seed']:.3f} to {p['seed_to_seed']:.3f}"
        )
    return "; ".join(parts) + "."


def _details_no_bias(runs) -> str:
    rows = [
        [
            r["seed"],
            *(", ".join(f"{v:.1e}" for v in r["extras"]["bias_grad_ratio"][k]) for k in ("before BN", "no BN after")),
        ]
        for r in runs
        if r["variant"] == "with bias" and r["status"] == "trained"
    ]
    return markdown_table(
        ["seed", "bias gradient norm / weight gradient norm, layers BN follows", "same, output layer (no BN after)"],
        rows,
    )


def _details_precise(runs) -> str:
    blocks = []
    for variant, (m, p) in _precise_by_variant(runs).items():
        rows = [
            [
                e + 1,
                fmt_mean_std(m["per_epoch_mean"][e], m["per_epoch_std"][e]),
                fmt_mean_std(p["per_epoch_mean"][e], p["per_epoch_std"][e]),
            ]
            for e in range(len(m["per_epoch_mean"]))
        ]
        rows.append(["mean jump between epochs", f"{m['epoch_to_epoch']:.3f}", f"{p['epoch_to_epoch']:.3f}"])
        rows.append(["spread across seeds", f"{m['seed_to_seed']:.3f}", f"{p['seed_to_seed']:.3f}"])
        blocks.append(
            f"**{variant}**: test accuracy per epoch, mean ± std over seeds\n\n"
            + markdown_table(["epoch", "moving averages", "re-estimated (precise BN)"], rows)
        )
    return "\n\n".join(blocks)


def _precise_variants(config) -> list[Variant]:
    return [Variant("from scratch", "scratch"), Variant("nn.BatchNorm", "gluon")]


# -- 7. devices ---------------------------------------------------------------------------

#: Global batch -> the device counts tried with per-device BN; synchronized BN runs on the most.
DEVICE_SWEEP = {256: (1, 2, 4, 8), 64: (1, 8)}


def _device_variants(config) -> list[Variant]:
    variants = []
    for batch, counts in DEVICE_SWEEP.items():
        variants += [
            Variant(
                f"per-device BN, batch {batch} on {k} ({batch // k} each)",
                "gluon",
                devices=k,
                batch_size=batch,
                group=f"per-device BN, global batch {batch}",
            )
            for k in counts
        ]
        k = max(counts)
        variants.append(
            Variant(
                f"synchronized BN, batch {batch} on {k} ({batch // k} each)",
                "sync",
                devices=k,
                batch_size=batch,
                group=f"synchronized BN, global batch {batch}",
            )
        )
    return variants


def _conclude_devices(summary, runs) -> str:
    parts = []
    for batch, counts in DEVICE_SWEEP.items():
        rows = {r["devices"]: r for r in summary if r["group"] == f"per-device BN, global batch {batch}"}
        sync = next(r for r in summary if r["group"] == f"synchronized BN, global batch {batch}")
        k = max(counts)
        parts.append(
            f"At global batch {batch}, per-device BN gives test accuracy "
            + ", ".join(
                f"{fmt_mean_std(r['test_acc'], r['test_acc_std'])} on {d} device(s) ({batch // d} per device)"
                for d, r in sorted(rows.items())
            )
            + f" (train loss {rows[1]['loss']:.4f} on one, {rows[k]['loss']:.4f} on {k}); "
            + compare_sentence(rows[k], sync, f"synchronizing BN on {k} devices")
            + f", train loss {sync['loss']:.4f}"
        )
    return ". ".join(parts) + "."


def by_name(*exercises: Exercise) -> dict[str, Exercise]:
    """Exercises by name, in the order given (``gluon-bn exercise --list`` keeps it)."""
    return {e.name: e for e in exercises}


#: The chapter's exercises and precise BN (``catalogue.EXERCISES`` adds the claims).
CHAPTER_EXERCISES = by_name(
    Exercise(
        "no-bias",
        "Can we remove the bias of the fully connected and convolutional layers before BN? Why?",
        lambda c: [Variant("with bias", "gluon"), Variant("without bias", "gluon", {"use_bias": False})],
        _conclude_no_bias,
        measure=_bias_gradients,
        details=_details_no_bias,
    ),
    Exercise(
        "learning-rate",
        "Compared with LeNet without BN, can we now use a larger learning rate?",
        _lr_variants,
        _conclude_lr,
        x_axis="lr",
        claim="we can be more aggressive in picking large learning rates on the data",
    ),
    Exercise(
        "placement",
        "Insert the BN layers elsewhere in LeNet: what changes?",
        lambda c: [
            Variant("before sigmoid (chapter)", "gluon"),
            Variant("after sigmoid", "gluon", {"placement": "after"}),
            Variant("conv layers only", "gluon", {"where": "conv"}),
            Variant("dense layers only", "gluon", {"where": "dense"}),
        ],
        _conclude_against("before sigmoid (chapter)"),
    ),
    Exercise(
        "frozen-affine",
        "Do not learn gamma and beta (grad_req='null'): what happens?",
        lambda c: [
            Variant(f"{label}, {state}", norm, {} if learned else {"learn_affine": False})
            for norm, label in (("scratch", "from scratch"), ("gluon", "nn.BatchNorm"))
            for learned, state in ((True, "learned"), (False, "frozen"))
        ],
        _conclude_frozen,
    ),
    Exercise(
        "global-stats",
        "What do nn.BatchNorm's options (use_global_stats, momentum, center, scale) do?",
        lambda c: [
            Variant("default", "gluon"),
            Variant("use_global_stats=True", "gluon", {"gluon_options": {"use_global_stats": True}}),
            Variant("momentum=0.5", "gluon", {"gluon_options": {"momentum": 0.5}}),
            Variant("momentum=0.99", "gluon", {"gluon_options": {"momentum": 0.99}}),
            Variant("center=False (no beta)", "gluon", {"gluon_options": {"center": False}}),
            Variant("scale=False (no gamma)", "gluon", {"gluon_options": {"scale": False}}),
        ],
        _conclude_against("default"),
    ),
    Exercise(
        "precise-bn",
        "Test accuracy swings between epochs at lr 1.0: do re-estimated population statistics (precise BN) steady it?",
        _precise_variants,
        _conclude_precise,
        on_epoch=_precise_on_epoch,
        details=_details_precise,
        epochs=5,
    ),
    Exercise(
        "devices",
        "Data parallel: how does BN fare as the per-device batch shrinks, and does synchronizing "
        "its statistics across devices help?",
        _device_variants,
        _conclude_devices,
        x_axis="devices",
        num_train=15000,
    ),
)
