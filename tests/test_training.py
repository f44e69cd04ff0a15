"""train_ch5 and evaluate_accuracy on a real Fashion-MNIST subset."""
import re

import mxnet as mx
import numpy as np
from mxnet import gluon, init

from gluon_bn import evaluate_accuracy, lenet, load_data_fashion_mnist, train_ch5, try_gpu

LINE = re.compile(r"^epoch (\d+), loss \d+\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, time \d+\.\d sec$")


def test_train_ch5_prints_the_chapters_lines_and_learns(real_data_dir):
    mx.random.seed(0)
    train_iter, test_iter = load_data_fashion_mnist(128, num_train=2048, num_test=512, seed=0)
    net = lenet("scratch")
    net.initialize(init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
    lines = []
    history = train_ch5(net, train_iter, test_iter, 128, trainer, mx.cpu(), 3, log=lines.append)
    assert lines[0] == "training on cpu(0)"
    assert [int(LINE.match(line).group(1)) for line in lines[1:]] == [1, 2, 3]
    assert [e.line() for e in history] == lines[1:]
    assert history[-1].loss < history[0].loss < 2.3
    assert history[-1].train_acc > 0.6
    assert history[-1].test_acc == evaluate_accuracy(test_iter, net, mx.cpu())


def test_evaluate_accuracy_counts_correct_predictions(real_data_dir):
    _, test_iter = load_data_fashion_mnist(100, num_test=300)
    net = lenet("gluon")
    net.initialize(init=init.Xavier())
    preds, labels = [], []
    for X, y in test_iter:
        preds.append(net(X).argmax(axis=1).asnumpy())
        labels.append(y.asnumpy())
    expected = np.mean(np.concatenate(preds) == np.concatenate(labels))
    assert evaluate_accuracy(test_iter, net) == expected


def test_try_gpu_falls_back_to_cpu_here():
    assert try_gpu() == (mx.gpu(0) if mx.context.num_gpus() else mx.cpu())
