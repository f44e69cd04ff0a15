"""Markdown tables every report shares: the generic tables (cells by position, or by key), shapes, BN layer timings."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..chapter.published import CHAPTER, CHAPTER_EPOCH
from ..chapter.training import history_rows
from ..norms import label

__all__ = ["chapter_table", "keyed_table", "markdown_table", "shape_text", "speed_table"]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def shape_text(shape) -> str:
    """A shape as (256, 6, 24, 24)."""
    return "(" + ", ".join(str(n) for n in shape) + ")"


def keyed_table(rows: Sequence[Mapping], columns: Sequence[tuple[str, str, str | Callable[[Any], str]]]) -> str:
    """A Markdown table of mapping rows, a column per (header, key, how): a format spec or a function of the value."""
    return markdown_table(
        [header for header, _, _ in columns],
        [[how(row[key]) if callable(how) else format(row[key], how) for _, key, how in columns] for row in rows],
    )


#: The timings of ``measurements.time_bn_layers`` rows: key prefix and name in the headers.
_TIMED = {"forward": "forward", "backward": "backward", "forward_backward": "fwd+bwd"}


def speed_table(rows: Sequence[Mapping]) -> str:
    """BN layer timings from ``measurements.time_bn_layers`` with their ratios to the baseline."""
    times = [(f"{name} {unit}", f"{key}_{unit}", ".2f") for unit in ("ms", "ratio") for key, name in _TIMED.items()]
    return keyed_table(rows, [("input shape", "shape", shape_text), ("layer", "layer", label), *times])


def chapter_table(
    histories: Mapping[str, Sequence],
    published: Mapping[str, Mapping[str, float]] = CHAPTER,
    published_epoch: int = CHAPTER_EPOCH,
) -> str:
    """A table of each model's epoch-``published_epoch`` numbers (or its last) beside the chapter's."""
    header = (
        f"{'model':<14}{'epoch':>6}{'loss':>9}{'train acc':>11}{'test acc':>10}   |"
        f"{'chapter loss':>14}{'train acc':>11}{'test acc':>10}   |{'Δ loss':>9}{'Δ train':>9}"
    )
    lines = [header, "-" * len(header)]
    for name, history in histories.items():
        rows = history_rows(history)
        ours = next((r for r in rows if r["epoch"] == published_epoch), rows[-1])
        line = (
            f"{label(name):<14}{ours['epoch']:>6}{ours['loss']:>9.4f}"
            f"{ours['train_acc']:>11.3f}{ours['test_acc']:>10.3f}   |"
        )
        ref = published.get(name)
        if ref:
            line += (
                f"{ref['loss']:>14.4f}{ref['train_acc']:>11.3f}{ref['test_acc']:>10.3f}   |"
                f"{ours['loss'] - ref['loss']:>+9.4f}{ours['train_acc'] - ref['train_acc']:>+9.3f}"
            )
        lines.append(line)
    lines.append(
        f"chapter: its published GPU run, epoch {published_epoch}, lr 1.0, batch 256. "
        "Test accuracy at lr 1.0 swings by several points between epochs and runs; "
        "compare the training numbers."
    )
    return "\n".join(lines)
