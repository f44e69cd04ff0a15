"""``gluon-bn bench``: how fast each BN layer and each LeNet trains here, against its alternatives.

Config in; tables, a markdown report (``bench.md``) and a record (``bench.json``) out. Every ratio is against a baseline
measured in the same run: the fused ``nn.BatchNorm`` for layers; d2l's data pipeline with
the chapter's code, and PyTorch's CPU LeNet when it is installed, for epochs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping, Sequence

import mxnet as mx

from .. import torch_lenet
from ..data import read_fashion_mnist
from ..errors import Diverged, UsageError
from ..files import atomic_write_text
from ..measurements import d2l_loaders, memory_over_steps, profile_steps, time_bn_layers, time_epoch
from ..models import BN_LAYERS, LABELS, NORMS
from ..record import save_record
from ..runtime import compile_net, default_threads, logical_cpus, set_threads
from ..tables import markdown_table, speed_table
from .shared import RunConfig, prepare, seeded_lenet

__all__ = ["BenchConfig", "SECTIONS", "run"]

SECTIONS = ("layers", "epochs", "memory", "profile")
#: How each model is run for an epoch: as the chapter's code does, through d2l's pipeline, as gluon-bn does.
CHAPTER_SETUP = "chapter's code"
D2L_SETUP = "chapter's code, d2l pipeline"
OURS_SETUP = "gluon-bn"
#: Memory that grows by less than this over the run counts as flat (allocator noise).
FLAT_MB = 20.0


@dataclass
class BenchConfig(RunConfig):
    """What ``gluon-bn bench`` measures, and how long it takes."""

    models: tuple[str, ...] = NORMS
    d2l_models: tuple[str, ...] = ("gluon", "fast")
    sections: tuple[str, ...] = SECTIONS
    repeats: int = 30
    memory_steps: int = 1000
    profile_steps: int = 20
    out: str = "results/bench"

    QUICK: ClassVar[dict] = {"num_train": 1024, "num_test": 512, "repeats": 3, "memory_steps": 20, "profile_steps": 3}
    POSITIVE: ClassVar[tuple[str, ...]] = (*RunConfig.POSITIVE, "repeats", "memory_steps", "profile_steps")

    def validate(self) -> "BenchConfig":
        super().validate()
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown or not self.sections:
            raise UsageError(f"unknown section(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(SECTIONS)}")
        return self


def _epoch_rows(config: BenchConfig, ctx: mx.Context, log: Callable[[str], None]) -> list[dict]:
    """Each model for one epoch in each set-up, then PyTorch's LeNet; ratios against d2l and PyTorch."""
    data = read_fashion_mnist(config.data_dir)
    arrays = (data.train_images[:config.num_train], data.train_labels[:config.num_train],
              data.test_images[:config.num_test], data.test_labels[:config.num_test])
    num_train = len(arrays[1])
    rows = []

    def run(norm: str, setup: str, threads: int | None = None) -> None:
        ours = setup.startswith(OURS_SETUP)
        threads = set_threads(threads or (config.threads if ours else None))
        train_iter, test_iter = d2l_loaders(*arrays, config.batch_size) if setup == D2L_SETUP else config.loaders()
        net = seeded_lenet(norm, ctx, config.seed)
        if ours:
            compile_net(net)
        try:
            timed = time_epoch(net, train_iter, test_iter, config.batch_size, config.lr, ctx, num_train)
        except Diverged as exc:  # no epoch time for a run that stopped; the log says why
            log(f"{LABELS[norm]:>14}, {setup:<29} diverged ({exc})")
            return
        row = {"model": norm, "setup": setup, "threads": threads, **timed}
        log(f"{LABELS[norm]:>14}, {setup:<29} {row['epoch_s']:6.1f} s  ({threads} threads)")
        rows.append(row)

    for norm in config.models:
        for setup in ((D2L_SETUP,) if norm in config.d2l_models else ()) + (CHAPTER_SETUP, OURS_SETUP):
            run(norm, setup)
        if norm == "gluon" and default_threads() > 1 and config.threads is None:
            run(norm, f"{OURS_SETUP}, 1 thread", 1)
    threads = set_threads(config.threads)
    version = torch_lenet.available()
    if version:
        row = {"model": "pytorch", "setup": f"PyTorch {version}",
               **torch_lenet.time_torch_epoch(*arrays, config.batch_size, config.lr, config.seed, threads)}
        log(f"{'PyTorch':>14}, {row['setup']:<29} {row['epoch_s']:6.1f} s  ({row['threads']} threads)")
        rows.append(row)
    else:
        log("PyTorch is not installed: no PyTorch row (install its CPU build, e.g. torch==2.13.0+cpu)")
    torch_s = next((r["epoch_s"] for r in rows if r["model"] == "pytorch"), None)
    for row in rows:
        d2l_s = next((r["epoch_s"] for r in rows if r["model"] == row["model"] and r["setup"] == D2L_SETUP), None)
        row["vs_d2l"] = row["epoch_s"] / d2l_s if d2l_s else None
        row["vs_torch"] = row["epoch_s"] / torch_s if torch_s else None
    return rows


def _memory_rows(config: BenchConfig, ctx: mx.Context, log: Callable[[str], None]) -> list[dict]:
    """Resident memory over ``memory_steps`` training steps of each model, as gluon-bn trains it."""
    rows = []
    every = max(1, min(50, config.memory_steps // 10))
    for norm in config.models:
        train_iter, test_iter = config.loaders(num_test=config.batch_size)
        net = compile_net(seeded_lenet(norm, ctx, config.seed))
        samples = memory_over_steps(net, train_iter, test_iter, config.batch_size, config.lr, ctx,
                                    config.memory_steps, every)
        # The first quarter of the run fills MXNet's memory pools; growth is measured after it.
        warm = [s for s in samples if s[0] >= config.memory_steps // 4] or samples[-1:]
        growth = warm[-1][1] - warm[0][1]
        rows.append({"model": norm, "steps": config.memory_steps, "from_step": warm[0][0], "start_mb": warm[0][1],
                     "end_mb": warm[-1][1], "peak_mb": max(mb for _, mb in warm), "growth_mb": growth,
                     "flat": growth < FLAT_MB, "samples": samples})
        log(f"{LABELS[norm]:>14}: {warm[0][1]:.0f} MB at step {warm[0][0]}, {warm[-1][1]:.0f} MB at step "
            f"{warm[-1][0]} ({growth:+.1f} MB)")
    return rows


def _profiles(config: BenchConfig, ctx: mx.Context, out) -> dict:
    """Top operators of a training step for the Gluon and the fast LeNet."""
    train_iter, test_iter = config.loaders(num_train=config.batch_size * (config.profile_steps + 1),
                                           num_test=config.batch_size)
    profiles = {}
    for norm in ("gluon", "fast"):
        net = compile_net(seeded_lenet(norm, ctx, config.seed))
        profiles[norm] = profile_steps(net, train_iter, test_iter, config.batch_size, config.lr, ctx,
                                       out / f"profile-{norm}.json")
    return profiles


def _targets(results: dict) -> list[str]:
    """The issue's targets, each judged from this run's numbers."""
    lines = []
    fast = [r for r in results.get("layers", []) if r["layer"] == "fast"]
    if fast:
        worst = max(fast, key=lambda r: r["forward_backward_ratio"])
        met = sum(r["forward_backward_ratio"] <= 1.2 for r in fast)
        lines.append(f"FastBatchNorm forward+backward at most 1.2x nn.BatchNorm: met at {met} of {len(fast)} "
                     f"shapes (worst {worst['forward_backward_ratio']:.2f}x at {tuple(worst['shape'])})")
    for row in results.get("epochs", []):
        if row["setup"] == OURS_SETUP and row["model"] in ("gluon", "fast"):
            for key, limit, name in (("vs_d2l", 0.5, "d2l's pipeline"), ("vs_torch", 1.0, "PyTorch")):
                if row.get(key) is not None:
                    lines.append(f"{LABELS[row['model']]} LeNet epoch at most {limit:g}x {name}: "
                                 f"{row[key]:.2f}x, {'met' if row[key] <= limit else 'NOT met'}")
    for row in results.get("memory", []):
        lines.append(f"{LABELS[row['model']]} LeNet memory flat over {row['steps']} steps: "
                     f"{row['growth_mb']:+.1f} MB, {'met' if row['flat'] else 'NOT met'}")
    return lines


def epochs_table(rows: Sequence[Mapping]) -> str:
    """Epoch times of each model and set-up from this command."""
    return markdown_table(
        ["model", "set-up", "epoch s", "examples/s", "vs d2l pipeline", "vs PyTorch", "train loss", "train acc",
         "test acc"],
        [[LABELS.get(r["model"], r["model"]), r["setup"], f"{r['epoch_s']:.1f}", f"{r['examples_per_s']:,.0f}",
          _ratio(r.get("vs_d2l")), _ratio(r.get("vs_torch")), f"{r['loss']:.4f}", f"{r['train_acc']:.3f}",
          f"{r['test_acc']:.3f}"] for r in rows])


def _ratio(value) -> str:
    return "" if value is None else f"{value:.2f}"


def memory_table(rows: Sequence[Mapping]) -> str:
    """Resident memory over many training steps, per model."""
    return markdown_table(
        ["model", "steps", "MB at step " + str(rows[0]["from_step"]) if rows else "MB", "MB at the end",
         "MB at the peak", "growth MB", "flat"],
        [[LABELS.get(r["model"], r["model"]), r["steps"], f"{r['start_mb']:.0f}", f"{r['end_mb']:.0f}",
          f"{r['peak_mb']:.0f}", f"{r['growth_mb']:+.1f}", "yes" if r["flat"] else "NO"] for r in rows])


def profile_table(model: str, rows: Sequence[Mapping]) -> str:
    """The operators that take the most time in one training step of ``model``."""
    return markdown_table(
        ["operator (" + LABELS.get(model, model) + ")", "ms per step", "calls per step"],
        [[r["operator"][:70], f"{r['ms_per_step']:.2f}", f"{r['calls_per_step']:.0f}"] for r in rows])


def run(config: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Run the requested sections; print tables; write bench.json and bench.md into ``config.out``."""
    config = config.resolved()
    ctx, out, extra = prepare(config, log)
    started = time.perf_counter()
    results: dict = {}
    sections = []
    if "layers" in config.sections:
        log("\n== BN layers ==")
        results["layers"] = time_bn_layers(BN_LAYERS, ctx=ctx, repeats=config.repeats)
        sections += ["## BN layers", f"Median of {config.repeats} interleaved rounds, training mode, at LeNet's BN "
                     "shapes; ratios to nn.BatchNorm (the fused operator) in this run.",
                     speed_table(results["layers"])]
    if "epochs" in config.sections:
        log("\n== one epoch of each LeNet ==")
        results["epochs"] = _epoch_rows(config, ctx, log)
        sections += ["## One epoch of each LeNet", f"Training on {config.num_train or 60000:,} images, then test "
                     f"accuracy on {config.num_test or 10000:,}, batch {config.batch_size}, lr {config.lr:g}, timed as "
                     f"the chapter times an epoch. '{CHAPTER_SETUP}': every layer imperative, MXNet's default "
                     f"threads (one per logical CPU), in-memory batches; '{D2L_SETUP}': the same through d2l's "
                     f"DataLoader pipeline; '{OURS_SETUP}': Gluon layers compiled (MXNet's default threads unless "
                     "the row says otherwise).",
                     epochs_table(results["epochs"])]
    if "memory" in config.sections:
        log(f"\n== memory over {config.memory_steps} training steps ==")
        results["memory"] = _memory_rows(config, ctx, log)
        sections += ["## Memory", f"Resident memory of this process while each LeNet trains {config.memory_steps} "
                     f"steps as gluon-bn trains it; 'flat' means it grew by less than {FLAT_MB:g} MB after the "
                     "first steps.", memory_table(results["memory"])]
    if "profile" in config.sections:
        log("\n== profile ==")
        results["profile"] = _profiles(config, ctx, out)
        sections += ["## Where a training step's time goes", f"MXNet's profiler over {config.profile_steps} steps "
                     "(operators; a compiled graph shows as one fused entry)."]
        sections += [profile_table(norm, rows) for norm, rows in results["profile"].items()]
    targets = _targets(results)
    text = "\n\n".join([f"# gluon-bn bench on {ctx}", f"{extra['environment']['platform']}, "
                        f"{logical_cpus()} logical CPUs, "
                        f"MXNet {extra['environment']['packages']['mxnet']}.", *sections,
                        "## Targets", "\n".join(f"- {line}" for line in targets)])
    record_path, md_path = out / "bench.json", out / "bench.md"
    save_record(record_path, "bench", config.to_dict(), results, **extra, targets=targets,
                wall_time=time.perf_counter() - started)
    atomic_write_text(md_path, text + "\n")
    log("\n" + text)
    log(f"\nwrote {record_path} and {md_path}")
    return {"results": results, "targets": targets, "record": record_path, "markdown": md_path}
