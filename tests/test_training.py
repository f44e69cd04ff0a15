"""train_ch5 and evaluate_accuracy on a real Fashion-MNIST subset; a divergence leaves no trace; the book-sized
loop in gluon_bn.chapter and the hardened one give the same history."""

import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, init, nd
from poisoned import Poisoned

from gluon_bn import evaluate_accuracy, lenet, load_data_fashion_mnist, train_ch5, try_gpu
from gluon_bn.chapter import training as book
from gluon_bn.errors import Diverged
from gluon_bn.norms.bnstate import bn_layers, get_stats
from gluon_bn.runtime.compiled import compile_net

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


@pytest.mark.parametrize("norm", ["scratch", "gluon"])
def test_the_books_loop_and_the_hardened_one_give_the_same_history(real_data_dir, norm, capsys):
    def train(loop, **options):
        mx.random.seed(3)
        train_iter, test_iter = load_data_fashion_mnist(256, num_train=1536, num_test=512, seed=3)
        net = lenet(norm)
        net.initialize(init=init.Xavier())
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
        history = loop(net, train_iter, test_iter, 256, trainer, mx.cpu(), 2, **options)
        return [(e.epoch, e.loss, e.train_acc, e.test_acc) for e in history], net[1].gamma.data().asnumpy()

    lines = []
    hardened, hardened_gamma = train(train_ch5, log=lines.append)
    books, books_gamma = train(book.train_ch5)
    assert books == hardened  # to the last digit: loss, both accuracies, every epoch
    np.testing.assert_array_equal(books_gamma, hardened_gamma)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == lines[0] == "training on cpu(0)"
    assert [LINE.match(line) is not None for line in printed[1:]] == [True, True]


def test_the_books_loop_is_book_sized():
    import inspect

    assert 20 <= len(inspect.getsource(book.train_ch5).splitlines()) <= 40


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


def _whole_state(net, trainer, folder):
    """Every parameter (Gluon's running statistics too), every BN layer's moving statistics, the
    optimizer's state arrays (as ``Trainer.save_states`` writes them) and its update count."""
    nd.waitall()
    trainer.save_states(str(folder / "optimizer.states"))
    return {
        "params": {name: [d.asnumpy() for d in p.list_data()] for name, p in net.collect_params().items()},
        "stats": [get_stats(layer) for layer in bn_layers(net)],
        "optimizer": ((folder / "optimizer.states").read_bytes(), trainer.optimizer.num_update),
    }


def _assert_same_state(got, want):
    assert got["params"].keys() == want["params"].keys()
    for name in want["params"]:
        for a, b in zip(got["params"][name], want["params"][name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for (mean_a, var_a), (mean_b, var_b) in zip(got["stats"], want["stats"]):
        np.testing.assert_array_equal(mean_a, mean_b)
        np.testing.assert_array_equal(var_a, var_b)
    assert got["optimizer"] == want["optimizer"]


@pytest.mark.parametrize("norm", ["scratch", "fast", "gluon"])
def test_divergence_leaves_no_trace_in_the_model(norm, tmp_path, real_data_dir):
    """Weights, moving statistics and optimizer state after ``Diverged`` are those before the bad batch."""
    mx.random.seed(0)
    net = compile_net(lenet(norm))
    net.initialize(init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9})
    train_iter, test_iter = load_data_fashion_mnist(256, num_train=1024, num_test=256, seed=0)
    before = {}
    poisoned = Poisoned(train_iter, before=lambda: before.update(_whole_state(net, trainer, tmp_path)))
    with pytest.raises(Diverged) as err:
        train_ch5(net, poisoned, test_iter, 256, trainer, mx.cpu(), 3, log=lambda s: None)
    assert (err.value.epoch, err.value.batch) == (2, 3)
    _assert_same_state(_whole_state(net, trainer, tmp_path), before)
    assert all(np.isfinite(s).all() for pair in before["stats"] for s in pair)
