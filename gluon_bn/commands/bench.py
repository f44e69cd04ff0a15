"""``gluon-bn bench``: how fast each BN layer and each LeNet trains here, against its alternatives.

Config in; tables, a markdown report (``bench.md``) and a record (``bench.json``) out. Every ratio is against a baseline
measured in the same run: the fused ``nn.BatchNorm`` for layers; d2l's data pipeline with
the chapter's code, and PyTorch's CPU LeNet when it is installed, for epochs.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Mapping, Sequence

import mxnet as mx

from ..chapter.fashion_mnist import read_fashion_mnist
from ..errors import UsageError
from ..models import seeded_lenet
from ..norms import NORMS, label, names
from ..performance import torch_lenet
from ..performance.measurements import Workload, epoch_in_child, summarize_times, time_bn_layers
from ..performance.profiles import memory_over_steps, profile_steps
from ..reliability.files import atomic_write_text
from ..reliability.record import save_record
from ..reports.tables import keyed_table, markdown_table, speed_table
from ..runs.arguments import config_from, count_option, run_arguments
from ..runs.prepare import prepare
from ..runs.settings import RunConfig
from ..runtime.compiled import compile_net

__all__ = ["BenchConfig", "SECTIONS", "add_arguments", "config", "run"]

SECTIONS = ("layers", "epochs", "memory", "profile")
#: How each model is run for an epoch: as the chapter's code does, through d2l's pipeline, as gluon-bn does.
CHAPTER_SETUP = "chapter's code"
D2L_SETUP = "chapter's code, d2l pipeline"
OURS_SETUP = "gluon-bn"
#: Memory that grows by less than this over the run counts as flat (allocator noise).
FLAT_MB = 20.0


def _label(model: str) -> str:
    """A LeNet's name in the tables: its norm's label, or PyTorch for the PyTorch row."""
    return label(model) if model in NORMS else "PyTorch"


@dataclass
class BenchConfig(RunConfig):
    """What ``gluon-bn bench`` measures, and how long it takes."""

    models: tuple[str, ...] = field(default_factory=lambda: names(benched=True))  # norms.Norm.benched
    d2l_models: tuple[str, ...] = ("gluon", "fast")
    sections: tuple[str, ...] = SECTIONS
    repeats: int = 30
    rounds: int = 3
    memory_steps: int = 1000
    profile_steps: int = 20
    out: str = "results/bench"

    QUICK: ClassVar[dict] = {"num_train": 1024, "num_test": 512, "repeats": 3, "memory_steps": 20, "profile_steps": 3}
    POSITIVE: ClassVar[tuple[str, ...]] = (*RunConfig.POSITIVE, "repeats", "rounds", "memory_steps", "profile_steps")

    def validate(self) -> "BenchConfig":
        super().validate()
        if self.rounds < 3 or self.repeats < 3:
            raise UsageError(
                f"rounds and repeats must be at least 3 (got {self.rounds} and {self.repeats}): "
                "one run per configuration proves nothing on a noisy machine"
            )
        if not self.models:
            raise UsageError("no model to time: name at least one with --models (" + ", ".join(NORMS) + ")")
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown or not self.sections:
            raise UsageError(
                f"unknown section(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(SECTIONS)}"
            )
        return self


HELP = "time every BN layer and LeNet here against nn.BatchNorm, d2l's pipeline and PyTorch"
DESCRIPTION = (
    "Time the from-scratch, fast and fused BN layers at LeNet's shapes; one epoch of each "
    "LeNet as the chapter's code runs it, through d2l's pipeline, and as gluon-bn runs it, "
    "beside PyTorch's LeNet when PyTorch is installed; resident memory over many training "
    "steps; a profile of a training step. Every ratio is measured in the same run. Writes "
    "bench.json and bench.md into --out."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gluon-bn bench`` options (it trains one epoch per model, so no --epochs)."""
    defaults = BenchConfig()
    parser.add_argument("--models", nargs="+", choices=[*NORMS], default=list(defaults.models), help="LeNets to time")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(defaults.sections))
    count_option(parser, "repeats", defaults, "timed rounds per layer and shape (at least 3)")
    count_option(
        parser, "rounds", defaults, "interleaved rounds of each epoch set-up, each in a fresh process (at least 3)"
    )
    count_option(parser, "memory-steps", defaults, "training steps per model in the memory section")
    count_option(parser, "profile-steps", defaults)
    run_arguments(parser, defaults)


def config(args: argparse.Namespace) -> BenchConfig:
    """The options as a config."""
    return config_from(BenchConfig, args, models=tuple(args.models), sections=tuple(args.sections))


def _epoch_plan(config: BenchConfig, ours: int) -> list[tuple[str, str, dict, int | None]]:
    """(model, set-up, how it runs, threads) per configuration; threads None is MXNet's own default."""
    plan = []
    for norm in config.models:
        if norm in config.d2l_models:
            plan.append((norm, D2L_SETUP, {"pipeline": "d2l", "compiled": False}, None))
        plan.append((norm, CHAPTER_SETUP, {"pipeline": "ours", "compiled": False}, None))
        plan.append((norm, OURS_SETUP, {"pipeline": "ours", "compiled": True}, ours))
        if ours > 1:
            plan.append((norm, f"{OURS_SETUP}, 1 thread", {"pipeline": "ours", "compiled": True}, 1))
    version = torch_lenet.available()
    if version:
        plan.append(("pytorch", f"PyTorch {version}", {}, ours))
    return plan


def _epoch_rows(config: BenchConfig, ours: int, log: Callable[[str], None]) -> list[dict]:
    """Every configuration for one epoch in its own process, in interleaved rounds; medians and ratios."""
    plan = _epoch_plan(config, ours)
    if not any(model == "pytorch" for model, *_ in plan):
        log("PyTorch is not installed: no PyTorch row (install its CPU build, e.g. torch==2.13.0+cpu)")
    base = {
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "data_dir": config.data_dir,
        "num_train": config.num_train,
        "num_test": config.num_test,
    }
    runs: list[list[dict]] = [[] for _ in plan]
    for round_ in range(1, config.rounds + 1):
        for (model, setup, how, threads), done in zip(plan, runs):
            result = epoch_in_child({**base, "model": model, **how}, threads)
            done.append(result)
            log(
                f"round {round_}: {_label(model):>14}, {setup:<29} "
                + (
                    f"diverged ({result['diverged']})"
                    if "diverged" in result
                    else f"{result['epoch_s']:6.1f} s  ({result['threads']} threads)"
                )
            )
    rows = []
    for (model, setup, _, _), done in zip(plan, runs):
        if any("diverged" in r for r in done):  # no epoch time for a run that stopped; the log says why
            continue
        first, timed = done[0], summarize_times([r["epoch_s"] for r in done], "epoch", "s")
        examples = first["examples_per_s"] * first["epoch_s"]  # the child's training examples
        rows.append(
            {
                "model": model,
                "setup": setup,
                "threads": first["threads"],
                "rounds": len(done),
                **timed,
                "examples_per_s": examples / timed["epoch_s"],
                "loss": first["loss"],
                "train_acc": first["train_acc"],
                "test_acc": first["test_acc"],
                "same_numbers": all(r["loss"] == first["loss"] for r in done),
            }
        )
    median = {(r["model"], r["setup"]): r["epoch_s"] for r in rows}
    torch_s = next((s for (model, _), s in median.items() if model == "pytorch"), None)
    for row in rows:
        d2l_s, gluon_s = median.get((row["model"], D2L_SETUP)), median.get(("gluon", row["setup"]))
        row["vs_d2l"] = row["epoch_s"] / d2l_s if d2l_s else None
        row["vs_torch"] = row["epoch_s"] / torch_s if torch_s else None
        row["vs_gluon"] = row["epoch_s"] / gluon_s if gluon_s and row["model"] != "pytorch" else None
    return rows


def _memory_rows(config: BenchConfig, ctx: mx.Context, log: Callable[[str], None]) -> list[dict]:
    """Resident memory over ``memory_steps`` training steps of each model, as gluon-bn trains it."""
    rows = []
    every = max(1, min(50, config.memory_steps // 10))
    for norm in config.models:
        train_iter, test_iter = config.loaders(num_test=config.batch_size)
        net = compile_net(seeded_lenet(norm, ctx, config.seed))
        workload = Workload(net, train_iter, test_iter, config.batch_size, config.lr, ctx)
        samples = memory_over_steps(workload, config.memory_steps, every)
        # The first quarter of the run fills MXNet's memory pools; growth is measured after it.
        warm = [s for s in samples if s[0] >= config.memory_steps // 4] or samples[-1:]
        growth = warm[-1][1] - warm[0][1]
        rows.append(
            {
                "model": norm,
                "steps": config.memory_steps,
                "from_step": warm[0][0],
                "start_mb": warm[0][1],
                "end_mb": warm[-1][1],
                "peak_mb": max(mb for _, mb in warm),
                "growth_mb": growth,
                "flat": growth < FLAT_MB,
                "samples": samples,
            }
        )
        log(
            f"{label(norm):>14}: {warm[0][1]:.0f} MB at step {warm[0][0]}, {warm[-1][1]:.0f} MB at step "
            f"{warm[-1][0]} ({growth:+.1f} MB)"
        )
    return rows


def _profiles(config: BenchConfig, ctx: mx.Context, out, threads: int) -> dict:
    """Top operators of a training step: the Gluon, fast and from-scratch LeNets in MXNet, and PyTorch's LeNet."""
    train_iter, test_iter = config.loaders(
        num_train=config.batch_size * (config.profile_steps + 1), num_test=config.batch_size
    )
    profiles = {}
    for norm in ("gluon", "fast", "scratch"):
        net = compile_net(seeded_lenet(norm, ctx, config.seed))
        workload = Workload(net, train_iter, test_iter, config.batch_size, config.lr, ctx)
        profiles[norm] = profile_steps(workload, out / f"profile-{norm}.json", top=12 if norm == "scratch" else 8)
    if torch_lenet.available():
        data = read_fashion_mnist(config.data_dir)
        profiles["pytorch"] = torch_lenet.profile_torch_steps(
            data.train_images,
            data.train_labels,
            config.batch_size,
            config.lr,
            config.profile_steps,
            config.seed,
            threads,
        )
    return profiles


def _targets(results: dict) -> list[str]:
    """The performance issue's targets, each judged from this run's medians."""
    lines = []
    fast = [r for r in results.get("layers", []) if r["layer"] == "fast"]
    if fast:
        worst = max(fast, key=lambda r: r["forward_backward_ratio"])
        met = sum(r["forward_backward_ratio"] <= 1.2 for r in fast)
        lines.append(
            f"FastBatchNorm forward+backward at most 1.2x nn.BatchNorm: met at {met} of {len(fast)} "
            f"shapes (worst {worst['forward_backward_ratio']:.2f}x at {tuple(worst['shape'])})"
        )
    ours = {r["model"]: r for r in results.get("epochs", []) if r["setup"] == OURS_SETUP}
    for model, key, limit, name in (
        ("gluon", "vs_torch", 1.0, "PyTorch's"),
        ("fast", "vs_gluon", 1.2, "nn.BatchNorm's"),
    ):
        if model in ours and ours[model].get(key) is not None:
            value = ours[model][key]
            lines.append(
                f"{label(model)} LeNet epoch at most {limit:g}x {name}: {value:.2f}x, "
                f"{'met' if value <= limit else 'NOT met'}"
            )
    chapter = {r["model"]: r for r in results.get("epochs", []) if r["setup"] == CHAPTER_SETUP}
    if "scratch" in ours and "scratch" in chapter:
        lines.append(
            "from scratch LeNet (the chapter's code unchanged): "
            f"{ours['scratch']['epoch_s'] / chapter['scratch']['epoch_s']:.2f}x "
            "the time the chapter's code takes with MXNet's own set-up"
        )
    for row in results.get("memory", []):
        lines.append(
            f"{label(row['model'])} LeNet memory flat over {row['steps']} steps: "
            f"{row['growth_mb']:+.1f} MB, {'met' if row['flat'] else 'NOT met'}"
        )
    return lines


def epochs_table(rows: Sequence[Mapping]) -> str:
    """Epoch times of each model and set-up from this command: median, minimum, spread, ratios."""
    return keyed_table(
        rows,
        [
            ("model", "model", _label),
            ("set-up", "setup", ""),
            ("threads", "threads", ""),
            ("epoch s (median)", "epoch_s", ".1f"),
            ("min s", "epoch_min_s", ".1f"),
            ("spread", "epoch_spread", ".0%"),
            ("vs d2l pipeline", "vs_d2l", _ratio),
            ("vs PyTorch", "vs_torch", _ratio),
            ("vs nn.BatchNorm", "vs_gluon", _ratio),
            ("train loss", "loss", ".4f"),
            ("train acc", "train_acc", ".3f"),
            ("test acc", "test_acc", ".3f"),
        ],
    )


def _ratio(value) -> str:
    return "" if value is None else f"{value:.2f}"


def memory_table(rows: Sequence[Mapping]) -> str:
    """Resident memory over many training steps, per model."""
    return keyed_table(
        rows,
        [
            ("model", "model", label),
            ("steps", "steps", ""),
            ("MB at step " + str(rows[0]["from_step"]) if rows else "MB", "start_mb", ".0f"),
            ("MB at the end", "end_mb", ".0f"),
            ("MB at the peak", "peak_mb", ".0f"),
            ("growth MB", "growth_mb", "+.1f"),
            ("flat", "flat", lambda flat: "yes" if flat else "NO"),
        ],
    )


def profile_table(model: str, rows: Sequence[Mapping]) -> str:
    """The operators that take the most time in one training step of ``model``."""
    return markdown_table(
        ["operator (" + _label(model) + ")", "ms per step", "calls per step"],
        [[r["operator"][:70], f"{r['ms_per_step']:.2f}", f"{r['calls_per_step']:.0f}"] for r in rows],
    )


def run(config: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Run the requested sections; print tables; write bench.json and bench.md into ``config.out``."""
    config = config.resolved()
    if "," in config.ctx:
        raise UsageError(f"--ctx {config.ctx}: bench times one device; give one (cpu, gpu, auto or cpu:1)")
    ctx, out, extra, _ = prepare(config, log)
    threads = extra["environment"]["threads"]
    started = time.perf_counter()
    results: dict = {}
    sections = []
    if "layers" in config.sections:
        log("\n== BN layers ==")
        timed = dict.fromkeys([*names(benched=True), *config.models])  # the BN layers, and any other --models
        results["layers"] = time_bn_layers(
            {n: NORMS[n].layer for n in timed if NORMS[n].layer}, ctx=ctx, repeats=config.repeats
        )
        sections += [
            "## BN layers",
            f"Training mode at LeNet's BN shapes, {config.repeats} rounds interleaved layer "
            "by layer; medians, and ratios to nn.BatchNorm (the fused operator) in this run.",
            speed_table(results["layers"]),
        ]
    if "epochs" in config.sections:
        log("\n== one epoch of each LeNet ==")
        results["epochs"] = _epoch_rows(config, threads["operator_threads"], log)
        sections += [
            "## One epoch of each LeNet",
            f"Training on {config.num_train or 60000:,} images, then test "
            f"accuracy on {config.num_test or 10000:,}, batch {config.batch_size}, lr {config.lr:g}, timed as "
            f"the chapter times an epoch, each in a fresh process, {config.rounds} rounds interleaved; "
            "median, minimum and spread ((max - min) / median) over the rounds. "
            f"'{CHAPTER_SETUP}': every layer imperative, in-memory batches, MXNet's own thread set-up "
            f"(MXNet imported first); '{D2L_SETUP}': the same through d2l's DataLoader pipeline; "
            f"'{OURS_SETUP}': gluon-bn's set-up, Gluon layers compiled and {threads['operator_threads']} "
            "operator threads.",
            epochs_table(results["epochs"]),
        ]
    if "memory" in config.sections:
        log(f"\n== memory over {config.memory_steps} training steps ==")
        results["memory"] = _memory_rows(config, ctx, log)
        sections += [
            "## Memory",
            f"Resident memory of this process while each LeNet trains {config.memory_steps} "
            f"steps as gluon-bn trains it; 'flat' means it grew by less than {FLAT_MB:g} MB after the "
            "first steps.",
            memory_table(results["memory"]),
        ]
    if "profile" in config.sections:
        log("\n== profile ==")
        results["profile"] = _profiles(config, ctx, out, threads["operator_threads"])
        sections += [
            "## Where a training step's time goes",
            f"MXNet's and PyTorch's profilers over "
            f"{config.profile_steps} steps of batch {config.batch_size} (operators' own time; a compiled "
            "graph shows as fused entries).",
        ]
        sections += [profile_table(norm, rows) for norm, rows in results["profile"].items()]
    targets = _targets(results)
    env = extra["environment"]
    text = "\n\n".join(
        [
            f"# gluon-bn bench on {ctx}",
            f"{env['cpu']}, {threads['logical_cpus']} logical CPUs; "
            f"{env['platform']}; MXNet {env['packages']['mxnet']} with {threads['operator_threads']} operator "
            f"threads (chosen by {threads['chosen_by']}) and {threads['python_thread']} OpenMP thread(s) on "
            "the Python thread.",
            *sections,
            "## Targets",
            "\n".join(f"- {line}" for line in targets),
        ]
    )
    record_path, md_path = out / "bench.json", out / "bench.md"
    save_record(
        record_path,
        "bench",
        config.to_dict(),
        results,
        **extra,
        targets=targets,
        complete=True,
        wall_time=time.perf_counter() - started,
    )
    atomic_write_text(md_path, text + "\n")
    log("\n" + text)
    log(f"\nwrote {record_path} and {md_path}")
    return {"results": results, "targets": targets, "record": record_path, "markdown": md_path, "status": 0}
