"""A faster from-scratch BatchNorm: the chapter's formulas with a hand-derived backward.

Still written from scratch (no call to MXNet's BatchNorm operator) and computing the same
numbers as the chapter's layer: two-pass mean and biased variance in training, moving
statistics in prediction. What makes it faster, each measured with ``gluon-bn bench``:

- MXNet's generic reductions over axes (0, 2, 3) are slow on the CPU (~8 ms at LeNet's
  first BN shape); the per-channel sums here are matrix products with ones vectors
  (BLAS, ~0.4 ms);
- a per-channel ``x * a + b`` is a depthwise 1x1 convolution (one oneDNN pass, ~0.5 ms),
  where ``broadcast_mul`` and ``broadcast_add`` take ~2 ms each;
- autograd would differentiate every broadcast with another slow reduction; the backward
  here is derived by hand (an ``autograd.Function``): dbeta = sum(dy),
  dgamma = sum(dy * x_hat), dx = gamma / std * (dy - dbeta / m - x_hat * dgamma / m),
  with the same matrix-product sums and convolutions;
- the moving statistics are updated outside the recorded graph.

``autograd.Function`` runs imperatively, so under ``net.hybridize()`` the convolutions and
dense layers around it are compiled while this layer keeps running as it is. What is left
against the fused operator (one call forward, one backward) is the number of calls: about
ten array passes and the Function's own Python round trip (~0.5 ms), see the README.
"""
from __future__ import annotations

from mxnet import autograd, nd
from mxnet.gluon import nn

from .layers import BatchNorm

__all__ = ["FastBatchNorm"]


def _channel_mean(A: nd.NDArray, space_weights: nd.NDArray, batch_weights: nd.NDArray) -> nd.NDArray:
    """Per-channel mean of an (N, C, H, W) array as (1, C): two matrix products with 1/n columns."""
    n, c = A.shape[:2]
    return nd.dot(batch_weights, nd.dot(A.reshape((n * c, -1)), space_weights).reshape((n, c)),
                  transpose_a=True)


def _channel_affine(A: nd.NDArray, scale: nd.NDArray, shift: nd.NDArray | None) -> nd.NDArray:
    """``A * scale + shift`` per channel of an (N, C, H, W) array: a depthwise 1x1 convolution.

    Without a spatial extent (a dense layer's output) broadcasting is as fast, and oneDNN's
    depthwise convolution slows down ~50x at some channel counts (84 of them, for one).
    """
    n, c = A.shape[:2]
    if A.size == n * c:
        Y = nd.broadcast_mul(A.reshape((n, c)), scale.reshape((1, c)))
        return (Y if shift is None else nd.broadcast_add(Y, shift.reshape((1, c)))).reshape(A.shape)
    return nd.Convolution(A, scale.reshape((c, 1, 1, 1)), None if shift is None else shift.reshape((c,)),
                          kernel=(1, 1), num_filter=c, num_group=c, no_bias=shift is None)


class _TrainingBatchNorm(autograd.Function):
    """Training-mode BN of a 4-D X with gamma, beta: returns (Y, batch mean, batch variance).

    ``weights`` are the 1/(H*W) and 1/N columns the means are taken with.
    """

    def __init__(self, eps: float, weights: tuple[nd.NDArray, nd.NDArray]):
        super().__init__()
        self.eps, self.weights = eps, weights

    def forward(self, X, gamma, beta):
        c = X.shape[1]
        mean = _channel_mean(X, *self.weights)
        xc = _channel_affine(X, nd.ones_like(mean), -mean)
        var = _channel_mean(nd.square(xc), *self.weights)
        inv_std = nd.rsqrt(var + self.eps)
        scale = gamma.reshape((1, c)) * inv_std
        Y = _channel_affine(xc, scale, beta)
        self.save_for_backward(xc, inv_std, scale)
        self.m, self.gamma_shape = X.size // c, gamma.shape
        return Y, mean, var

    def backward(self, dY, _dmean, _dvar):
        xc, inv_std, scale = self.saved_tensors
        mean_dy = _channel_mean(dY, *self.weights)
        mean_dy_xc = _channel_mean(dY * xc, *self.weights)
        # dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat)), with x_hat = xc * inv_std
        dX = nd.elemwise_add(_channel_affine(dY, scale, -scale * mean_dy),
                             _channel_affine(xc, -scale * inv_std * inv_std * mean_dy_xc, None))
        dgamma = (mean_dy_xc * inv_std * self.m).reshape(self.gamma_shape)
        grads = dX, dgamma, (mean_dy * self.m).reshape(self.gamma_shape)
        # MXNet copies these into the gradient buffers after this callback returns, and the
        # operators that read those buffers may already be queued: without the wait they can
        # read stale gradients (seen as run-to-run differences and NaN at lr 1.0).
        for grad in grads:
            grad.wait_to_read()
        return grads


class _DenseTraining(nn.HybridBlock):
    """Training-mode BN of a 2-D X, and the moving statistics' update, as one compiled graph.

    At a dense layer's shapes the time is in calls, not arithmetic, so this runs as one
    ``CachedOp`` with static memory. Every sum and broadcast is a matrix product with a
    column of ``1/n`` or of ones, so autograd's backward of the graph is matrix products too
    (a broadcast's backward would be one of MXNet's slow reductions).
    """

    def __init__(self, eps: float, momentum: float):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.hybridize(static_alloc=True, static_shape=True)

    def hybrid_forward(self, F, X, gamma, beta, moving_mean, moving_var, weights):
        ones = F.ones_like(weights)
        mean = F.dot(weights, X, transpose_a=True)
        xc = X - F.dot(ones, mean)
        var = F.dot(weights, F.square(xc), transpose_a=True)
        scale = F.reshape(gamma, shape=(1, -1)) * F.rsqrt(var + self.eps)
        Y = xc * F.dot(ones, scale) + F.dot(ones, F.reshape(beta, shape=(1, -1)))
        keep = self.momentum
        return (Y, keep * moving_mean + (1.0 - keep) * F.BlockGrad(mean),
                keep * moving_var + (1.0 - keep) * F.BlockGrad(var))


class FastBatchNorm(BatchNorm):
    """Drop-in for the chapter's ``BatchNorm`` (same parameters, statistics and checks), faster."""

    eps, momentum = 1e-5, 0.9

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(num_features, num_dims, **kwargs)
        self._dense = _DenseTraining(self.eps, self.momentum)
        self._weights: dict = {}

    def hybridize(self, active=True, **kwargs):
        """Nothing to switch: the dense graph is always compiled, the conv path always imperative."""

    def forward(self, X):
        self._check_input(X)
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        gamma, beta = self.gamma.data(X.context), self.beta.data(X.context)
        training = autograd.is_training()
        if training and X.ndim == 2:
            Y, self.moving_mean, self.moving_var = self._dense(
                X, gamma, beta, self.moving_mean, self.moving_var, self._mean_weights(X)[1])
            return Y
        X4 = X.reshape((X.shape[0], X.shape[1], 1, 1)) if X.ndim == 2 else X
        if not training:
            scale = gamma * nd.rsqrt(self.moving_var + self.eps)
            return _channel_affine(X4, scale, beta - self.moving_mean * scale).reshape(X.shape)
        Y, mean, var = _TrainingBatchNorm(self.eps, self._mean_weights(X))(X, gamma, beta)
        with autograd.pause():
            shape = self.moving_mean.shape
            self.moving_mean = self.momentum * self.moving_mean + (1.0 - self.momentum) * mean.reshape(shape)
            self.moving_var = self.momentum * self.moving_var + (1.0 - self.momentum) * var.reshape(shape)
        return Y

    def _mean_weights(self, X: nd.NDArray) -> tuple[nd.NDArray, nd.NDArray]:
        """Columns of 1/(H*W) and 1/N for X's shape, context and dtype, made once and kept."""
        key = (X.shape, X.context, X.dtype)
        if key not in self._weights:
            space, n = X.size // (X.shape[0] * X.shape[1]), X.shape[0]
            self._weights[key] = tuple(nd.full((k, 1), 1.0 / k, ctx=X.context, dtype=X.dtype) for k in (space, n))
        return self._weights[key]
