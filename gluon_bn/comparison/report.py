"""The comparison's report: its tables, the agreements that must hold, and the Markdown of ``compare.md``."""

from __future__ import annotations

from typing import Mapping, Sequence

from ..norms import NORMS, label
from ..reports.tables import keyed_table, markdown_table, shape_text, speed_table
from ..runtime.devices import Contexts, as_list, describe

__all__ = [
    "checks_table",
    "compare_markdown",
    "devices_section",
    "differences_table",
    "drift_table",
    "failures",
    "histories_table",
    "layer_sections",
    "model_sections",
    "modes_table",
]


def checks_table(checks) -> str:
    """Agreement of each layer with the float64 reference, one row per quantity."""
    return markdown_table(
        ["layer", "input shape", "quantity", "max abs err", "max rel err", "tolerance (atol, rtol)", "result"],
        [
            [
                label(c.layer),
                shape_text(c.shape),
                c.quantity,
                f"{c.max_abs:.1e}",
                f"{c.max_rel:.1e}",
                f"{c.atol:g}, {c.rtol:g}",
                "pass" if c.passed else "**FAIL**",
            ]
            for c in checks
        ],
    )


def differences_table(differences) -> str:
    """Each known difference at the defaults and aligned, then its cause in words."""
    table = markdown_table(
        ["difference", "measured", "gap at defaults", "gap aligned", "tolerance", "shown", "closes", "result"],
        [
            [
                d.name,
                d.measured,
                f"{d.default_gap:.2e}",
                f"{d.aligned_gap:.2e}",
                f"{d.tolerance:g}",
                "yes" if d.visible else "no",
                "yes" if d.closes else "no",
                "as expected" if d.ok else "**UNEXPECTED**",
            ]
            for d in differences
        ],
    )
    return table + "\n\n" + "\n".join(f"- **{d.name}.** {d.explanation}" for d in differences)


def modes_table(modes) -> str:
    """Per autograd scope: which statistics each layer used and whether it updated them."""
    by_scope: dict[str, dict] = {}
    for row in modes:
        by_scope.setdefault(row.scope, {})[row.layer] = row
    rows = []
    for scope, layers in by_scope.items():
        cells = [f"{r.statistics} stats, {'updates' if r.updated else 'no update'}" for r in layers.values()]
        same = len({r.statistics for r in layers.values()}) == 1
        rows.append([f"`{scope}`", *cells, "yes" if same else "**NO**"])
    names = [label(n) for n in next(iter(by_scope.values()))]
    return markdown_table(["autograd scope", *names, "same statistics"], rows)


def histories_table(histories: Mapping[str, Sequence]) -> str:
    """Per-epoch loss / train / test accuracy of several models side by side."""
    names = list(histories)
    rows = []
    for epochs in zip(*(histories[n] for n in names)):
        cells = [f"{e.loss:.4f} / {e.train_acc:.3f} / {e.test_acc:.3f}" for e in epochs]
        rows.append([epochs[0].epoch, *cells])
    return markdown_table(["epoch", *(f"{label(n)}: loss / train / test" for n in names)], rows)


def drift_table(drift: Sequence[Mapping]) -> str:
    """``model_drift`` rows per epoch."""
    return keyed_table(
        drift,
        [
            ("epoch", "epoch", ""),
            ("weights rel diff", "param_rel_diff", ".2e"),
            ("weights max abs diff", "param_max_abs_diff", ".2e"),
            ("moving stats rel diff", "stats_rel_diff", ".2e"),
            ("test logits max abs diff", "logits_max_abs_diff", ".2e"),
            ("prediction agreement", "prediction_agreement", ".3f"),
        ],
    )


def layer_sections(checks, differences, modes, ctx) -> str:
    """The layer-level evidence: agreement table, differences with their causes, autograd scopes.

    Args:
        checks: the layer checks against the float64 reference (``check_layer``'s results).
        differences: the known differences, measured at the defaults and aligned.
        modes: per autograd scope and layer, which statistics it used and whether it updated them.
        ctx: the context the checks ran on, named in the first heading.
    """
    return "\n\n".join(
        [
            f"## Agreement with the float64 reference ({ctx})",
            "Each layer gets the same input, gamma and beta as a float64 NumPy version of the paper's "
            "formulas, starting from its own initial moving statistics: training output and gradients "
            "at step 1, moving statistics after the training steps (forward and backward), then the "
            "prediction output. A row passes when every element is within atol + rtol * |reference|; "
            "max rel err is max |error| / max |reference|.",
            checks_table(checks),
            "## Known differences, shown and then closed",
            "Each row first measures the gap with both layers at their defaults, then again with its one "
            "cause aligned. 'shown' says the gap exceeds the tolerance at defaults, 'closes' that it is "
            "within it once aligned.",
            differences_table(differences),
            "## Which statistics each autograd scope uses",
            "Both layers start from moving mean 0.5 and variance 2; the output tells which statistics "
            "normalised it, and the moving statistics afterwards whether they were updated.",
            modes_table(modes),
        ]
    )


def model_sections(histories: Mapping[str, Sequence], drift: Sequence[Mapping], speed: Sequence[Mapping]) -> str:
    """The model-level evidence (curves side by side, drift) and the layer speed table."""
    return "\n\n".join(
        [
            "## Two LeNets from the same start",
            "The Gluon LeNet gets the scratch LeNet's initial weights and both see the same batches. "
            "Epoch 0 is the shared start; the moving statistics differ there already (variance zeros vs "
            "ones), which is why the prediction-mode logits and predictions differ before any training. "
            "Relative differences are ||a - b|| / max(||a||, ||b||) over all learnable parameters, and "
            "over all moving statistics; logits and predictions are on the first 512 test images.",
            histories_table(histories),
            drift_table(drift),
            "## Speed of the two layers",
            "Median milliseconds at LeNet's BN shapes, training mode, ratios to nn.BatchNorm measured in "
            "the same run (a benchmark, not a test).",
            speed_table(speed),
        ]
    )


def devices_section(devices: Mapping, one_device: Mapping, contexts: Contexts) -> str:
    """Each BN kind on several devices: what it does with its statistics, how far they are, what they predict."""
    k = len(as_list(contexts))
    rows = []
    for norm, r in devices.items():
        acc = r["test_acc"]
        rows.append(
            [
                label(norm),
                NORMS[norm].mechanism,
                "; ".join(", ".join(f"{d:.1e}" for d in epoch) for epoch in r["stats_gap"]),
                "; ".join(", ".join(f"{d:.1e}" for d in epoch) for epoch in r["stats_distance"]),
                f"{r['history'][-1]['loss']:.4f}",
                f"{acc['as_evaluated']:.3f}",
                ", ".join(f"{a:.3f}" for a in acc.get("each_copy", [])) or "(one set)",
                f"{acc['mean_of_copies']:.3f}" if "mean_of_copies" in acc else "(one set)",
                f"{one_device[r['reference']].history[-1].test_acc:.3f} ({label(r['reference'])})",
            ]
        )
    return "\n\n".join(
        [
            f"## On {k} devices: {describe(contexts)}",
            "Each kind trains from the same start on the same batches as the one-device LeNets above, each "
            f"batch split {k} ways. Distances are ||copy - one device's|| / max of the two norms over all moving "
            "statistics, per copy, after each epoch (epochs separated by ';'). 'Mechanism' isolates what the layer "
            "does with its statistics: after each epoch, a copy of the model on the devices and one on one device, "
            "with the same weights and statistics, see the same training batches with the weights held. 'Run' "
            "compares with the one-device LeNet trained alongside; it includes training's drift, which at lr 1.0 "
            "grows from float rounding alone (the two one-device LeNets above drift as far). Test accuracy as the "
            "devices predict (each device its shard, with its own copy), with each copy on every device, and with "
            "the mean of the copies (what `save_parameters` writes), against the one-device LeNet's last epoch.",
            markdown_table(
                [
                    "BN",
                    "moving statistics on several devices",
                    "distance: mechanism",
                    "distance: run",
                    "last loss",
                    "test acc as evaluated",
                    "with each copy",
                    "with their mean",
                    "one device",
                ],
                rows,
            ),
        ]
    )


def failures(checks, differences, modes) -> list[str]:
    """Every agreement that should hold and did not, one line each."""
    lines = [
        f"{c.layer} {shape_text(c.shape)} {c.quantity}: max abs err {c.max_abs:.2e} over tolerance"
        for c in checks
        if not c.passed
    ]
    lines += [
        f"difference '{d.name}': "
        + (
            "does not close when aligned"
            if not d.closes
            else f"expected {'a' if d.expected_visible else 'no'} gap at defaults"
        )
        for d in differences
        if not d.ok
    ]
    scopes: dict[str, set] = {}
    for row in modes:
        scopes.setdefault(row.scope, set()).add(row.statistics)
    lines += [f"scope {scope}: the layers use different statistics" for scope, used in scopes.items() if len(used) > 1]
    return lines


def compare_markdown(
    layer_text: str, model_text: str, failed: Sequence[str], extra: Mapping, config: Mapping, images: Sequence[str]
) -> str:
    """The whole compare.md report.

    Args:
        layer_text: the layer-level sections (``layer_sections``).
        model_text: the model-level sections (``model_sections``, and the several-devices one if run).
        failed: the agreements that did not hold, one line each (``failures``); empty, all held.
        extra: the run's record extras; its ``"environment"`` (context, platform, CPU count, MXNet
            version) and ``"data"`` (the Fashion-MNIST release) go in the header.
        config: the run's settings as a dict; its ``"seed"`` and ``"epochs"`` go in the header.
        images: the plots' file names, linked at the end in this order.
    """
    env = extra["environment"]
    verdict = (
        "Every agreement that should hold holds."
        if not failed
        else "**Agreements that did not hold:**\n" + "\n".join(f"- {line}" for line in failed)
    )
    return (
        "\n\n".join(
            [
                "# From-scratch BatchNorm vs gluon.nn.BatchNorm",
                f"Run on {env['context']} ({env['platform']}, {env['cpu_count']} CPUs), MXNet "
                f"{env['packages']['mxnet']}, seed {config['seed']}, {config['epochs']} epochs, "
                f"Fashion-MNIST {extra['data']['release']} release.",
                verdict,
                layer_text,
                model_text,
                *(f"![{name}]({name})" for name in images),
            ]
        )
        + "\n"
    )
