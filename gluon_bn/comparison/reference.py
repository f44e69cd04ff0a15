"""Float64 NumPy references of batch normalization and of group normalization, forward and backward.

Independent of MXNet, so layers can be checked against the formulas themselves. Group
normalization (Wu & He, 2018) takes each example's mean and variance over a group of channels
and all their positions; one group is layer normalization, and a dense (N, C) input counts as (N, C, 1).
"""

from __future__ import annotations

import numpy as np

from ..norms.axes import reduce_axes

__all__ = ["bn_backward", "bn_forward", "group_norm_backward", "group_norm_forward"]


def _shaped(a, ndim: int) -> np.ndarray:
    """A per-feature vector shaped to broadcast against an ``ndim`` input."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return a.reshape((1, -1) + (1,) * (ndim - 2))


def bn_forward(
    x, gamma, beta, moving_mean, moving_var, eps: float = 1e-5, momentum: float = 0.9, training: bool = True
):
    """Return (y, new_moving_mean, new_moving_var) in float64, per-feature vectors for the stats.

    Training uses the batch mean and the biased batch variance; prediction the moving ones.

    Args:
        x: the input, (N, d) or (N, C, H, W).
        gamma: the per-feature scale.
        beta: the per-feature shift.
        moving_mean: the per-feature moving mean before this step.
        moving_var: the per-feature moving variance before this step.
        eps: added to the variance before the square root.
        momentum: the weight the old moving statistics keep in training:
            ``new = momentum * old + (1 - momentum) * batch``.
        training: True normalizes with the batch statistics and updates the moving ones; False
            normalizes with the moving statistics and returns them unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    axes = reduce_axes(x.ndim)
    mm = np.asarray(moving_mean, dtype=np.float64).reshape(-1)
    mv = np.asarray(moving_var, dtype=np.float64).reshape(-1)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        mm, mv = momentum * mm + (1 - momentum) * mean, momentum * mv + (1 - momentum) * var
    else:
        mean, var = mm, mv
    x_hat = (x - _shaped(mean, x.ndim)) / np.sqrt(_shaped(var, x.ndim) + eps)
    return _shaped(gamma, x.ndim) * x_hat + _shaped(beta, x.ndim), mm, mv


def bn_backward(x, gamma, dy, eps: float = 1e-5, training: bool = True, moving_mean=None, moving_var=None):
    """Analytic (dx, dgamma, dbeta) in float64 for the loss sum(dy * y).

    In training the batch statistics depend on x, which adds the two mean terms to dx;
    in prediction they are constants.

    Args:
        x: the forward input, (N, d) or (N, C, H, W).
        gamma: the per-feature scale.
        dy: the gradient of the loss with respect to the output y, shaped like ``x``.
        eps: added to the variance before the square root, as in the forward pass.
        training: True differentiates through the batch statistics; False uses the moving ones.
        moving_mean: the per-feature moving mean (required in prediction).
        moving_var: the per-feature moving variance (required in prediction).
    """
    x, dy = np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    axes = reduce_axes(x.ndim)
    g = _shaped(gamma, x.ndim)
    if training:
        mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    else:
        mean, var = _shaped(moving_mean, x.ndim), _shaped(moving_var, x.ndim)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    if training:
        dx = (
            g * inv_std * (dy - dy.mean(axis=axes, keepdims=True) - x_hat * (dy * x_hat).mean(axis=axes, keepdims=True))
        )
    else:
        dx = g * inv_std * dy
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def _grouped(x: np.ndarray, num_groups: int) -> np.ndarray:
    """``x`` as (N, groups, the group's channels times its positions): each row one example's group."""
    if num_groups < 1 or x.shape[1] % num_groups:
        raise ValueError(f"{x.shape[1]} channels cannot be split into {num_groups} equal groups")
    return x.reshape(x.shape[0], num_groups, -1)


def _group_normalized(x: np.ndarray, num_groups: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(x_hat, 1/std), both grouped as ``_grouped`` gives them; the variance is the biased one."""
    xg = _grouped(x, num_groups)
    inv_std = 1.0 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    return (xg - xg.mean(axis=2, keepdims=True)) * inv_std, inv_std


def group_norm_forward(x, gamma, beta, num_groups: int, eps: float = 1e-5) -> np.ndarray:
    """The output y of group normalization in float64, the same in training and in prediction.

    Args:
        x: the input, (N, C) or (N, C, H, W).
        gamma: the per-channel scale.
        beta: the per-channel shift.
        num_groups: how many equal groups of consecutive channels (1: layer normalization).
        eps: added to the variance before the square root.
    """
    x = np.asarray(x, dtype=np.float64)
    x_hat = _group_normalized(x, num_groups, eps)[0].reshape(x.shape)
    return _shaped(gamma, x.ndim) * x_hat + _shaped(beta, x.ndim)


def group_norm_backward(x, gamma, dy, num_groups: int, eps: float = 1e-5):
    """Analytic (dx, dgamma, dbeta) of group normalization in float64 for the loss sum(dy * y).

    Each example's group statistics depend on that group's inputs only, so dx has the two mean
    terms of BN's training backward taken over the group instead of the batch.

    Args:
        x: the forward input, (N, C) or (N, C, H, W).
        gamma: the per-channel scale.
        dy: the gradient of the loss with respect to the output y, shaped like ``x``.
        num_groups: how many equal groups of consecutive channels, as in the forward pass.
        eps: added to the variance before the square root, as in the forward pass.
    """
    x, dy = np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    x_hat, inv_std = _group_normalized(x, num_groups, eps)
    dx_hat = _grouped(dy * _shaped(gamma, x.ndim), num_groups)
    dx = inv_std * (dx_hat - dx_hat.mean(axis=2, keepdims=True) - x_hat * (dx_hat * x_hat).mean(axis=2, keepdims=True))
    axes = reduce_axes(x.ndim)
    return dx.reshape(x.shape), (dy * x_hat.reshape(x.shape)).sum(axis=axes), dy.sum(axis=axes)
