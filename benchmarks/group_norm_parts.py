"""Where a GroupNorm layer's time goes: MXNet's GroupNorm operator, and the per-channel scale and shift.

At each LeNet conv shape (batch 256) it times training-mode forward and backward, interleaved over
rounds by ``gluon_bn.performance.measurements.time_bn_layers``, of these blocks, all compiled:

- ``nn.BatchNorm``: the baseline, oneDNN's fused kernel;
- ``GroupNorm layer``: gluon-bn's ``GroupNorm`` (``gluon_bn/norms/per_example.py``): the operator,
  then ``x * gamma + beta`` per channel by broadcasting;
- ``GroupNorm operator``: ``nn.GroupNorm(center=False, scale=False)``, the normalization alone, so
  the layer's time less this one is the broadcast scale and shift's;
- ``scale and shift, depthwise conv``: the same scale and shift as a 1x1 convolution with one group
  per channel, a route around MXNet's broadcast backward (not adopted yet: see docs/norms.md).

Prints medians and ratios to ``nn.BatchNorm`` from this one run.

    .venv/bin/python benchmarks/group_norm_parts.py [--repeats 30]
"""

from __future__ import annotations

import argparse

import gluon_bn  # noqa: F401  # isort: skip  first: it sets MXNet's threads and NumPy's removed names
from mxnet import init
from mxnet.gluon import nn

from gluon_bn.norms.per_example import GroupNorm, group_count
from gluon_bn.performance.measurements import time_bn_layers
from gluon_bn.runtime.compiled import compile_net

SHAPES = [(256, 6, 24, 24), (256, 16, 8, 8)]

PARTS = {
    "nn.BatchNorm": lambda c, _: nn.BatchNorm(in_channels=c),
    "GroupNorm layer": lambda c, _: GroupNorm(c, group_count(c)),
    "GroupNorm operator": lambda c, _: nn.GroupNorm(group_count(c), center=False, scale=False),
    "scale and shift, depthwise conv": lambda c, _: nn.Conv2D(
        c, 1, groups=c, in_channels=c, weight_initializer=init.One()
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds, every block once a round")
    args = parser.parse_args()
    factories = {name: lambda c, d, make=make: compile_net(make(c, d)) for name, make in PARTS.items()}
    rows = time_bn_layers(factories, SHAPES, repeats=args.repeats, baseline="nn.BatchNorm")
    for shape in SHAPES:
        print(f"\n{shape}, forward+backward, median of {args.repeats} rounds:")
        for row in (r for r in rows if tuple(r["shape"]) == shape):
            ms, ratio = row["forward_backward_ms"], row["forward_backward_ratio"]
            print(f"  {row['layer']:<34}{ms:8.2f} ms  {ratio:6.2f}x nn.BatchNorm")


if __name__ == "__main__":
    main()
