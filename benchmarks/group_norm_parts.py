"""Where a GroupNorm layer's time goes: MXNet's GroupNorm operator, and the per-channel scale and shift.

At each LeNet conv shape (batch 256) it times training-mode forward+backward of, in turn and
interleaved over rounds, compiled:

- ``nn.BatchNorm``: the baseline, oneDNN's fused kernel;
- ``GroupNorm operator``: ``nn.GroupNorm(center=False, scale=False)``, the normalization alone;
- ``scale and shift, broadcast``: ``x * gamma + beta`` with (1, C, 1, 1) broadcasts, as
  ``gluon_bn.norms.per_example.GroupNorm`` applies them;
- ``scale and shift, depthwise conv``: the same arithmetic as a 1x1 convolution with one group per
  channel, a route around MXNet's broadcast backward (not adopted yet: see docs/norms.md).

Prints medians and ratios to ``nn.BatchNorm`` from this one run.

    .venv/bin/python benchmarks/group_norm_parts.py [--rounds 5] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gluon_bn  # noqa: F401  # isort: skip  first: it sets MXNet's threads and NumPy's removed names
import mxnet as mx
from mxnet import autograd, init, nd
from mxnet.gluon import nn

from gluon_bn.norms.per_example import group_count

SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8)]


class BroadcastAffine(nn.HybridBlock):
    """``x * gamma + beta`` per channel with broadcasts."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = self.params.get("gamma", shape=(channels,), init="ones")
        self.beta = self.params.get("beta", shape=(channels,), init="zeros")

    def hybrid_forward(self, F, x, gamma, beta):
        return F.broadcast_add(F.broadcast_mul(x, gamma.reshape((1, -1, 1, 1))), beta.reshape((1, -1, 1, 1)))


def parts(channels: int) -> dict[str, nn.HybridBlock]:
    """The blocks timed at one shape, each initialized and compiled."""
    blocks = {
        "nn.BatchNorm": nn.BatchNorm(in_channels=channels),
        "GroupNorm operator": nn.GroupNorm(group_count(channels), center=False, scale=False),
        "scale and shift, broadcast": BroadcastAffine(channels),
        "scale and shift, depthwise conv": nn.Conv2D(
            channels, 1, groups=channels, in_channels=channels, weight_initializer=init.One()
        ),
    }
    for block in blocks.values():
        block.initialize(ctx=mx.cpu())
        block.hybridize()
    return blocks


def time_steps(block: nn.HybridBlock, x: nd.NDArray, steps: int) -> float:
    """Milliseconds per training-mode forward and backward of ``block`` on ``x``."""
    start = time.perf_counter()
    for _ in range(steps):
        with autograd.record():
            y = block(x)
        y.backward()
        nd.waitall()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    for shape in SHAPES:
        x = nd.random.normal(shape=shape)
        x.attach_grad()
        blocks = parts(shape[1])
        times: dict[str, list[float]] = {name: [] for name in blocks}
        for name, block in blocks.items():
            time_steps(block, x, 3)  # warm-up
        for _ in range(args.rounds):
            for name, block in blocks.items():
                times[name].append(time_steps(block, x, args.steps))
        base = statistics.median(times["nn.BatchNorm"])
        print(f"\n{shape}, fwd+bwd, median of {args.rounds} rounds:")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:<34}{median:8.2f} ms  {median / base:6.2f}x nn.BatchNorm")


if __name__ == "__main__":
    main()
