"""``gluon-bn compare``: the from-scratch BatchNorm side by side with ``nn.BatchNorm``, every difference explained.

Options and config in (the config is the library's ``CompareConfig``, which the notebooks use too);
tables on the terminal, ``compare.md`` (the report), ``compare.json`` (the record), two plots and the
exit status out: 1 when an agreement that should hold does not. The evidence comes from
:mod:`gluon_bn.comparison`: the layer checks, the two LeNets in lockstep, and the report with its judgement.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import matplotlib.pyplot as plt

from ..comparison.checks import COMPARED, check_layer
from ..comparison.differences import known_differences, mode_table
from ..comparison.lenets import CHECK_SHAPES, CompareConfig, compare_devices, compare_models
from ..comparison.report import compare_markdown, devices_section, failures, layer_sections, model_sections
from ..norms import NORMS
from ..performance.measurements import time_bn_layers
from ..reliability.files import atomic_write_text
from ..reliability.record import save_record
from ..reports.plots import plot_drift, plot_histories
from ..runs.arguments import config_from, count_option, run_arguments
from ..runs.prepare import prepare
from ..runtime.devices import as_list

__all__ = ["CompareConfig", "add_arguments", "config", "run"]


HELP = "the from-scratch BatchNorm side by side with nn.BatchNorm, every difference explained"
DESCRIPTION = (
    "Hold both BN layers to a float64 reference, show each known difference at the "
    "defaults and closed once its cause is aligned, tabulate which statistics each "
    "autograd scope uses, train both LeNets from the same start and measure their "
    "drift, and time both layers. Prints the tables; writes compare.md, compare.json "
    "and PNG plots into --out. Exit status 1 when an agreement that should hold does not."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gluon-bn compare`` options."""
    defaults = CompareConfig()
    run_arguments(parser, defaults)
    count_option(parser, "steps", defaults, "training steps before the moving statistics are checked")
    count_option(parser, "speed-repeats", defaults, "timed repetitions per layer and shape")


def config(args: argparse.Namespace) -> CompareConfig:
    """The options as a config."""
    return config_from(CompareConfig, args)


def run(config: CompareConfig, log: Callable[[str], None] = print) -> dict:
    """Run every comparison, print its tables, write compare.md, compare.json and plots."""
    config = config.resolved()
    contexts, out, extra, _ = prepare(config, log)
    ctx = as_list(contexts)[0]  # layer checks, and the one-device LeNets every device count is held against
    started = time.perf_counter()
    layers = {name: NORMS[name].layer for name in COMPARED}
    checks = [
        c
        for name, factory in layers.items()
        for shape in CHECK_SHAPES
        for c in check_layer(factory, shape, name, steps=config.steps, ctx=ctx, seed=config.seed)
    ]
    differences = known_differences(ctx, seed=config.seed)
    modes = mode_table(ctx, seed=config.seed)
    layer_text = layer_sections(checks, differences, modes, ctx)
    log("\n" + layer_text)
    models = compare_models(config, ctx, log)
    speed = time_bn_layers(layers, ctx=ctx, repeats=config.speed_repeats)
    curves, drift_png = out / "compare_curves.png", out / "compare_drift.png"
    histories = {name: run.history for name, run in models["runs"].items()}
    plt.close(plot_histories(histories, curves, title=f"scratch vs nn.BatchNorm LeNet from the same start, {ctx}"))
    plt.close(plot_drift(models["drift"], drift_png))
    model_text = model_sections(histories, models["drift"], speed)
    devices = None
    if len(as_list(contexts)) > 1:
        devices = compare_devices(config, contexts, models["start"], models["stats"], log)
        model_text += "\n\n" + devices_section(devices, models["runs"], contexts)
    log("\n" + model_text)
    failed = failures(checks, differences, modes)
    text = compare_markdown(layer_text, model_text, failed, extra, config.to_dict(), [curves.name, drift_png.name])
    atomic_write_text(out / "compare.md", text)
    save_record(
        out / "compare.json",
        "compare",
        config.to_dict(),
        {
            "checks": [c.to_dict() for c in checks],
            "differences": [d.to_dict() for d in differences],
            "modes": [m.to_dict() for m in modes],
            "models": {name: run.to_dict() for name, run in models["runs"].items()},
            "drift": models["drift"],
            "speed": speed,
            "devices": devices,
        },
        **extra,
        failures=failed,
        complete=True,
        wall_time=time.perf_counter() - started,
    )
    log(f"\nwrote {out / 'compare.md'}, {out / 'compare.json'}, {curves} and {drift_png}")
    if failed:
        print(f"gluon-bn: compare: {len(failed)} agreement(s) did not hold: " + "; ".join(failed), file=sys.stderr)
    return {
        "record": out / "compare.json",
        "status": 1 if failed else 0,
        "failures": failed,
        "checks": checks,
        "differences": differences,
        "modes": modes,
        "drift": models["drift"],
        "speed": speed,
        "out": out,
    }


# -- the report ---------------------------------------------------------------------------
