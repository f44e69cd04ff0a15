"""Speed of the from-scratch BatchNorm and FastBatchNorm against nn.BatchNorm at LeNet's BN shapes.

Prints median forward and forward+backward times and their ratios to nn.BatchNorm, all
measured in this run. Usage: python benchmarks/bn_layers.py [--repeats 50] [--ctx cpu|gpu]
"""
import argparse

import mxnet as mx

from gluon_bn.bench import time_bn_layers
from gluon_bn.comparison import LAYERS
from gluon_bn.fast import FastBatchNorm
from gluon_bn.report import speed_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--ctx", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args()
    ctx = mx.gpu(0) if args.ctx == "gpu" else mx.cpu()
    layers = {**LAYERS, "fast": lambda c, num_dims: FastBatchNorm(c, num_dims)}
    rows = time_bn_layers(layers, ctx=ctx, repeats=args.repeats)
    print(f"BN layers on {ctx}, median of {args.repeats} runs, ratio = layer / nn.BatchNorm")
    print(speed_table(rows))


if __name__ == "__main__":
    main()
