"""Markdown tables every report shares: the generic table, shapes, and BN layer timings."""

from __future__ import annotations

from typing import Mapping, Sequence

from ..norms import label

__all__ = ["markdown_table", "shape_text", "speed_table"]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def shape_text(shape) -> str:
    """A shape as (256, 6, 24, 24)."""
    return "(" + ", ".join(str(n) for n in shape) + ")"


def speed_table(rows: Sequence[Mapping]) -> str:
    """BN layer timings from ``measurements.time_bn_layers`` with their ratios to the baseline."""
    return markdown_table(
        [
            "input shape",
            "layer",
            "forward ms",
            "backward ms",
            "fwd+bwd ms",
            "forward ratio",
            "backward ratio",
            "fwd+bwd ratio",
        ],
        [
            [
                shape_text(r["shape"]),
                label(r["layer"]),
                f"{r['forward_ms']:.2f}",
                f"{r['backward_ms']:.2f}",
                f"{r['forward_backward_ms']:.2f}",
                f"{r['forward_ratio']:.2f}",
                f"{r['backward_ratio']:.2f}",
                f"{r['forward_backward_ratio']:.2f}",
            ]
            for r in rows
        ],
    )
