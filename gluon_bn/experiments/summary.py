"""Over seeds: each variant's last-epoch numbers as mean ± std, and how two variants compare."""

from __future__ import annotations

import math

import numpy as np

from ..reports.tables import markdown_table

__all__ = ["compare_sentence", "fmt_mean_std", "row_of", "seed_noise", "summarize", "summary_table"]


def _mean_std(values) -> tuple[float, float]:
    """Mean and std of the finite values (NaN, NaN when none)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values))


def summarize(runs: list[dict]) -> list[dict]:
    """Per variant: mean and std over seeds of the last epoch's numbers, and run statuses."""
    rows = []
    for name in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == name]
        last = [r["history"][-1] if r["history"] and r["status"] == "trained" else None for r in mine]
        row = {
            "variant": name,
            "group": mine[0]["group"],
            "lr": mine[0]["lr"],
            "devices": mine[0].get("devices", 1),
            "batch_size": mine[0].get("batch_size"),
            "seeds": len(mine),
            "diverged": sum(r["status"] == "diverged" for r in mine),
        }
        for key in ("loss", "train_acc", "test_acc"):
            row[key], row[key + "_std"] = _mean_std(e[key] if e else None for e in last)
        rows.append(row)
    return rows


def fmt_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``mean ± std`` to ``digits`` places, or n/a where no run finished."""
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def row_of(summary: list[dict], name: str) -> dict:
    """The summary row of variant ``name``."""
    return next(r for r in summary if r["variant"] == name)


def seed_noise(*rows: dict) -> float:
    """The seed-to-seed spread against which a difference is judged (largest std, floor 0.002)."""
    return max([r["test_acc_std"] for r in rows if not math.isnan(r["test_acc_std"])] + [0.002])


def compare_sentence(a: dict, b: dict, what: str) -> str:
    """A sentence comparing two variants' test accuracy, judged against twice the larger seed spread."""
    diff = b["test_acc"] - a["test_acc"]
    noise = 2 * seed_noise(a, b)
    verdict = "within seed noise" if abs(diff) <= noise else ("better" if diff > 0 else "worse")
    return (
        f"{what}: test accuracy {fmt_mean_std(b['test_acc'], b['test_acc_std'])} vs "
        f"{fmt_mean_std(a['test_acc'], a['test_acc_std'])}, a difference of {diff:+.3f} "
        f"({verdict}; twice the larger seed spread is {noise:.3f})"
    )


def summary_table(summary: list[dict]) -> str:
    """Per variant: learning rate, seeds, divergences, last-epoch numbers as mean ± std."""
    return markdown_table(
        ["variant", "lr", "seeds", "diverged", "loss", "train acc", "test acc"],
        [
            [
                r["variant"],
                f"{r['lr']:g}",
                r["seeds"],
                r["diverged"],
                fmt_mean_std(r["loss"], r["loss_std"], 4),
                fmt_mean_std(r["train_acc"], r["train_acc_std"]),
                fmt_mean_std(r["test_acc"], r["test_acc_std"]),
            ]
            for r in summary
        ],
    )
