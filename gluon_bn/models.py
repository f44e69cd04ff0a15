"""The chapter's LeNet, with the from-scratch BatchNorm, Gluon's, or none."""
from mxnet.gluon import nn

from .layers import BatchNorm

__all__ = ["LABELS", "NORMS", "lenet"]

#: The normalizations ``lenet`` knows, in the order the CLI lists them.
NORMS = ("scratch", "gluon", "none")
#: How reports and plots name each one.
LABELS = {"scratch": "from scratch", "gluon": "nn.BatchNorm", "none": "no BN"}


def _bn(norm: str, num_features: int, num_dims: int) -> nn.Block:
    """One BN layer of the requested kind (Gluon's infers its size)."""
    if norm == "scratch":
        return BatchNorm(num_features, num_dims=num_dims)
    return nn.BatchNorm()


def lenet(norm: str = "scratch") -> nn.Sequential:
    """Build the chapter's LeNet; with BN, ``net[1]`` is the first BN layer."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
    net = nn.Sequential()
    if norm == "none":
        # The LeNet chapter's baseline: sigmoid activations inside the layers.
        net.add(nn.Conv2D(channels=6, kernel_size=5, activation='sigmoid'),
                nn.MaxPool2D(pool_size=2, strides=2),
                nn.Conv2D(channels=16, kernel_size=5, activation='sigmoid'),
                nn.MaxPool2D(pool_size=2, strides=2),
                nn.Dense(120, activation='sigmoid'),
                nn.Dense(84, activation='sigmoid'),
                nn.Dense(10))
        return net
    net.add(nn.Conv2D(6, kernel_size=5),
            _bn(norm, 6, num_dims=4),
            nn.Activation('sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(16, kernel_size=5),
            _bn(norm, 16, num_dims=4),
            nn.Activation('sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120),
            _bn(norm, 120, num_dims=2),
            nn.Activation('sigmoid'),
            nn.Dense(84),
            _bn(norm, 84, num_dims=2),
            nn.Activation('sigmoid'),
            nn.Dense(10))
    return net
