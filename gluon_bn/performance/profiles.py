"""How lean and where the time goes: resident memory over training steps, and MXNet's profiler over a step."""

from __future__ import annotations

import json
import resource
from pathlib import Path

from mxnet import nd, profiler

from ..errors import TrainingInterrupted
from ..runs.loop import Callback
from .measurements import Workload, silent_epochs

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


def memory_over_steps(workload: Workload, steps: int, every: int = 50) -> list[tuple[int, float]]:
    """Resident memory (MB) every ``every`` training steps of the chapter's loop, ``steps`` in all.

    Returns (step, MB) pairs, the first taken before training (step 0).

    Args:
        workload: the initialized net, its data and how it trains; as many epochs run as ``steps`` needs.
        steps: the training steps in all; training stops after the last.
        every: the steps between two samples.
    """
    sampler = _MemorySampler(steps, every)
    try:
        silent_epochs(workload, [sampler], epochs=-(-steps // len(workload.train_iter)))
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


def profile_steps(workload: Workload, path: Path, top: int = 8) -> list[dict]:
    """MXNet's profiler over the chapter's training loop: the operators that take the most time per step.

    One epoch runs; the profiler runs from the end of the first step (which builds graphs and
    allocates) to the last.

    Args:
        workload: the initialized net, its data and how it trains; one epoch of its training batches runs.
        path: the file the profiler's trace is written to.
        top: how many operators to return, the slowest first.
    """
    profiled = _Profiler(path, len(workload.train_iter))
    silent_epochs(workload, [profiled])
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
