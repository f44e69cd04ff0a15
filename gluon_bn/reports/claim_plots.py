"""The plots of the chapter's claims (``experiments/claims.py``), drawn from an exercise's summary and runs.

Each takes ``(summary, runs, path, title)`` as ``plot_exercise`` does and writes its PNG atomically.
The readers of the runs' recordings are here too, so the claims' conclusions read what the plots draw.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .plots import save_figure

#: A summary's rows, or an exercise's runs; where a PNG goes (None: nowhere).
Rows = Sequence[Mapping]
Where = str | os.PathLike | None
#: The percentiles of one sigmoid's input that Ioffe & Szegedy's Figure 1(b,c) follows over training.
PERCENTILES = (15, 50, 85)

__all__ = [
    "PERCENTILES",
    "gap_per_epoch",
    "plot_activations",
    "plot_batch_sizes",
    "plot_gradients",
    "plot_regularization",
    "recordings",
]


def _variants(runs: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(r["variant"] for r in runs))


def recordings(runs: Sequence[Mapping], variant: str, key: str, field: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A recorder's samples of ``variant`` over its seeds: the steps, and per layer a (seeds, samples, ...) array.

    ``key`` is the recorder's list in each run's extras and ``field`` the per-layer mapping in its rows;
    seeds that stopped early (diverged) are cut to the shortest.
    """
    rows = [r["extras"].get(key) for r in runs if r["variant"] == variant]
    rows = [r for r in rows if r]
    if not rows:
        return np.array([]), {}
    n = min(len(r) for r in rows)
    return np.array([s["step"] for s in rows[0][:n]]), {
        name: np.array([[s[field][name] for s in r[:n]] for r in rows]) for name in rows[0][0][field]
    }


def gap_per_epoch(runs: Sequence[Mapping], variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per seed and epoch of ``variant``'s trained runs: train accuracy in prediction mode, test accuracy, and
    the gap between them (train - test)."""
    mine = [r for r in runs if r["variant"] == variant and r["status"] == "trained"]
    train = np.array([r["extras"]["per_epoch"]["train_acc_eval"] for r in mine])
    test = np.array([[e["test_acc"] for e in r["history"]] for r in mine])
    return train, test, train - test


def _band(ax: Axes, x, values: np.ndarray, color: str, label: str, style: str = "o-") -> None:
    """Mean over seeds (axis 0) as a line, ± std as a shaded band."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    ax.plot(x, mean, style, color=color, label=label, markersize=3)  # markers: one epoch is one point
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)


def _finish(fig: Figure, axes, path, title: str | None) -> Figure:
    for ax in np.ravel(axes):
        ax.grid(alpha=0.3)
    np.ravel(axes)[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_batch_sizes(summary: Rows, runs: Rows, path: Where = None, title: str | None = None) -> Figure:
    """Last-epoch test accuracy and train loss against the batch size (log scale), a curve per norm, mean ± std."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    sizes = sorted({r["batch_size"] for r in summary})
    for i, group in enumerate(dict.fromkeys(r["group"] for r in summary)):
        rows = sorted((r for r in summary if r["group"] == group), key=lambda r: r["batch_size"])
        for ax, key in zip(axes, ("test_acc", "loss")):
            ax.errorbar(
                [r["batch_size"] for r in rows],
                [r[key] for r in rows],
                [r[key + "_std"] for r in rows],
                fmt="o-",
                color=f"C{i}",
                capsize=3,
                label=group,
            )
    for ax, name in zip(axes, ("test accuracy (prediction mode)", "train loss")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.axvspan(50, 100, color="grey", alpha=0.1)
        ax.set_xlabel("batch size (lr = batch/256; shaded: the chapter's 50-100)")
        ax.set_title(f"{name}, last epoch")
        ax.set_ylabel("mean ± std over seeds")
    return _finish(fig, axes, path, title)


def plot_regularization(summary: Rows, runs: Rows, path: Where = None, title: str | None = None) -> Figure:
    """Test accuracy, and the gap between train accuracy (prediction mode) and it, per epoch and variant."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for i, variant in enumerate(_variants(runs)):
        _, test, gap = gap_per_epoch(runs, variant)
        if not test.size:
            continue
        epochs = np.arange(1, test.shape[1] + 1)
        _band(axes[0], epochs, test, f"C{i}", variant)
        _band(axes[1], epochs, gap, f"C{i}", variant)
    for ax, name in zip(axes, ("test accuracy", "train accuracy (prediction mode) - test accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.set_ylabel("mean ± std over seeds")
    return _finish(fig, axes, path, title)


def _per_layer(ax: Axes, runs: Sequence[Mapping], variant: str, key: str, field: str, ylabel: str) -> None:
    """Each layer's recorded ``field`` over ``variant``'s training, mean over seeds, on a log scale."""
    steps, layers = recordings(runs, variant, key, field)
    for j, (name, values) in enumerate(layers.items()):
        ax.plot(steps, values.mean(axis=0), ".-", color=f"C{j}", label=name, markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("batch")
    ax.set_ylabel(ylabel, fontsize="small")


def plot_gradients(summary: Rows, runs: Rows, path: Where = None, title: str | None = None) -> Figure:
    """Each layer's weight-gradient norm over training, a panel per variant (log y), mean over seeds."""
    variants = _variants(runs)
    cols = -(-len(variants) // 2)
    fig, axes = plt.subplots(2, cols, figsize=(5.5 * cols, 7.6), constrained_layout=True, squeeze=False)
    for ax, variant in zip(axes.ravel(), variants):
        _per_layer(ax, runs, variant, "gradients", "grad_norm", "weight gradient's L2 norm / batch size")
        ax.set_title(variant)
    return _finish(fig, axes, path, title)


def plot_activations(summary: Rows, runs: Rows, path: Where = None, title: str | None = None) -> Figure:
    """Ioffe & Szegedy's Figure 1(b,c): one sigmoid's input percentiles over training, with and without BN;
    below, each hidden layer's sigmoid-input std over training (log y)."""
    variants = _variants(runs)
    fig, axes = plt.subplots(2, len(variants), figsize=(5.5 * len(variants), 7.6), constrained_layout=True)
    axes = axes.reshape(2, -1)
    for ax, variant in zip(axes[0], variants):
        steps, units = recordings(runs, variant, "activations", "percentiles")
        if not units:
            continue
        name = list(units)[-1]
        band = units[name].mean(axis=0)  # (samples, percentiles)
        for j, q in enumerate(PERCENTILES):
            ax.plot(steps, band[:, j], ".-" if q == 50 else ".--", color="C0", label=f"{q}th percentile", markersize=3)
        ax.fill_between(steps, band[:, 0], band[:, -1], color="C0", alpha=0.15)
        ax.set_title(f"{variant}: input to one sigmoid ({name}, first unit)")
        ax.set_xlabel("batch")
    for ax, variant in zip(axes[1], variants):
        _per_layer(ax, runs, variant, "activations", "std", "std of the sigmoid input")
        ax.set_title(f"{variant}: each hidden layer's sigmoid-input std")
        ax.legend(fontsize="small")
    return _finish(fig, axes, path, title)
