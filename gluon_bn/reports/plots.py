"""The one plotting path: training curves of one or more models, from their histories."""

from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..chapter.training import history_rows
from ..norms import label as norm_label
from ..reliability.files import atomic_write_bytes

__all__ = ["plot_drift", "plot_exercise", "plot_histories", "save_figure"]

_PANELS = (("loss", "training loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy"))


def save_figure(fig: Figure, path: str | os.PathLike | None) -> Figure:
    """Write ``fig`` as a PNG atomically when ``path`` is given."""
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        atomic_write_bytes(path, buffer.getvalue())
    return fig


def plot_histories(
    histories: Mapping[str, Sequence],
    path: str | os.PathLike | None = None,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    reference_epoch: int = 5,
    title: str | None = None,
) -> Figure:
    """Loss, train and test accuracy per epoch for each model; optional published points.

    Args:
        histories: each model's norm name and its epochs (``Epoch`` objects or their rows).
        path: where the PNG is written, atomically; None writes nothing.
        reference: maps a model to published epoch-``reference_epoch`` numbers (``loss``,
            ``train_acc``, ``test_acc``), drawn as crosses.
        reference_epoch: the epoch the published numbers are at.
        title: the figure's title; None leaves it out.
    """
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(12, 3.6), constrained_layout=True)
    for i, (name, history) in enumerate(histories.items()):
        rows = history_rows(history)
        color = f"C{i}"
        epochs = [r["epoch"] for r in rows]
        for ax, (key, _) in zip(axes, _PANELS):
            ax.plot(epochs, [r[key] for r in rows], "o-", color=color, label=norm_label(name))
            if reference and name in reference and key in reference[name]:
                ax.plot(
                    [reference_epoch],
                    [reference[name][key]],
                    "x",
                    color=color,
                    markersize=10,
                    label=f"{norm_label(name)} (chapter)",
                )
    for ax, (_, label) in zip(axes, _PANELS):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


_DRIFT = (
    ("param_rel_diff", "weights: relative difference"),
    ("stats_rel_diff", "moving statistics: relative difference"),
    ("logits_max_abs_diff", "test logits: max absolute difference"),
    ("prediction_agreement", "test predictions: agreement"),
)


def plot_drift(drift: Sequence[Mapping], path: str | os.PathLike | None = None) -> Figure:
    """How two models trained from one start drift apart, per epoch (from ``model_drift`` rows)."""
    fig, axes = plt.subplots(1, len(_DRIFT), figsize=(14, 3.4), constrained_layout=True)
    epochs = [row["epoch"] for row in drift]
    for ax, (key, label) in zip(axes, _DRIFT):
        ax.plot(epochs, [row[key] for row in drift], "o-")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle("from-scratch vs nn.BatchNorm LeNet, same start, same batches")
    return save_figure(fig, path)


def plot_exercise(
    summary: Sequence[Mapping],
    runs: Sequence[Mapping],
    path: str | os.PathLike | None = None,
    x_axis: str | None = None,
    title: str | None = None,
) -> Figure:
    """An exercise's evidence: last-epoch accuracy per variant, and test accuracy per epoch.

    Left: mean ± std over seeds of train and test accuracy, as bars per variant, or as curves
    against ``x_axis`` per group. Right: mean test accuracy per epoch for each variant; dashed
    where runs also measured it with re-estimated BN statistics.

    Args:
        summary: one row per variant (``summarize``'s): mean and std of the last epoch's accuracies.
        runs: every run's record entry; the trained ones give the right panel's curves.
        path: where the PNG is written, atomically; None writes nothing.
        x_axis: a summary key to plot against (the learning rate), with no right panel; None draws bars.
        title: the figure's title; None leaves it out.
    """
    if x_axis:
        fig, left = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
        right = None
        values = sorted({r[x_axis] for r in summary})
        position = {v: i for i, v in enumerate(values)}  # evenly spaced: the sweep spans 40 decades
        for i, group in enumerate(dict.fromkeys(r["group"] for r in summary)):
            rows = [r for r in summary if r["group"] == group]
            for key, style in (("train_acc", "o-"), ("test_acc", "s--")):
                left.errorbar(
                    [position[r[x_axis]] for r in rows],
                    [r[key] for r in rows],
                    [r[key + "_std"] for r in rows],
                    fmt=style,
                    color=f"C{i}",
                    capsize=3,
                    label=f"{group}: {key.replace('_', ' ')}",
                )
            for r in rows:
                if r["diverged"]:
                    left.plot([position[r[x_axis]]], [0.0], "x", color=f"C{i}", markersize=10)
        left.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        left.set_xlabel(x_axis + " (x at the bottom: diverged)")
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
        xs = np.arange(len(summary))
        for offset, key in ((-0.2, "train_acc"), (0.2, "test_acc")):
            left.bar(
                xs + offset,
                [r[key] for r in summary],
                0.4,
                yerr=[r[key + "_std"] for r in summary],
                capsize=3,
                label=key.replace("_", " "),
            )
        left.set_xticks(xs, [r["variant"] for r in summary], rotation=20, ha="right", fontsize="small")
        finite = [r[k] for r in summary for k in ("train_acc", "test_acc") if np.isfinite(r[k])]
        if finite:
            left.set_ylim(max(0.0, min(finite) - 0.1), min(1.0, max(finite) + 0.05))
    left.set_ylabel("accuracy, last epoch (mean ± std over seeds)")
    left.legend(fontsize="small")
    left.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    if right is None:
        return save_figure(fig, path)
    names = list(dict.fromkeys(r["variant"] for r in runs))
    for i, name in enumerate(names):
        mine = [r for r in runs if r["variant"] == name and r["status"] == "trained" and r["history"]]
        if not mine:
            continue
        acc = np.array([[e["test_acc"] for e in r["history"]] for r in mine])
        epochs = np.arange(1, acc.shape[1] + 1)
        right.plot(epochs, acc.mean(axis=0), "o-", color=f"C{i}", label=name)
        precise = [r["extras"].get("per_epoch", {}).get("precise_test_acc") for r in mine]
        if all(precise):
            right.plot(epochs, np.mean(precise, axis=0), "s--", color=f"C{i}", label=f"{name}, precise BN")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("epoch")
    right.set_ylabel("test accuracy (mean over seeds)")
    right.grid(alpha=0.3)
    right.legend(fontsize="small")
    return save_figure(fig, path)
