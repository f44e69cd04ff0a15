"""How fast the layers and LeNets train: layer timings, epoch times (here or in a fresh process), d2l's pipeline.

Every ratio is taken against a baseline measured in the same run, on the same machine.
Layer timings interleave the layers round by round, so a slow spell of a noisy machine
falls on all of them alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from ..errors import Diverged
from ..runs.loop import make_trainer, train_ch5
from ..runtime import compat

__all__ = [
    "LENET_BN_SHAPES",
    "Workload",
    "d2l_loaders",
    "epoch_in_child",
    "epoch_in_this_process",
    "silent_epochs",
    "summarize_times",
    "time_bn_layers",
    "time_epoch",
]

#: The input shapes of LeNet's four BN layers at the chapter's batch size.
LENET_BN_SHAPES = ((256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84))


def time_bn_layers(
    factories: Mapping[str, Callable[[int, int], gluon.Block]],
    shapes=LENET_BN_SHAPES,
    ctx: mx.Context | None = None,
    repeats: int = 20,
    baseline: str = "gluon",
    warmup: int = 3,
) -> list[dict]:
    """Median training-mode forward, backward and forward+backward time of each layer at each shape.

    Each row carries its ratios to ``baseline`` measured in the same run, at the same shape. The
    layers run in turn within each round, so a slow spell falls on all of them alike.

    Args:
        factories: each layer's name and its builder from (num_features, num_dims).
        shapes: the input shapes timed, (N, C) or (N, C, H, W); by default LeNet's four BN inputs.
        ctx: where the layers run (the CPU by default).
        repeats: the timed rounds, each one forward and backward of every layer.
        baseline: the layer the ratios are taken against; a name not in ``factories`` gives None ratios.
        warmup: untimed rounds run first.
    """
    ctx = ctx or mx.cpu()
    rows = []
    for shape in shapes:
        X = nd.random.normal(shape=shape, ctx=ctx)
        dy = nd.random.normal(shape=shape, ctx=ctx)
        X.attach_grad()
        layers = {}
        for name, factory in factories.items():
            layers[name] = factory(shape[1], len(shape))
            layers[name].initialize(ctx=ctx)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in layers}
        for round_ in range(warmup + repeats):
            for name, layer in layers.items():
                nd.waitall()
                start = time.perf_counter()
                with autograd.record():
                    Y = layer(X)
                Y.wait_to_read()
                middle = time.perf_counter()
                Y.backward(dy)
                nd.waitall()
                if round_ >= warmup:
                    times[name].append((middle - start, time.perf_counter() - middle))
        per_shape = []
        for name, samples in times.items():
            forward, backward = (np.array(t) * 1e3 for t in zip(*samples))
            per_shape.append(
                {
                    "layer": name,
                    "shape": list(shape),
                    "forward_ms": float(np.median(forward)),
                    "backward_ms": float(np.median(backward)),
                    **summarize_times(forward + backward, "forward_backward"),
                }
            )
        base = next((r for r in per_shape if r["layer"] == baseline), None)
        for row in per_shape:
            for key in ("forward", "backward", "forward_backward"):
                row[f"{key}_ratio"] = row[f"{key}_ms"] / base[f"{key}_ms"] if base else None
        rows += per_shape
    return rows


def summarize_times(samples, name: str, unit: str = "ms") -> dict:
    """Median, minimum and spread ((max - min) / median) of repeated measurements, keyed ``name_*``."""
    samples = np.asarray(samples, dtype=float)
    median = float(np.median(samples))
    return {
        f"{name}_{unit}": median,
        f"{name}_min_{unit}": float(samples.min()),
        f"{name}_spread": float((samples.max() - samples.min()) / median) if median else 0.0,
    }


@dataclass(frozen=True)
class Workload:
    """A net to train with its data, as the chapter's loop trains it: batch size, learning rate, context."""

    net: gluon.Block
    train_iter: Iterable
    test_iter: Iterable
    batch_size: int
    lr: float
    ctx: mx.Context


def silent_epochs(workload: Workload, callbacks=(), epochs: int = 1):
    """Silent epochs of the chapter's loop with the chapter's optimizer: every measurement runs this."""
    w = workload
    trainer = make_trainer(w.net, w.lr)
    return train_ch5(
        w.net, w.train_iter, w.test_iter, w.batch_size, trainer, w.ctx, epochs, log=lambda _: None, callbacks=callbacks
    )


def time_epoch(workload: Workload, num_train: int) -> dict:
    """One epoch of the chapter's loop (training, then test accuracy), timed as the chapter times it.

    Args:
        workload: the initialized net, its training and test batches, and how it trains.
        num_train: the training examples in the epoch, for ``examples_per_s``.
    """
    (epoch,) = silent_epochs(workload)
    return {
        "epoch_s": epoch.time,
        "examples_per_s": num_train / epoch.time,
        "loss": epoch.loss,
        "train_acc": epoch.train_acc,
        "test_acc": epoch.test_acc,
    }


#: A child process's program: MXNet imported first keeps MXNet's own thread set-up, as the chapter's code runs.
_CHILD = (
    "import json, sys\n"
    "spec = json.loads(sys.argv[1])\n"
    "if spec['mxnet_first']:\n"
    f"    {compat.BEFORE_MXNET}\n"
    "    import mxnet\n"
    "from gluon_bn.performance.measurements import epoch_in_this_process\n"
    "print('RESULT ' + json.dumps(epoch_in_this_process(spec)))\n"
)


def epoch_in_child(spec: dict, threads: int | None, timeout: float = 3600) -> dict:
    """``epoch_in_this_process(spec)`` in a fresh Python process with its own CPU thread set-up.

    MXNet fixes its threads when it loads, so every set-up needs its own process: ``threads``
    None is MXNet's default (MXNet imported first, ``$OMP_NUM_THREADS`` unset), a number sets
    ``OMP_NUM_THREADS``. A fresh process also starts with empty memory pools.
    """
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _CHILD, json.dumps({**spec, "mxnet_first": threads is None})],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    result = next((line[len("RESULT ") :] for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if done.returncode != 0 or result is None:
        raise RuntimeError(f"an epoch in a child process failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return json.loads(result)


def epoch_in_this_process(spec: dict) -> dict:
    """One epoch timed as the chapter times it, as ``spec`` says.

    ``spec``: ``model`` (a LeNet norm, or "pytorch"), ``pipeline`` ("ours" or "d2l"), ``compiled``,
    ``batch_size``, ``lr``, ``seed``, ``data_dir``, ``num_train``, ``num_test``. Returns
    ``time_epoch``'s keys and the operator threads, or ``diverged`` with the reason.
    """
    from ..chapter.data import load_data_fashion_mnist
    from ..chapter.fashion_mnist import read_fashion_mnist
    from ..models import seeded_lenet
    from ..runtime.compiled import compile_net
    from ..runtime.threads import operator_threads
    from . import torch_lenet

    data = read_fashion_mnist(spec["data_dir"])
    arrays = (
        data.train_images[: spec["num_train"]],
        data.train_labels[: spec["num_train"]],
        data.test_images[: spec["num_test"]],
        data.test_labels[: spec["num_test"]],
    )
    if spec["model"] == "pytorch":
        return torch_lenet.time_torch_epoch(
            *arrays,
            spec["batch_size"],
            spec["lr"],
            spec["seed"],
            threads=int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        )
    if spec["pipeline"] == "d2l":
        train_iter, test_iter = d2l_loaders(*arrays, spec["batch_size"])
    else:
        train_iter, test_iter = load_data_fashion_mnist(
            spec["batch_size"],
            root=spec["data_dir"],
            seed=spec["seed"],
            num_train=spec["num_train"],
            num_test=spec["num_test"],
        )
    net = seeded_lenet(spec["model"], mx.cpu(), spec["seed"])
    if spec["compiled"]:
        compile_net(net)
    workload = Workload(net, train_iter, test_iter, spec["batch_size"], spec["lr"], mx.cpu())
    try:
        timed = time_epoch(workload, len(arrays[1]))
    except Diverged as exc:
        return {"diverged": str(exc), "threads": operator_threads()}
    return {**timed, "threads": operator_threads()}


def d2l_loaders(
    images: np.ndarray, labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray, batch_size: int
) -> tuple[gluon.data.DataLoader, gluon.data.DataLoader]:
    """d2l's ``load_data_fashion_mnist`` pipeline, over already verified arrays.

    The same dataset layout as ``gluon.data.vision.FashionMNIST`` (uint8 HxWx1 NDArrays),
    the same ``ToTensor`` transform, shuffling and worker count as d2l 1.0.3. Only the
    source differs: MXNet's own dataset class would check an older release and download.

    Args:
        images: the training images, uint8 (N, 28, 28).
        labels: the training labels.
        test_images: the test images, uint8 (N, 28, 28).
        test_labels: the test labels.
        batch_size: examples per batch, in both loaders.
    """
    from d2l import mxnet as d2l

    transform = gluon.data.vision.transforms.Compose([gluon.data.vision.transforms.ToTensor()])

    def dataset(x, y):
        return gluon.data.ArrayDataset(nd.array(x[..., None], dtype=np.uint8), y.astype(np.int32)).transform_first(
            transform
        )

    workers = d2l.get_dataloader_workers()
    return (
        gluon.data.DataLoader(dataset(images, labels), batch_size, shuffle=True, num_workers=workers),
        gluon.data.DataLoader(dataset(test_images, test_labels), batch_size, shuffle=False, num_workers=workers),
    )
