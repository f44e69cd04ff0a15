"""The norms whose statistics are each example's own: layer normalization and group normalization.

Both are MXNet's own operators. ``GroupNorm`` wraps ``nn.GroupNorm`` for the normalization and
holds one scale and shift per channel, as Wu & He (2018) do: MXNet 1.x's ``nn.GroupNorm`` holds one
per group. Neither keeps moving statistics, so training and prediction compute the same thing.
"""

from __future__ import annotations

import math

from mxnet.gluon import nn

__all__ = ["GroupNorm", "group_count", "group_norm", "layer_norm"]


class GroupNorm(nn.HybridBlock):
    """Group normalization with per-channel ``gamma``/``beta`` over (N, C, ...) inputs, dense (N, C) too.

    MXNet's GroupNorm operator refuses inputs of fewer than 3 dimensions, so the input is viewed
    as (N, C, -1) (a dense layer's (N, C) as (N, C, 1)), normalized, scaled and shifted per channel
    and given back its own shape. ``num_groups=1`` is Wu & He's layer normalization of a conv layer.
    """

    def __init__(self, num_features: int, num_groups: int, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        if num_groups < 1 or num_features % num_groups:
            raise ValueError(f"GroupNorm: {num_features} channels cannot be split into {num_groups} equal groups")
        self.num_features, self.num_groups = num_features, num_groups
        with self.name_scope():
            self.norm = nn.GroupNorm(num_groups, epsilon=epsilon, center=False, scale=False)
            self.gamma = self.params.get("gamma", shape=(num_features,), init="ones")
            self.beta = self.params.get("beta", shape=(num_features,), init="zeros")

    def hybrid_forward(self, F, x, gamma, beta):
        y = self.norm(x.reshape((0, 0, -1)))
        y = F.broadcast_add(F.broadcast_mul(y, gamma.reshape((1, -1, 1))), beta.reshape((1, -1, 1)))
        return F.reshape_like(y, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_features}, num_groups={self.num_groups})"


def group_count(num_channels: int) -> int:
    """The largest divisor of C at most sqrt(C): Wu & He's 32 groups cannot split LeNet's 6 channels; this
    balances the number of groups against the channels per group (2, 4, 10, 7 for 6, 16, 120, 84)."""
    return max(g for g in range(1, math.isqrt(num_channels) + 1) if num_channels % g == 0)


def group_norm(num_features: int, num_dims: int) -> GroupNorm:
    """The registry's GroupNorm for a conv (4-D) or dense (2-D) layer, with ``group_count`` groups."""
    _check_dims("GroupNorm", num_dims)
    return GroupNorm(num_features, group_count(num_features))


def layer_norm(num_features: int, num_dims: int) -> nn.HybridBlock:
    """The registry's LayerNorm: each example normalized over all its features, with per-channel gamma/beta.

    A dense layer (2-D) gets MXNet's ``nn.LayerNorm(axis=1)``, exactly Ba et al. (2016). A conv layer
    (4-D) gets ``GroupNorm(C, num_groups=1)``: statistics over all of (C, H, W), Wu & He's LN for conv
    nets. ``nn.LayerNorm`` normalizes along one axis only, so over (C, H, W) it would need a flattened
    input and one gamma per pixel, tied to the image size.
    """
    _check_dims("LayerNorm", num_dims)
    return nn.LayerNorm(axis=1, in_channels=num_features) if num_dims == 2 else GroupNorm(num_features, 1)


def _check_dims(name: str, num_dims: int) -> None:
    if num_dims not in (2, 4):
        raise ValueError(f"{name}: num_dims must be 2 (dense) or 4 (conv), got {num_dims}")
