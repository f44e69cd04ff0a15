"""The same BN LeNet in PyTorch (CPU), trained the chapter's way: what a user could pick instead.

Only ``gluon-bn bench`` uses it, and only when PyTorch is importable. Same layers, sizes,
loss, plain SGD at the same learning rate and batch size, the same Fashion-MNIST arrays,
one epoch of training followed by the test accuracy, timed like ``train_ch5``'s epoch.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["available", "lenet_bn", "profile_torch_steps", "time_torch_epoch"]


def available() -> str | None:
    """PyTorch's version when it can be imported, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def lenet_bn():
    """The chapter's BN LeNet as a ``torch.nn.Sequential``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5),
        nn.BatchNorm2d(6),
        nn.Sigmoid(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.BatchNorm2d(16),
        nn.Sigmoid(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120),
        nn.BatchNorm1d(120),
        nn.Sigmoid(),
        nn.Linear(120, 84),
        nn.BatchNorm1d(84),
        nn.Sigmoid(),
        nn.Linear(84, 10),
    )


def time_torch_epoch(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    batch_size: int,
    lr: float,
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """Train one epoch (shuffled minibatches) and measure test accuracy; same keys as ``time_epoch``.

    Also returns the intra-op threads PyTorch used (``"threads"``).

    Args:
        images: the training images, uint8 (N, 28, 28); scaled to [0, 1] as ``ToTensor`` does.
        labels: the training labels.
        test_images: the test images, uint8 (N, 28, 28).
        test_labels: the test labels.
        batch_size: examples per batch; the summed loss is divided by it, as ``trainer.step(batch_size)`` does.
        lr: the SGD learning rate.
        seed: seeds PyTorch's initialization and the shuffling order.
        threads: PyTorch's intra-op threads (it shares OpenMP with MXNet in one process); None keeps its default.
    """
    import torch
    from torch import nn

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    X = torch.from_numpy(images.astype(np.float32)[:, None] / 255)
    y = torch.from_numpy(labels.astype(np.int64))
    X_test = torch.from_numpy(test_images.astype(np.float32)[:, None] / 255)
    y_test = torch.from_numpy(test_labels.astype(np.int64))
    net, loss = lenet_bn(), nn.CrossEntropyLoss(reduction="sum")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    order = np.random.default_rng(seed).permutation(len(y))
    start = time.perf_counter()
    net.train()
    total_loss = correct = 0.0
    for i in range(0, len(y), batch_size):
        idx = torch.from_numpy(order[i : i + batch_size])
        optimizer.zero_grad()
        out = net(X[idx])
        l = loss(out, y[idx])
        (l / batch_size).backward()  # the chapter's trainer.step(batch_size) on a summed loss
        optimizer.step()
        total_loss += l.item()
        correct += (out.argmax(1) == y[idx]).sum().item()
    net.eval()
    with torch.no_grad():
        test_correct = sum(
            (net(X_test[i : i + batch_size]).argmax(1) == y_test[i : i + batch_size]).sum().item()
            for i in range(0, len(y_test), batch_size)
        )
    elapsed = time.perf_counter() - start
    return {
        "epoch_s": elapsed,
        "examples_per_s": len(y) / elapsed,
        "loss": total_loss / len(y),
        "train_acc": correct / len(y),
        "test_acc": test_correct / len(y_test),
        "threads": torch.get_num_threads(),
    }


def profile_torch_steps(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    lr: float,
    steps: int,
    seed: int = 0,
    threads: int | None = None,
    top: int = 8,
) -> list[dict]:
    """PyTorch's profiler over ``steps`` training steps: the operators that take the most time per step.

    One step runs first, unprofiled, to warm up. The rows are those ``profiles.profile_steps``
    gives for MXNet; the time is each operator's own CPU time.

    Args:
        images: the training images, uint8 (N, 28, 28); every step trains on the first ``batch_size``.
        labels: the training labels.
        batch_size: examples per step; the summed loss is divided by it, as ``trainer.step(batch_size)`` does.
        lr: the SGD learning rate.
        steps: the profiled training steps.
        seed: seeds PyTorch's initialization.
        threads: PyTorch's intra-op threads; None keeps its default.
        top: how many operators to return, the slowest first.
    """
    import torch
    from torch import nn
    from torch.profiler import ProfilerActivity, profile

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net, loss = lenet_bn(), nn.CrossEntropyLoss(reduction="sum")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    X = torch.from_numpy(images[:batch_size].astype(np.float32)[:, None] / 255)
    y = torch.from_numpy(labels[:batch_size].astype(np.int64))

    def step():
        optimizer.zero_grad()
        out = net(X)
        l = loss(out, y)
        (l / batch_size).backward()
        optimizer.step()
        return l.item()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = [
        {"operator": e.key, "ms_per_step": e.self_cpu_time_total / 1e3 / steps, "calls_per_step": e.count / steps}
        for e in prof.key_averages()
    ]
    rows.sort(key=lambda r: -r["ms_per_step"])
    return rows[:top]
