"""Text reports: our numbers next to the chapter's, and the comparison with nn.BatchNorm."""
from __future__ import annotations

from typing import Mapping, Sequence

from .models import LABELS
from .training import history_rows

__all__ = ["chapter_table", "checks_table", "compare_markdown", "differences_table", "drift_table",
           "failures", "histories_table", "layer_sections", "markdown_table", "model_sections",
           "modes_table", "speed_table", "epochs_table", "memory_table", "profile_table"]


def chapter_table(histories: Mapping[str, Sequence], published: Mapping[str, Mapping[str, float]],
                  published_epoch: int) -> str:
    """A table of each model's epoch-``published_epoch`` numbers (or its last) beside the chapter's."""
    header = (f"{'model':<14}{'epoch':>6}{'loss':>9}{'train acc':>11}{'test acc':>10}   |"
              f"{'chapter loss':>14}{'train acc':>11}{'test acc':>10}   |{'Δ loss':>9}{'Δ train':>9}")
    lines = [header, "-" * len(header)]
    for name, history in histories.items():
        rows = history_rows(history)
        ours = next((r for r in rows if r["epoch"] == published_epoch), rows[-1])
        line = (f"{LABELS.get(name, name):<14}{ours['epoch']:>6}{ours['loss']:>9.4f}"
                f"{ours['train_acc']:>11.3f}{ours['test_acc']:>10.3f}   |")
        ref = published.get(name)
        if ref:
            line += (f"{ref['loss']:>14.4f}{ref['train_acc']:>11.3f}{ref['test_acc']:>10.3f}   |"
                     f"{ours['loss'] - ref['loss']:>+9.4f}{ours['train_acc'] - ref['train_acc']:>+9.3f}")
        lines.append(line)
    lines.append(f"chapter: its published GPU run, epoch {published_epoch}, lr 1.0, batch 256. "
                 "Test accuracy at lr 1.0 swings by several points between epochs and runs; "
                 "compare the training numbers.")
    return "\n".join(lines)


# -- gluon-bn compare -----------------------------------------------------------------------

def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def checks_table(checks) -> str:
    """Agreement of each layer with the float64 reference, one row per quantity."""
    return markdown_table(
        ["layer", "input shape", "quantity", "max abs err", "max rel err", "tolerance (atol, rtol)", "result"],
        [[LABELS.get(c.layer, c.layer), _shape(c.shape), c.quantity, f"{c.max_abs:.1e}", f"{c.max_rel:.1e}",
          f"{c.atol:g}, {c.rtol:g}", "pass" if c.passed else "**FAIL**"] for c in checks])


def differences_table(differences) -> str:
    """Each known difference at the defaults and aligned, then its cause in words."""
    table = markdown_table(
        ["difference", "measured", "gap at defaults", "gap aligned", "tolerance", "shown", "closes", "result"],
        [[d.name, d.measured, f"{d.default_gap:.2e}", f"{d.aligned_gap:.2e}", f"{d.tolerance:g}",
          "yes" if d.visible else "no", "yes" if d.closes else "no",
          "as expected" if d.ok else "**UNEXPECTED**"] for d in differences])
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
    names = [LABELS.get(n, n) for n in next(iter(by_scope.values()))]
    return markdown_table(["autograd scope", *names, "same statistics"], rows)


def layer_sections(checks, differences, modes, ctx) -> str:
    """The layer-level evidence: agreement table, differences with their causes, autograd scopes."""
    return "\n\n".join([
        f"## Agreement with the float64 reference ({ctx})",
        "Each layer gets the same input, gamma and beta as a float64 NumPy version of the paper's "
        "formulas, starting from its own initial moving statistics: training output and gradients "
        "at step 1, moving statistics after the training steps (forward and backward), then the "
        "prediction output. A row passes when every element is within atol + rtol * |reference|; "
        "max rel err is max |error| / max |reference|.", checks_table(checks),
        "## Known differences, shown and then closed",
        "Each row first measures the gap with both layers at their defaults, then again with its one "
        "cause aligned. 'shown' says the gap exceeds the tolerance at defaults, 'closes' that it is "
        "within it once aligned.", differences_table(differences),
        "## Which statistics each autograd scope uses",
        "Both layers start from moving mean 0.5 and variance 2; the output tells which statistics "
        "normalised it, and the moving statistics afterwards whether they were updated.", modes_table(modes)])


def model_sections(histories: Mapping[str, Sequence], drift: Sequence[Mapping], speed: Sequence[Mapping]) -> str:
    """The model-level evidence (curves side by side, drift) and the layer speed table."""
    return "\n\n".join([
        "## Two LeNets from the same start",
        "The Gluon LeNet gets the scratch LeNet's initial weights and both see the same batches. "
        "Epoch 0 is the shared start; the moving statistics differ there already (variance zeros vs "
        "ones), which is why the prediction-mode logits and predictions differ before any training. "
        "Relative differences are ||a - b|| / max(||a||, ||b||) over all learnable parameters, and "
        "over all moving statistics; logits and predictions are on the first 512 test images.",
        histories_table(histories), drift_table(drift),
        "## Speed of the two layers",
        "Median milliseconds at LeNet's BN shapes, training mode, ratios to nn.BatchNorm measured in "
        "the same run (a benchmark, not a test).", speed_table(speed)])


def speed_table(rows: Sequence[Mapping]) -> str:
    """BN layer timings from ``bench.time_bn_layers`` with their ratios to the baseline."""
    return markdown_table(
        ["input shape", "layer", "forward ms", "backward ms", "fwd+bwd ms", "forward ratio", "backward ratio",
         "fwd+bwd ratio"],
        [[_shape(r["shape"]), LABELS.get(r["layer"], r["layer"]), f"{r['forward_ms']:.2f}", f"{r['backward_ms']:.2f}",
          f"{r['forward_backward_ms']:.2f}", f"{r['forward_ratio']:.2f}", f"{r['backward_ratio']:.2f}",
          f"{r['forward_backward_ratio']:.2f}"] for r in rows])


def epochs_table(rows: Sequence[Mapping]) -> str:
    """Epoch times of each model and set-up from ``gluon-bn bench``."""
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


def histories_table(histories: Mapping[str, Sequence]) -> str:
    """Per-epoch loss / train / test accuracy of several models side by side."""
    names = list(histories)
    rows = []
    for epochs in zip(*(histories[n] for n in names)):
        cells = [f"{e.loss:.4f} / {e.train_acc:.3f} / {e.test_acc:.3f}" for e in epochs]
        rows.append([epochs[0].epoch, *cells])
    return markdown_table(["epoch", *(f"{LABELS.get(n, n)}: loss / train / test" for n in names)], rows)


def drift_table(drift: Sequence[Mapping]) -> str:
    """``model_drift`` rows per epoch."""
    return markdown_table(
        ["epoch", "weights rel diff", "weights max abs diff", "moving stats rel diff",
         "test logits max abs diff", "prediction agreement"],
        [[d["epoch"], f"{d['param_rel_diff']:.2e}", f"{d['param_max_abs_diff']:.2e}", f"{d['stats_rel_diff']:.2e}",
          f"{d['logits_max_abs_diff']:.2e}", f"{d['prediction_agreement']:.3f}"] for d in drift])


def failures(checks, differences, modes) -> list[str]:
    """Every agreement that should hold and did not, one line each."""
    lines = [f"{c.layer} {_shape(c.shape)} {c.quantity}: max abs err {c.max_abs:.2e} over tolerance"
             for c in checks if not c.passed]
    lines += [f"difference '{d.name}': " + ("does not close when aligned" if not d.closes else
                                            f"expected {'a' if d.expected_visible else 'no'} gap at defaults")
              for d in differences if not d.ok]
    scopes: dict[str, set] = {}
    for row in modes:
        scopes.setdefault(row.scope, set()).add(row.statistics)
    lines += [f"scope {scope}: the layers use different statistics" for scope, used in scopes.items()
              if len(used) > 1]
    return lines


def compare_markdown(layer_text: str, model_text: str, failed: Sequence[str], extra: Mapping,
                     config: Mapping, images: Sequence[str]) -> str:
    """The whole compare.md report."""
    env = extra["environment"]
    verdict = ("Every agreement that should hold holds." if not failed else
               "**Agreements that did not hold:**\n" + "\n".join(f"- {line}" for line in failed))
    return "\n\n".join([
        "# From-scratch BatchNorm vs gluon.nn.BatchNorm",
        f"Run on {env['context']} ({env['platform']}, {env['cpu_count']} CPUs), MXNet "
        f"{env['packages']['mxnet']}, seed {config['seed']}, {config['epochs']} epochs, "
        f"Fashion-MNIST {extra['data']['release']} release.",
        verdict, layer_text, model_text, *(f"![{name}]({name})" for name in images)]) + "\n"
