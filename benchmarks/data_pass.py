"""How much of an epoch the data path costs: one pass over the training batches vs training.

Prints the time of a full pass over the 60,000 training examples in batches of 256 (NDArrays
made, nothing else), and of one training epoch of the nn.BatchNorm LeNet on a subset, scaled
to the full set, both measured in this run. Usage: python benchmarks/data_pass.py
"""

import time

import gluon_bn  # isort: skip  first: it sets MXNet's CPU threads, which MXNet fixes when it loads
import gluon_bn.chapter.fashion_mnist  # isort: skip
import mxnet as mx
from mxnet import gluon, init, nd

BATCH, SUBSET = 256, 15360


def main() -> None:
    t = time.perf_counter()
    gluon_bn.chapter.fashion_mnist.read_fashion_mnist()
    decode = time.perf_counter() - t
    train_iter, test_iter = gluon_bn.load_data_fashion_mnist(BATCH, seed=0)
    t = time.perf_counter()
    for X, y in train_iter:
        X.wait_to_read()
    data_pass = time.perf_counter() - t

    sub_iter, _ = gluon_bn.load_data_fashion_mnist(BATCH, seed=0, num_train=SUBSET, num_test=BATCH)
    net = gluon_bn.lenet("gluon")
    net.initialize(init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
    history = gluon_bn.train_ch5(net, sub_iter, test_iter, BATCH, trainer, mx.cpu(), 1, log=lambda s: None)
    nd.waitall()
    epoch = history[0].time * 60000 / SUBSET
    print(f"decode + verify once:              {decode:6.2f} s")
    print(f"one pass over the training batches: {data_pass:6.2f} s")
    print(f"one nn.BatchNorm LeNet epoch (est.): {epoch:6.2f} s")
    print(f"data pass / training epoch:          {data_pass / epoch:6.3f}")


if __name__ == "__main__":
    main()
