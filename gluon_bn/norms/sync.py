"""Synchronized batch normalization from scratch, in the chapter's style: one batch's statistics across devices.

Data parallelism splits a batch across devices, and a BN layer on each device would see only
its shard. ``SyncBatchNorm`` takes every shard at once: per-device sums are copied to the first
device and added, so the mean and the (biased, two-pass) variance are those of the whole batch,
and autograd's backward runs through the same copies and sums. There are no barriers or threads,
so it cannot hang (MXNet's ``contrib.nn.SyncBatchNorm`` can: see the README). Its moving
statistics are kept once, on the first device, and updated once per step.

``ShardedSequential`` runs a Sequential layer by layer over the list of shards, so its
``SyncBatchNorm`` layers see them all; ``devices.forward_shards`` hands it the list.
"""

from __future__ import annotations

from typing import Sequence

from mxnet import autograd, nd
from mxnet.gluon import nn

from ..chapter.layers import BatchNorm, check_input
from .axes import reduce_axes

__all__ = ["ShardedSequential", "SyncBatchNorm"]


class SyncBatchNorm(BatchNorm):
    """The chapter's BatchNorm, normalizing with the statistics of all ``num_devices`` shards together."""

    takes_shards = True

    def __init__(self, num_features: int, num_dims: int, num_devices: int = 1, **kwargs):
        if num_devices < 1:
            raise ValueError(f"SyncBatchNorm(num_devices={num_devices}): give at least 1 device")
        super().__init__(num_features, num_dims, **kwargs)
        self.num_devices = num_devices
        self.eps, self.momentum = 1e-5, 0.9

    def _check_shards(self, shards: Sequence[nd.NDArray]) -> None:
        """Name what would make the statistics wrong: shapes, shared devices, a device count other than promised."""
        contexts = [X.context for X in shards]
        for X in shards:
            check_input(X, self.gamma.data(self.gamma.list_ctx()[0]))
            self._check_input(X)
        if len(set(contexts)) != len(contexts):
            raise ValueError(
                f"two shards share a device ({contexts}): give each shard its own device "
                "(gluon.utils.split_and_load over distinct contexts)"
            )
        batch = sum(X.shape[0] for X in shards)
        if autograd.is_training() and len(shards) != min(self.num_devices, batch):
            if len(shards) == 1:
                raise ValueError(
                    f"SyncBatchNorm(num_devices={self.num_devices}) got 1 shard: it needs every "
                    "device's shard at once, so call the net on the list, net(shards) with "
                    "shards = gluon.utils.split_and_load(X, ctx), not [net(x) for x in shards]"
                )
            raise ValueError(
                f"SyncBatchNorm(num_devices={self.num_devices}) got {len(shards)} shard(s): build "
                f"the net with lenet('sync', num_devices={len(shards)}) or train on "
                f"{self.num_devices} devices"
            )

    def forward(self, X):
        """Normalize one array, or a list of shards (one per device) with their joint statistics."""
        shards = [X] if isinstance(X, nd.NDArray) else list(X)
        self._check_shards(shards)
        if autograd.is_training():
            outputs = self._train(shards)
        else:
            outputs = [self._predict(X) for X in shards]
        return outputs[0] if isinstance(X, nd.NDArray) else outputs

    def _predict(self, X: nd.NDArray) -> nd.NDArray:
        ctx = X.context
        X_hat = (X - self.moving_mean.copyto(ctx)) / nd.sqrt(self.moving_var.copyto(ctx) + self.eps)
        return self.gamma.data(ctx) * X_hat + self.beta.data(ctx)

    def _train(self, shards: list[nd.NDArray]) -> list[nd.NDArray]:
        home = shards[0].context
        axes = reduce_axes(self.num_dims)
        count = sum(X.size // self.num_features for X in shards)

        def total(per_shard):  # per-device sums, added on the first device
            return nd.add_n(*[s.sum(axis=axes, keepdims=True).as_in_context(home) for s in per_shard])

        mean = total(shards) / count
        means = [mean.as_in_context(X.context) for X in shards]
        var = total([(X - m) ** 2 for X, m in zip(shards, means)]) / count
        outputs = []
        for X, m in zip(shards, means):
            ctx = X.context
            X_hat = (X - m) / nd.sqrt(var.as_in_context(ctx) + self.eps)
            outputs.append(self.gamma.data(ctx) * X_hat + self.beta.data(ctx))
        if self.moving_mean.context != home:
            self.moving_mean, self.moving_var = self.moving_mean.copyto(home), self.moving_var.copyto(home)
        self.moving_mean = self.momentum * self.moving_mean + (1.0 - self.momentum) * mean
        self.moving_var = self.momentum * self.moving_var + (1.0 - self.momentum) * var
        return outputs


class ShardedSequential(nn.Sequential):
    """A Sequential run layer by layer over a list of shards; blocks that ``takes_shards`` get the whole list."""

    takes_shards = True

    def forward(self, x):
        if isinstance(x, nd.NDArray):
            return super().forward(x)
        shards = list(x)
        for block in self._children.values():
            shards = block(shards) if getattr(block, "takes_shards", False) else [block(X) for X in shards]
        return shards
