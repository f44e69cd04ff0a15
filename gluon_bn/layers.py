"""The chapter's from-scratch batch normalization, kept as the chapter wrote it.

Read this file next to the chapter's "Implementation Starting from Scratch":
the code is the same, line for line, except that an input of the wrong rank
raises a ValueError that names its shape instead of failing an ``assert``.
Faster or more defensive variants live in their own modules, never here.
"""
from mxnet import autograd, init, nd
from mxnet.gluon import nn

__all__ = ["batch_norm", "BatchNorm"]


def _check_rank(X: nd.NDArray) -> None:
    """Reject input that is neither (N, d) nor (N, C, H, W), naming its shape."""
    if len(X.shape) not in (2, 4):
        raise ValueError(
            f"batch_norm expects a 2-D (batch, features) or 4-D (batch, channels, "
            f"height, width) input, got shape {tuple(X.shape)} ({len(X.shape)}-D); "
            "reshape it, e.g. flatten with X.reshape((X.shape[0], -1)).")


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Normalize X with batch statistics (training) or moving statistics (prediction)."""
    _check_rank(X)
    # Use autograd to determine whether the current mode is training mode or
    # prediction mode.
    if not autograd.is_training():
        # If it is the prediction mode, directly use the mean and variance
        # obtained from the incoming moving average.
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        if len(X.shape) == 2:
            # When using a fully connected layer, calculate the mean and
            # variance on the feature dimension.
            mean = X.mean(axis=0)
            var = ((X - mean) ** 2).mean(axis=0)
        else:
            # When using a two-dimensional convolutional layer, calculate the
            # mean and variance on the channel dimension (axis=1). Here we
            # need to maintain the shape of X, so that the broadcast operation
            # can be carried out later.
            mean = X.mean(axis=(0, 2, 3), keepdims=True)
            var = ((X - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        # In training mode, the current mean and variance are used for the
        # standardization.
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Update the mean and variance of the moving average.
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # Scale and shift.
    return Y, moving_mean, moving_var


class BatchNorm(nn.Block):
    """The chapter's BatchNorm block: learned gamma/beta plus moving statistics."""

    def __init__(self, num_features, num_dims, **kwargs):
        super(BatchNorm, self).__init__(**kwargs)
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        # The scale parameter and the shift parameter involved in gradient
        # finding and iteration are initialized to 1 and 0 respectively.
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        # All the variables not involved in gradient finding and iteration are
        # initialized to 0 on the CPU.
        self.moving_mean = nd.zeros(shape)
        self.moving_var = nd.zeros(shape)

    def forward(self, X):
        # If X is not on the CPU, copy moving_mean and moving_var to the
        # device where X is located.
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        # Save the updated moving_mean and moving_var.
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y
