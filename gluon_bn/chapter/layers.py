"""The chapter's from-scratch batch normalization, kept as the chapter wrote it.

Read this file next to the chapter's "Implementation Starting from Scratch":
the code is the same, line for line, except for input checks that turn the
chapter's ``assert`` and MXNet's deep errors into messages that name the
problem and the fix (``check_input``, ``BatchNorm._check_input``), and a
``cast`` that keeps the moving statistics in the parameters' dtype, and
``gamma.data(X.context)`` so a net initialized on several devices uses the input's copy.
Faster variants live in their own modules, never here.

Behaviour on unusual input, tested against ``nn.BatchNorm``:

- a batch of one in training: variance 0, so the output is ``beta`` (as Gluon);
- NaN or Inf in the input: propagates to the output and moving statistics (as Gluon);
- float16/float64 input: needs ``layer.cast(dtype)`` first, else a TypeError says so
  (Gluon accepts float16 input with float32 parameters, and refuses float64);
- an empty batch (Gluon fails deep in MXNet's shape inference), a channel count other than ``num_features`` (where
  ``nn.BatchNorm`` silently returns garbage), or an input on a context the parameters
  are not on: a ValueError naming the problem.
"""
from mxnet import autograd, init, nd
from mxnet.gluon import nn

__all__ = ["batch_norm", "BatchNorm"]


def check_input(X: nd.NDArray, gamma: nd.NDArray) -> None:
    """Reject input batch_norm cannot normalize, naming the problem and the fix."""
    if len(X.shape) not in (2, 4):
        raise ValueError(
            f"batch_norm expects a 2-D (batch, features) or 4-D (batch, channels, "
            f"height, width) input, got shape {tuple(X.shape)} ({len(X.shape)}-D); "
            "reshape it, e.g. flatten with X.reshape((X.shape[0], -1)).")
    if X.dtype != gamma.dtype:
        raise TypeError(
            f"input is {X.dtype.__name__} but gamma is {gamma.dtype.__name__}: cast the layer "
            f"(layer.cast('{X.dtype.__name__}')) or the input (X.astype('{gamma.dtype.__name__}'))")
    if X.shape[0] == 0:
        raise ValueError(f"empty batch (shape {tuple(X.shape)}): batch statistics need at least one "
                         "example, and MXNet's operators read a 0 dimension as unknown; skip empty batches")


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Normalize X with batch statistics (training) or moving statistics (prediction)."""
    check_input(X, gamma)
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
        if num_dims not in (2, 4) or num_features < 1:
            raise ValueError(f"BatchNorm(num_features={num_features}, num_dims={num_dims}): "
                             "num_dims is 2 after a Dense layer, 4 after a Conv2D; "
                             "num_features is their number of outputs (at least 1)")
        self.num_features, self.num_dims = num_features, num_dims
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

    def _check_input(self, X):
        """Name a mismatch between X and this layer before MXNet fails deep inside."""
        if len(X.shape) != self.num_dims or X.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm({self.num_features}, num_dims={self.num_dims}) got input of shape "
                f"{tuple(X.shape)}: expected {self.num_dims}-D with {self.num_features} "
                "features/channels on axis 1; check the layer this BatchNorm follows")
        if X.context not in self.gamma.list_ctx():
            raise ValueError(
                f"input is on {X.context} but this BatchNorm's parameters are on "
                f"{self.gamma.list_ctx()}: initialize the net with ctx={X.context} or move "
                "the input with X.as_in_context(ctx)")

    def cast(self, dtype):
        """Cast parameters and moving statistics alike (the chapter's NDArrays too)."""
        super(BatchNorm, self).cast(dtype)
        self.moving_mean = self.moving_mean.astype(dtype)
        self.moving_var = self.moving_var.astype(dtype)

    def forward(self, X):
        self._check_input(X)
        # If X is not on the CPU, copy moving_mean and moving_var to the
        # device where X is located.
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        # Save the updated moving_mean and moving_var.
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(X.context), self.beta.data(X.context), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y
