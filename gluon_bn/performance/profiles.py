"""How lean and where the time goes: resident memory over training steps, and MXNet's profiler over a step."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Iterable

import mxnet as mx
from mxnet import gluon, nd, profiler

from ..errors import TrainingInterrupted
from ..runs.loop import Callback
from .measurements import silent_epochs

__all__ = ["memory_over_steps", "profile_steps", "resident_mb"]


def resident_mb() -> float:
    """This process's resident memory now, in MB (Linux); its peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _MemorySampler(Callback):
    """Samples resident memory every ``every`` training steps and stops training after ``steps``."""

    def __init__(self, steps: int, every: int):
        self.steps, self.every, self.step = steps, every, 0
        self.samples = [(0, resident_mb())]

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        self.step += 1
        if self.step % self.every == 0:
            nd.waitall()
            self.samples.append((self.step, resident_mb()))
        return self.step >= self.steps


def memory_over_steps(
    net: gluon.Block,
    train_iter: Iterable,
    test_iter: Iterable,
    batch_size: int,
    lr: float,
    ctx: mx.Context,
    steps: int,
    every: int = 50,
) -> list[tuple[int, float]]:
    """Resident memory (MB) every ``every`` training steps of the chapter's loop, ``steps`` in all.

    Returns (step, MB) pairs, the first taken before training (step 0).

    Args:
        net: the initialized model to train.
        train_iter: the training batches; as many epochs run as ``steps`` needs.
        test_iter: the test batches of the chapter's loop.
        batch_size: what the trainer's step divides by, as in the chapter.
        lr: the SGD learning rate.
        ctx: where the net trains.
        steps: the training steps in all; training stops after the last.
        every: the steps between two samples.
    """
    sampler = _MemorySampler(steps, every)
    try:
        silent_epochs(net, train_iter, test_iter, batch_size, lr, ctx, [sampler], epochs=-(-steps // len(train_iter)))
    except TrainingInterrupted:  # the sampler's stop after ``steps``
        pass
    return sampler.samples


class _Profiler(Callback):
    """MXNet's profiler from the end of the first step (which builds graphs and allocates) to the last."""

    def __init__(self, path: Path, last_batch: int):
        self.path, self.last_batch, self.steps = path, last_batch, 0

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        nd.waitall()
        if batch == 1:
            profiler.set_config(
                profile_imperative=True, profile_symbolic=True, aggregate_stats=True, filename=str(self.path)
            )
            profiler.set_state("run")
        elif batch <= self.last_batch:
            self.steps += 1
        if batch == self.last_batch:
            profiler.set_state("stop")
        return False


def profile_steps(
    net: gluon.Block,
    train_iter: Iterable,
    test_iter: Iterable,
    batch_size: int,
    lr: float,
    ctx: mx.Context,
    path: Path,
    top: int = 8,
) -> list[dict]:
    """MXNet's profiler over the chapter's training loop: the operators that take the most time per step.

    One epoch runs; the profiler runs from the end of the first step (which builds graphs and
    allocates) to the last.

    Args:
        net: the initialized model to train.
        train_iter: the training batches of the one epoch.
        test_iter: the test batches of the chapter's loop.
        batch_size: what the trainer's step divides by, as in the chapter.
        lr: the SGD learning rate.
        ctx: where the net trains.
        path: the file the profiler's trace is written to.
        top: how many operators to return, the slowest first.
    """
    profiled = _Profiler(path, len(train_iter))
    silent_epochs(net, train_iter, test_iter, batch_size, lr, ctx, [profiled])
    table = profiler.dumps(reset=True, format="json")
    profiler.dump(finished=False)  # the trace goes to ``path``, which stays the target at exit
    operators = json.loads(table).get("Time", {}).get("operator", {})
    steps = max(1, profiled.steps)
    rows = [
        {"operator": name, "ms_per_step": stats["Total"] / steps, "calls_per_step": stats["Count"] / steps}
        for name, stats in operators.items()
        if name != "DeleteVariable"
    ]
    rows.sort(key=lambda r: -r["ms_per_step"])
    return rows[:top]
