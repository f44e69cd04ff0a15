"""The one plotting path: training curves of one or more models, from their histories."""
from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .files import atomic_write_bytes
from .models import LABELS

__all__ = ["plot_drift", "plot_histories"]

_PANELS = (("loss", "training loss"), ("train_acc", "train accuracy"), ("test_acc", "test accuracy"))


def _rows(history: Sequence) -> list[dict]:
    """Epochs as dicts, whether given as ``Epoch`` objects or as loaded from a record."""
    return [row if isinstance(row, Mapping) else row.to_dict() for row in history]


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    """Write ``fig`` as a PNG atomically when ``path`` is given."""
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        atomic_write_bytes(path, buffer.getvalue())
    return fig


def plot_histories(histories: Mapping[str, Sequence], path: str | os.PathLike | None = None,
                   reference: Mapping[str, Mapping[str, float]] | None = None,
                   reference_epoch: int = 5, title: str | None = None) -> Figure:
    """Loss, train and test accuracy per epoch for each model; optional published points.

    ``reference`` maps a model to published epoch-``reference_epoch`` numbers, drawn as
    crosses. With ``path`` the PNG is written atomically.
    """
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(12, 3.6), constrained_layout=True)
    for i, (name, history) in enumerate(histories.items()):
        rows = _rows(history)
        color = f"C{i}"
        epochs = [r["epoch"] for r in rows]
        for ax, (key, _) in zip(axes, _PANELS):
            ax.plot(epochs, [r[key] for r in rows], "o-", color=color, label=LABELS.get(name, name))
            if reference and name in reference and key in reference[name]:
                ax.plot([reference_epoch], [reference[name][key]], "x", color=color, markersize=10,
                        label=f"{LABELS.get(name, name)} (chapter)")
    for ax, (_, label) in zip(axes, _PANELS):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


_DRIFT = (("param_rel_diff", "weights: relative difference"),
          ("stats_rel_diff", "moving statistics: relative difference"),
          ("logits_max_abs_diff", "test logits: max absolute difference"),
          ("prediction_agreement", "test predictions: agreement"))


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
    return _save(fig, path)
