"""The Python thread's OpenMP team, shown by threads and context switches, not inferred from timings.

Each set-up runs in a fresh process, in interleaved rounds. A compiled ``nn.BatchNorm`` LeNet trains
on one fixed batch; then the Python thread copies 120 batches from NumPy (what every minibatch
costs), and the LeNet trains again. Before and after the copies the process's threads are counted
and, per operator thread, the voluntary context switches (a thread that goes to sleep in the
kernel instead of spinning) and the CPU time during the steps are read from ``/proc/self/task``.

- ``gluon-bn``: as ``import gluon_bn`` sets it up (the Python thread has one OpenMP thread);
- ``Python thread at N``: the same, with the Python thread's OpenMP threads set back to the
  operator threads' count, as before the fix.

    .venv/bin/python benchmarks/openmp_team.py [--rounds 3] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import numpy as np
import gluon_bn
import mxnet as mx
from mxnet import autograd, gluon, nd
from gluon_bn.runtime import threads

undo, steps = sys.argv[1] == "undo", int(sys.argv[2])
if undo:
    threads._set_calling_thread_openmp(threads.operator_threads())

def tasks():
    seen = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status") as f:
            switches = int(f.read().split("voluntary_ctxt_switches:")[1].split()[0])
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        seen[tid] = (switches, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return seen

net = gluon_bn.lenet("gluon")
net.initialize(mx.init.Xavier())
net.hybridize(static_alloc=True)
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
loss = gluon.loss.SoftmaxCrossEntropyLoss()
X, y = nd.random.uniform(shape=(256, 1, 28, 28)), nd.array(np.arange(256) % 10)

def train(n):
    for _ in range(n):
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(256)
    nd.waitall()

def measured():
    before, start = tasks(), time.perf_counter()
    train(steps)
    ms, after = (time.perf_counter() - start) / steps * 1000, tasks()
    busy = sorted(((after[t][0] - before.get(t, (0, 0))[0], after[t][1] - before.get(t, (0, 0))[1]) for t in after),
                  key=lambda v: -v[1])[:threads.operator_threads()]  # the threads that computed
    return {"threads": len(after), "ms_per_step": ms, "switches_per_step": sum(s for s, _ in busy) / steps,
            "cpu_ms_per_step": sum(c for _, c in busy) / steps * 1000}

train(20)
first = measured()
images = np.random.default_rng(0).random((256, 1, 28, 28), dtype=np.float32)
for _ in range(120):
    nd.array(images, dtype=np.float32)
nd.waitall()
print("RESULT " + json.dumps({"before_copies": first, "after_copies": measured(),
                              "python_thread": threads.python_thread_threads(),
                              "operator_threads": threads.operator_threads()}))
"""

SETUPS = {"gluon-bn": "keep", "Python thread at N": "undo"}


def run_child(how: str, steps: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CHILD, how, str(steps)], capture_output=True, text=True, timeout=600
    )
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"child failed (exit {done.returncode}): {done.stderr[-800:]}")
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in SETUPS}
    for round_ in range(1, args.rounds + 1):
        for name, how in SETUPS.items():
            got = run_child(how, args.steps)
            runs[name].append(got)
            print(
                f"round {round_}: {name:<19} Python thread {got['python_thread']}, "
                f"operators {got['operator_threads']}: "
                + "; ".join(
                    f"{when.replace('_', ' ')}: {got[when]['threads']} threads, "
                    f"{got[when]['ms_per_step']:.1f} ms/step, {got[when]['switches_per_step']:.0f} switches/step"
                    for when in ("before_copies", "after_copies")
                ),
                flush=True,
            )
    print(
        f"\nmedians of {args.rounds} rounds, {args.steps} steps each (operator threads' voluntary context switches "
        "and CPU time per step)"
    )
    print(
        "| set-up | when | threads | ms per step | context switches per step | CPU ms per step |\n"
        "|---|---|---|---|---|---|"
    )
    for name, done in runs.items():
        for when in ("before_copies", "after_copies"):
            med = {k: statistics.median(r[when][k] for r in done) for k in done[0][when]}
            print(
                f"| {name} | {when.replace('_', ' ')} | {med['threads']:.0f} | {med['ms_per_step']:.1f} | "
                f"{med['switches_per_step']:.0f} | {med['cpu_ms_per_step']:.1f} |"
            )


if __name__ == "__main__":
    main()
