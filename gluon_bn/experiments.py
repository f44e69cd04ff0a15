"""Experiment configurations and runs: config in, trained models' record and plot out."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import gluon, init

from . import faults, report
from .bench import time_bn_layers
from .bnstate import bn_layers
from .checkpoint import Checkpointer
from .comparison import (LAYERS, check_layer, copy_parameters, copy_state, known_differences,
                         mode_table, model_drift)
from .data import load_data_fashion_mnist, read_fashion_mnist
from .errors import Diverged, Interrupted, TrainingInterrupted, UsageError
from .files import atomic_write_text, check_writable_dir
from .models import LABELS, NORMS, lenet
from .plots import plot_drift, plot_exercise, plot_histories
from .exercises import EXERCISES, summarize, summary_table, variant_config
from .record import environment, load_record, save_record
from .report import chapter_table
from .runtime import compile_net, set_threads
from .training import Epoch, history_rows, train_ch5, try_gpu

__all__ = ["CHAPTER", "CONTEXTS", "CompareConfig", "ModelRun", "ReproduceConfig", "RunConfig",
           "ExerciseConfig", "compare", "compare_models", "quick_mode", "reproduce", "resolve_context",
           "run_exercise", "train_model"]

#: The chapter's published run (GPU, lr 1.0, batch 256), epoch 5.
CHAPTER = {
    "scratch": {"loss": 0.3051, "train_acc": 0.890, "test_acc": 0.870},
    "gluon": {"loss": 0.3071, "train_acc": 0.889, "test_acc": 0.881},
}
CHAPTER_EPOCH = 5
CONTEXTS = ("cpu", "gpu", "auto")
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class RunConfig:
    """Settings every training command shares; the chapter's by default."""

    epochs: int = 5
    lr: float = 1.0
    batch_size: int = 256
    ctx: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    out: str = "results"
    num_train: int | None = None
    num_test: int | None = None
    hybridize: bool = True      # compile the model's Gluon layers (same numbers, faster)
    threads: int | None = None  # MXNet's CPU operator threads; None = MXNet's default

    def validate(self) -> "RunConfig":
        """Raise UsageError naming the first setting that cannot work."""
        for name in ("epochs", "batch_size", "num_train", "num_test", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not 0 < self.lr <= FLOAT32_MAX:
            raise UsageError(f"lr must be positive and at most {FLOAT32_MAX:.3g} (MXNet passes it to "
                             f"its optimizer as float32), got {self.lr!r}")
        if self.ctx not in CONTEXTS:
            raise UsageError(f"unknown context {self.ctx!r}: choose from {', '.join(CONTEXTS)}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReproduceConfig(RunConfig):
    """``gluon-bn reproduce``: the chapter's two BN LeNets with its settings."""

    models: tuple[str, ...] = ("scratch", "gluon")
    resume: bool = False

    def validate(self) -> "ReproduceConfig":
        if not self.models:
            raise UsageError("no model to train: name at least one of " + ", ".join(NORMS))
        for norm in self.models:
            if norm not in NORMS:
                raise UsageError(f"unknown model {norm!r}: choose from {', '.join(NORMS)}")
        super().validate()
        return self


#: Set to 1 to run notebooks (and anything that asks ``quick_mode``) on a small real subset.
QUICK_ENV = "GLUON_BN_QUICK"
QUICK = {"epochs": 1, "num_train": 2048, "num_test": 1000}


def quick_mode(config: RunConfig) -> RunConfig:
    """``config`` shrunk to a small real subset when ``$GLUON_BN_QUICK`` is 1, else unchanged."""
    if os.environ.get(QUICK_ENV) != "1":
        return config
    extra = {"speed_repeats": 2} if hasattr(config, "speed_repeats") else {}
    return replace(config, **QUICK, **extra)


def resolve_context(name: str) -> mx.Context:
    """'cpu', 'gpu' (must exist) or 'auto' (a GPU when MXNet sees one) to an MXNet context."""
    if name == "cpu":
        return mx.cpu()
    if name == "gpu":
        if mx.context.num_gpus() == 0:
            raise UsageError("--ctx gpu: MXNet sees no GPU (this mxnet build or machine has none); "
                             "install a CUDA build such as mxnet-cu112 on a GPU machine, or use --ctx cpu")
        return mx.gpu(0)
    if name == "auto":
        return try_gpu()
    raise UsageError(f"unknown context {name!r}: choose from {', '.join(CONTEXTS)}")


@dataclass
class ModelRun:
    """One trained model: its per-epoch history and the first BN layer's gamma and beta."""

    name: str
    history: list[Epoch]
    gamma: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    wall_time: float = 0.0

    def to_dict(self) -> dict:
        return {"history": history_rows(self.history),
                "first_bn": {"gamma": self.gamma, "beta": self.beta},
                "wall_time": self.wall_time}


def seed_everything(seed: int) -> None:
    """Seed MXNet's and NumPy's generators so a CPU run repeats its numbers."""
    mx.random.seed(seed)
    np.random.seed(seed)


def build_model(norm: str, ctx: mx.Context, **options) -> gluon.Block:
    """The chapter's LeNet with ``norm`` (and ``lenet`` options), Xavier-initialised on ``ctx``."""
    net = lenet(norm, **options)
    net.initialize(ctx=ctx, init=init.Xavier())
    return net


#: Settings a checkpoint must share with the run that resumes it.
RESUME_KEYS = ("lr", "batch_size", "seed", "num_train", "num_test")


@contextlib.contextmanager
def stop_on_sigint():
    """Turn Ctrl-C into a flag that training checks at the next batch boundary."""
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, lambda *_: requested.append(True))
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def train_model(norm: str, config: RunConfig, ctx: mx.Context, log: Callable[[str], None] = print,
                net: gluon.Block | None = None,
                on_epoch_end: Callable[[Epoch, gluon.Block], None] | None = None,
                checkpoints: Path | None = None, resume: bool = False, extras: dict | None = None) -> ModelRun:
    """Train one LeNet exactly as the chapter does (a fresh seeded one unless ``net`` is given).

    The batch order depends only on ``config.seed``, so models trained with one config see
    the same batches. With ``checkpoints`` the state is saved after every epoch and on
    Ctrl-C (at the next batch boundary); with ``resume`` training continues from there.
    ``extras``, a dict the caller fills per epoch, is saved and restored with the checkpoint.
    A ``Diverged`` error carries the history so far as ``.history``.
    """
    start = time.perf_counter()
    if net is None:
        seed_everything(config.seed)
        net = build_model(norm, ctx)
    train_iter, test_iter = load_data_fashion_mnist(
        config.batch_size, root=config.data_dir, seed=config.seed,
        num_train=config.num_train, num_test=config.num_test)
    if config.hybridize:
        compile_net(net)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': config.lr})
    ckpt = Checkpointer(checkpoints) if checkpoints is not None else None
    history: list[Epoch] = []
    start_epoch, start_metric = 0, None
    if ckpt is not None and resume and ckpt.exists():
        _check_resumable(ckpt, config)
        net(next(iter(test_iter))[0].as_in_context(ctx))  # complete deferred shapes before loading
        meta = ckpt.load(net, trainer, ctx)
        train_iter.restore(meta["loader"])
        history = [Epoch(**e) for e in meta["history"]]
        if extras is not None:
            extras.update(meta.get("extras") or {})
        start_epoch, start_metric = meta["epochs_done"], meta.get("partial")
        log(f"resuming from {ckpt.directory} after epoch {start_epoch}"
            + (f" and {int(start_metric[2])} examples of epoch {start_epoch + 1}" if start_metric else ""))
        for e in history:
            log(e.line())

    def save(epochs_done: int, partial: list[float] | None = None) -> None:
        ckpt.save(net, trainer, {"model": norm, "settings": {k: getattr(config, k) for k in RESUME_KEYS},
                                 "epochs_done": epochs_done, "partial": partial,
                                 "history": history_rows(history), "loader": train_iter.state(),
                                 "extras": extras})

    def epoch_end(epoch: Epoch, trained: gluon.Block) -> None:
        history.append(epoch)
        if on_epoch_end is not None:
            on_epoch_end(epoch, trained)  # first, so the checkpoint holds this epoch's extras
        if ckpt is not None:
            save(epoch.epoch)

    with stop_on_sigint() if ckpt is not None else contextlib.nullcontext(lambda: False) as interrupted:
        def should_stop(epoch: int, batch: int) -> bool:
            faults.reached("batch", model=norm, epoch=epoch, batch=batch)
            return interrupted()

        try:
            train_ch5(net, train_iter, test_iter, config.batch_size, trainer, ctx, config.epochs, log=log,
                      on_epoch_end=epoch_end, start_epoch=start_epoch, start_metric=start_metric,
                      should_stop=should_stop)
        except Diverged as exc:
            exc.history = history
            raise
        except TrainingInterrupted as exc:
            save(exc.epoch, exc.metric)
            raise Interrupted(f"interrupted during epoch {exc.epoch + 1} of {LABELS[norm]}; its state is "
                              f"saved in {ckpt.directory}: run the same command with --resume to "
                              "continue") from None
    run = ModelRun(norm, history, wall_time=time.perf_counter() - start)
    first_bn = bn_layers(net)[:1]  # net[1] in the chapter's LeNet
    if first_bn:
        run.gamma = first_bn[0].gamma.data().reshape((-1,)).asnumpy().tolist()
        run.beta = first_bn[0].beta.data().reshape((-1,)).asnumpy().tolist()
    return run


def _check_resumable(ckpt: Checkpointer, config: RunConfig) -> None:
    """Refuse to continue a checkpoint made with other settings."""
    saved = ckpt.meta()["settings"]
    differ = [f"--{k.replace('_', '-')} {_flag_value(saved[k])} (now {_flag_value(getattr(config, k))})"
              for k in RESUME_KEYS if saved[k] != getattr(config, k)]
    if differ:
        raise UsageError(f"--resume: the checkpoint in {ckpt.directory} was made with " + ", ".join(differ)
                         + "; rerun with those settings, or without --resume (or another --out) to start afresh")


def _flag_value(value) -> str:
    """A setting as the command line shows it (an unset subset is the whole split)."""
    return "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def prepare(config: RunConfig, log: Callable[[str], None] = print):
    """Check everything a run needs before any training: settings, context, --out, data."""
    config.validate()
    ctx = resolve_context(config.ctx)
    out = Path(config.out)
    try:
        check_writable_dir(out)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror}); "
                         "choose a writable folder") from None
    data = read_fashion_mnist(config.data_dir)
    log(f"Fashion-MNIST ({data.release} release) from {data.directory}")
    threads = set_threads(config.threads)
    extra = {"environment": {**environment(ctx), "mxnet_cpu_threads": threads},
             "data": {"directory": str(data.directory), "release": data.release}}
    return ctx, out, extra


def reproduce(config: ReproduceConfig, log: Callable[[str], None] = print) -> dict:
    """Train each configured model, print the chapter's lines, write record and plot."""
    ctx, out, extra = prepare(config, log)
    extra["chapter"] = {"epoch": CHAPTER_EPOCH, "results": CHAPTER}
    started = time.perf_counter()
    runs: dict[str, ModelRun] = {}
    record_path, plot_path = out / "reproduce.json", out / "reproduce.png"
    def write_record(**status) -> None:
        save_record(record_path, "reproduce", config.to_dict(), {name: r.to_dict() for name, r in runs.items()},
                    **extra, complete=len(runs) == len(config.models), **status,
                    wall_time=time.perf_counter() - started)

    for norm in config.models:
        log(f"\n== {LABELS[norm]} LeNet ==")
        try:
            run = runs[norm] = train_model(norm, config, ctx, log, checkpoints=out / "checkpoints" / norm,
                                           resume=config.resume)
        except Diverged as exc:
            write_record(diverged={"model": norm, "epoch": exc.epoch, "batch": exc.batch, "loss": str(exc.loss)})
            raise
        except Interrupted:
            write_record(interrupted=norm)
            raise
        if run.gamma:
            log(f"first BN layer (net[1]) gamma: {np.array2string(np.array(run.gamma), precision=4)}")
            log(f"first BN layer (net[1]) beta:  {np.array2string(np.array(run.beta), precision=4)}")
        write_record()
    plot_histories({name: r.history for name, r in runs.items()}, plot_path, reference=CHAPTER,
                   reference_epoch=CHAPTER_EPOCH,
                   title=f"LeNet on Fashion-MNIST, lr {config.lr}, batch {config.batch_size}, {ctx}")
    log("\n" + chapter_table({name: r.history for name, r in runs.items()}, CHAPTER, CHAPTER_EPOCH))
    log(f"\nwrote {record_path} and {plot_path}")
    return {"record": record_path, "plot": plot_path, "runs": runs}


@dataclass
class CompareConfig(RunConfig):
    """``gluon-bn compare``: layer checks, known differences, two LeNets in lockstep, speed."""

    epochs: int = 3
    steps: int = 3
    speed_repeats: int = 10
    layers: dict = field(default_factory=lambda: dict(LAYERS))

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "layers"} | {"layers": list(self.layers)}


#: Shapes the layer checks run at: LeNet's first conv and first dense BN, and a small batch
#: where the variance estimator and reduction axes matter most.
CHECK_SHAPES = ((256, 6, 24, 24), (256, 120), (8, 3, 2, 2))


def compare_models(config: CompareConfig, ctx: mx.Context, log: Callable[[str], None] = print) -> dict:
    """Train the scratch and the Gluon LeNet from the same weights on the same batches.

    Returns both histories and, per epoch (0 = the shared start), how far the two models
    have drifted apart: weights, moving statistics, logits and predictions on a test probe.
    """
    seed_everything(config.seed)
    nets = {norm: build_model(norm, ctx) for norm in ("scratch", "gluon")}
    _, test_iter = load_data_fashion_mnist(512, root=config.data_dir, num_test=512)
    probe = next(iter(test_iter))[0].as_in_context(ctx)
    for net in nets.values():
        net(probe)  # completes Gluon's deferred init; prediction mode changes no statistics
    copy_parameters(nets["scratch"], nets["gluon"])
    snapshots = [build_model("scratch", ctx)]  # the scratch model after each epoch
    snapshots[0](probe)
    copy_state(nets["scratch"], snapshots[0])
    drift = [{"epoch": 0, **model_drift(nets["scratch"], nets["gluon"], probe)}]

    def snapshot(epoch: Epoch, net: gluon.Block) -> None:
        copy = build_model("scratch", ctx)
        copy(probe)
        copy_state(net, copy)
        snapshots.append(copy)

    def measure(epoch: Epoch, net: gluon.Block) -> None:
        drift.append({"epoch": epoch.epoch, **model_drift(snapshots[epoch.epoch], net, probe)})

    runs = {}
    for norm, callback in (("scratch", snapshot), ("gluon", measure)):
        log(f"\n== {LABELS[norm]} LeNet (shared start) ==")
        runs[norm] = train_model(norm, config, ctx, log, net=nets[norm], on_epoch_end=callback)
    return {"runs": runs, "drift": drift}


def compare(config: CompareConfig, log: Callable[[str], None] = print) -> dict:
    """Run every comparison, print its tables, write compare.md, compare.json and plots."""
    ctx, out, extra = prepare(config, log)
    started = time.perf_counter()
    checks = [c for name, factory in config.layers.items() for shape in CHECK_SHAPES
              for c in check_layer(factory, shape, name, steps=config.steps, ctx=ctx, seed=config.seed)]
    differences = known_differences(ctx, seed=config.seed)
    modes = mode_table(ctx, seed=config.seed)
    layer_text = report.layer_sections(checks, differences, modes, ctx)
    log("\n" + layer_text)
    models = compare_models(config, ctx, log)
    speed = time_bn_layers(config.layers, ctx=ctx, repeats=config.speed_repeats)
    curves, drift_png = out / "compare_curves.png", out / "compare_drift.png"
    histories = {name: run.history for name, run in models["runs"].items()}
    plot_histories(histories, curves, title=f"scratch vs nn.BatchNorm LeNet from the same start, {ctx}")
    plot_drift(models["drift"], drift_png)
    model_text = report.model_sections(histories, models["drift"], speed)
    log("\n" + model_text)
    failures = report.failures(checks, differences, modes)
    text = report.compare_markdown(layer_text, model_text, failures, extra, config.to_dict(),
                                   [curves.name, drift_png.name])
    atomic_write_text(out / "compare.md", text)
    save_record(out / "compare.json", "compare", config.to_dict(),
                {"checks": [c.to_dict() for c in checks], "differences": [d.to_dict() for d in differences],
                 "modes": [m.to_dict() for m in modes],
                 "models": {name: run.to_dict() for name, run in models["runs"].items()},
                 "drift": models["drift"], "speed": speed},
                **extra, failures=failures, wall_time=time.perf_counter() - started)
    log(f"\nwrote {out / 'compare.md'}, {out / 'compare.json'}, {curves} and {drift_png}")
    return {"failures": failures, "checks": checks, "differences": differences, "modes": modes,
            "drift": models["drift"], "speed": speed, "out": out}


@dataclass
class ExerciseConfig(RunConfig):
    """``gluon-bn exercise NAME``: one of the chapter's exercises over several seeds."""

    name: str = "no-bias"
    epochs: int | None = None  # None: the exercise's own default
    seeds: int = 3
    quick: bool = False
    resume: bool = False
    precise_batches: int = 100

    def validate(self) -> "ExerciseConfig":
        if self.name not in EXERCISES:
            raise UsageError(f"unknown exercise {self.name!r}: choose from {', '.join(EXERCISES)}")
        if not isinstance(self.seeds, int) or self.seeds <= 0:
            raise UsageError(f"seeds must be a positive integer, got {self.seeds!r}")
        super().validate()
        return self


#: What --quick shrinks an exercise to: seconds on a small real subset.
QUICK_EXERCISE = {"epochs": 1, "num_train": 1024, "num_test": 500, "seeds": 2, "precise_batches": 4}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")


def run_exercise(config: ExerciseConfig, log: Callable[[str], None] = print) -> dict:
    """Run one exercise: every variant for every seed, then its table, conclusion and plot.

    The record is rewritten after every run, so an interrupted exercise keeps what it did;
    with ``resume`` the finished runs are kept and an unfinished one continues from its
    last checkpoint.
    """
    config.validate()
    exercise = EXERCISES[config.name]
    if config.quick:
        config = replace(config, **QUICK_EXERCISE)
    config = replace(config, epochs=config.epochs or exercise.epochs)
    ctx, out, extra = prepare(config, log)
    stem = out / f"exercise-{exercise.name}"
    record_path = stem.with_suffix(".json")
    done = {}
    if config.resume and record_path.exists():
        done = {(r["variant"], r["seed"]): r for r in load_record(record_path)["results"]["runs"]}
    started = time.perf_counter()
    runs: list[dict] = []
    log(f"exercise {exercise.name}: {exercise.question}")
    for variant in exercise.variants(config):
        for seed in range(config.seed, config.seed + config.seeds):
            if (variant.name, seed) in done:
                runs.append(done[(variant.name, seed)])
                continue
            vc = variant_config(config, variant, seed)
            log(f"\n== {variant.name}, seed {seed} ==")
            seed_everything(seed)
            net = build_model(variant.norm, ctx, **variant.options)
            extras: dict = {}

            def on_epoch(epoch: Epoch, trained: gluon.Block) -> None:
                if exercise.on_epoch is not None:
                    for key, value in exercise.on_epoch(epoch, trained, vc, ctx).items():
                        extras.setdefault("per_epoch", {}).setdefault(key, []).append(value)

            entry = {"variant": variant.name, "group": variant.group, "seed": seed, "lr": vc.lr}
            try:
                run = train_model(variant.norm, vc, ctx, log, net=net, on_epoch_end=on_epoch, extras=extras,
                                  checkpoints=out / "checkpoints" / stem.name / f"{_slug(variant.name)}-seed{seed}",
                                  resume=config.resume)
                if exercise.measure is not None:
                    extras.update(exercise.measure(net, vc, ctx))
                entry.update(status="trained", history=history_rows(run.history))
            except Diverged as exc:
                log(f"diverged: {exc}")
                entry.update(status="diverged", history=history_rows(exc.history),
                             diverged={"epoch": exc.epoch, "batch": exc.batch, "loss": str(exc.loss)})
            runs.append({**entry, "extras": extras})
            save_record(record_path, "exercise", config.to_dict(), {"runs": runs}, **extra, complete=False,
                        wall_time=time.perf_counter() - started)
    summary = summarize(runs)
    conclusion = exercise.conclude(summary, runs)
    table = summary_table(summary)
    details = exercise.details(runs) if exercise.details else ""
    plot_exercise(summary, runs, stem.with_suffix(".png"), x_axis=exercise.x_axis,
                  title=f"exercise {exercise.name}: {config.epochs} epochs, {config.seeds} seeds, {ctx}")
    text = "\n\n".join(part for part in (
        f"# Exercise `{exercise.name}`", f"*{exercise.question}*",
        f"{config.epochs} epochs per run, seeds {config.seed}..{config.seed + config.seeds - 1}, lr {config.lr:g} "
        f"unless the row says otherwise, batch {config.batch_size}, on {ctx}"
        + (f", first {config.num_train} training and {config.num_test} test images" if config.num_train else "")
        + ". Numbers are the last epoch's, mean ± std over seeds.", table, details,
        f"**Conclusion (from this run's numbers).** {conclusion}", f"![plot]({stem.name}.png)") if part)
    atomic_write_text(stem.with_suffix(".md"), text + "\n")
    save_record(record_path, "exercise", config.to_dict(), {"runs": runs, "summary": summary,
                                                            "conclusion": conclusion},
                **extra, complete=True, wall_time=time.perf_counter() - started)
    log("\n" + table + ("\n\n" + details if details else "") + "\n\nConclusion: " + conclusion)
    log(f"\nwrote {record_path}, {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")
    return {"summary": summary, "runs": runs, "conclusion": conclusion, "record": record_path,
            "markdown": text, "plot": stem.with_suffix(".png")}
