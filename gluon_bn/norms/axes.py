"""The axes a norm's per-channel sums run over; plain Python, so the float64 reference needs NumPy only."""

from __future__ import annotations

__all__ = ["reduce_axes"]


def reduce_axes(ndim: int) -> tuple[int, ...]:
    """Axes BN averages over: the batch for (N, d), batch and space for (N, C, H, W)."""
    if ndim not in (2, 4):
        raise ValueError(f"expected a 2-D or 4-D input, got {ndim}-D")
    return (0,) if ndim == 2 else (0, 2, 3)
