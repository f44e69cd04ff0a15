"""The chapter's published numbers, and a table of a run's numbers beside them."""

from typing import Mapping, Sequence

from ..norms import label
from .training import history_rows

__all__ = ["CHAPTER", "CHAPTER_EPOCH", "chapter_table"]

#: The chapter's published run (GPU, lr 1.0, batch 256), epoch 5.
CHAPTER = {
    "scratch": {"loss": 0.3051, "train_acc": 0.890, "test_acc": 0.870},
    "gluon": {"loss": 0.3071, "train_acc": 0.889, "test_acc": 0.881},
}
CHAPTER_EPOCH = 5


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
