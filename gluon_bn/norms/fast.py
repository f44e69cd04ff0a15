"""A faster from-scratch BatchNorm: the chapter's formulas as one compiled graph of matrix products.

Still written from scratch (no call to MXNet's BatchNorm operator) and computing the same
numbers as the chapter's layer: two-pass mean and biased variance in training, moving
statistics in prediction. What makes it faster, each measured with ``gluon-bn bench``:

- MXNet's generic reductions over axes (0, 2, 3) are slow on the CPU (~8 ms at LeNet's first
  BN shape), and so is the backward of every broadcast (another such reduction). Here every
  per-channel mean is two matrix products with columns of 1/n, and every per-channel
  broadcast two matrix products with columns of ones (BLAS). Autograd's backward of a matrix
  product is matrix products again, so the backward needs no hand derivation to be fast;
- training mode runs as one compiled graph (``HybridBlock``, static memory) that also returns
  the updated moving statistics, so the layer costs one call where the chapter's code makes
  dozens; at the dense layers' shapes the calls were most of the time.

Tried and measured, not kept: a hand-derived backward as an ``autograd.Function`` was faster
at the first conv shape, but MXNet keeps each Function's arrays alive in a reference cycle
until Python's garbage collector runs (resident memory grew by hundreds of MB over 1,000
LeNet steps) and, without an explicit wait, let later operators read its gradients before
they were written. Depthwise 1x1 convolutions for the per-channel affines slow down ~50x at
some channel counts (84, for one).
"""

from __future__ import annotations

from mxnet import autograd, nd
from mxnet.gluon import nn

from ..chapter.layers import BatchNorm

__all__ = ["FastBatchNorm"]


class _Training(nn.HybridBlock):
    """Training-mode BN and the moving statistics' update as one compiled graph.

    Inputs: X, gamma, beta, the moving mean and variance, and the columns of 1/N and (for a
    4-D X) 1/(H*W) the means are taken with. Returns Y and the new moving mean and variance.
    """

    always_compiled = True  # whatever the net around it does (see FastBatchNorm.hybridize)

    def __init__(self, num_features: int, num_dims: int, eps: float, momentum: float):
        super().__init__()
        self.num_features, self.num_dims, self.eps, self.momentum = num_features, num_dims, eps, momentum
        self.hybridize(static_alloc=True, static_shape=True)

    def hybrid_forward(self, F, X, gamma, beta, moving_mean, moving_var, batch_weights, space_weights=None):
        batch_ones = F.ones_like(batch_weights)
        if self.num_dims == 2:

            def mean(A):  # (N, C) -> (1, C)
                return F.dot(batch_weights, A, transpose_a=True)

            def expand(v):  # (1, C) -> (N, C)
                return F.dot(batch_ones, v)
        else:
            space_ones = F.ones_like(space_weights)

            def mean(A):  # (N, C, H, W) -> per (n, c) over H*W -> (N, C) -> over N -> (1, C)
                per_row = F.dot(F.reshape(A, shape=(-3, -3)), space_weights)
                return F.dot(batch_weights, F.reshape(per_row, shape=(-1, self.num_features)), transpose_a=True)

            def expand(v):  # (1, C) -> (N, C) -> (N*C, 1) -> (N*C, H*W) -> shaped like X
                rows = F.reshape(F.dot(batch_ones, v), shape=(-1, 1))
                return F.reshape_like(F.dot(rows, space_ones, transpose_b=True), X)

        batch_mean = mean(X)
        xc = X - expand(batch_mean)
        batch_var = mean(F.square(xc))
        scale = F.reshape(gamma, shape=(1, -1)) * F.rsqrt(batch_var + self.eps)
        Y = xc * expand(scale) + expand(F.reshape(beta, shape=(1, -1)))
        keep = self.momentum
        return (
            Y,
            keep * moving_mean + (1.0 - keep) * F.reshape_like(F.BlockGrad(batch_mean), moving_mean),
            keep * moving_var + (1.0 - keep) * F.reshape_like(F.BlockGrad(batch_var), moving_var),
        )


class FastBatchNorm(BatchNorm):
    """Drop-in for the chapter's ``BatchNorm`` (same parameters, statistics and checks), faster."""

    eps, momentum = 1e-5, 0.9

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(num_features, num_dims, **kwargs)
        self._training = _Training(num_features, num_dims, self.eps, self.momentum)
        self._weights: dict = {}

    def hybridize(self, active=True, **kwargs):
        """Nothing to switch: the training graph is always compiled."""

    def forward(self, X):
        self._check_input(X)
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        gamma, beta = self.gamma.data(X.context), self.beta.data(X.context)
        if not autograd.is_training():
            scale = gamma * nd.rsqrt(self.moving_var + self.eps)
            return nd.broadcast_add(nd.broadcast_mul(X, scale), beta - self.moving_mean * scale)
        Y, self.moving_mean, self.moving_var = self._training(
            X, gamma, beta, self.moving_mean, self.moving_var, *self._mean_weights(X)
        )
        return Y

    def _mean_weights(self, X: nd.NDArray) -> tuple[nd.NDArray, ...]:
        """Columns of 1/N (and 1/(H*W) for a 4-D X) for X's shape, context and dtype, made once."""
        key = (X.shape, X.context, X.dtype)
        if key not in self._weights:
            sizes = (X.shape[0],) if X.ndim == 2 else (X.shape[0], X.size // (X.shape[0] * X.shape[1]))
            self._weights[key] = tuple(nd.full((k, 1), 1.0 / k, ctx=X.context, dtype=X.dtype) for k in sizes)
        return self._weights[key]
