"""Deliberately wrong BN layers: the comparison harness must catch each one."""

from mxnet import autograd, nd

from gluon_bn import BatchNorm, FastBatchNorm


class WrongBatchNorm(BatchNorm):
    """The chapter's layer with one deliberate mistake, to prove the harness catches it."""

    mistake = None

    def forward(self, X):
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        axes = (0,) if X.ndim == 2 else (0, 2, 3)
        if self.mistake == "axis":  # one mean over everything instead of per channel
            axes = tuple(range(X.ndim))
        if autograd.is_training():
            mean = X.mean(axis=axes, keepdims=True)
            var = ((X - mean) ** 2).mean(axis=axes, keepdims=True)
            if self.mistake == "unbiased":
                m = X.size // X.shape[1]
                var = var * m / (m - 1)
            momentum = 0.1 if self.mistake == "momentum" else 0.9
            shape = self.moving_mean.shape
            self.moving_mean = momentum * self.moving_mean + (1 - momentum) * mean.broadcast_to(shape)
            self.moving_var = momentum * self.moving_var + (1 - momentum) * var.broadcast_to(shape)
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma.data() * (X - mean) / nd.sqrt(var + 1e-5) + self.beta.data()


def wrong_layer(mistake: str):
    """A layer factory (num_features, num_dims) for a BatchNorm with ``mistake``."""
    cls = type(f"Wrong_{mistake}", (WrongBatchNorm,), {"mistake": mistake})
    return lambda c, num_dims: cls(c, num_dims)


class _StaleGradient(autograd.Function):
    """Identity forward; backward hands on the output gradient of the previous step."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, Y):
        return Y.copy()

    def backward(self, dY):
        stale = self.layer.previous_dY if self.layer.previous_dY is not None else dY
        self.layer.previous_dY = dY.copy()
        return stale


class StaleGradientFastBatchNorm(FastBatchNorm):
    """FastBatchNorm whose backward reads a gradient one step stale: the bug a whole-model test must catch."""

    previous_dY = None

    def forward(self, X):
        Y = super().forward(X)
        return _StaleGradient(self)(Y) if autograd.is_training() else Y
