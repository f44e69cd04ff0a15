"""The two LeNets of the comparison: the scratch and the Gluon one trained in lockstep from one start,
and each BN kind on several devices held against them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping

import mxnet as mx
from mxnet import gluon

from ..chapter.training import Epoch, history_rows
from ..models import seeded_lenet
from ..norms import NORMS, label
from ..norms.bnstate import stat_copies
from ..runs.loop import OnEpochEnd
from ..runs.settings import TrainConfig
from ..runs.supervised import train_model
from ..runtime.devices import Contexts, as_list, describe, forward_shards, split_batch
from .checks import COMPARED
from .device_stats import accuracy_per_copy, statistics_gap, stats_distance
from .drift import copy_parameters, copy_state, model_drift

__all__ = ["CHECK_SHAPES", "CompareConfig", "compare_devices", "compare_models"]


@dataclass
class CompareConfig(TrainConfig):
    """Layer checks, known differences, two LeNets in lockstep, speed."""

    epochs: int = 3
    steps: int = 3
    speed_repeats: int = 10
    gap_batches: int = 20  # several devices: batches of the statistics-only comparison after each epoch

    QUICK: ClassVar[dict] = {**TrainConfig.QUICK, "speed_repeats": 2, "gap_batches": 4}
    POSITIVE: ClassVar[tuple[str, ...]] = (*TrainConfig.POSITIVE, "steps", "speed_repeats", "gap_batches")


#: Shapes the layer checks run at: LeNet's first conv and first dense BN, and a small batch
#: where the variance estimator and reduction axes matter most.
CHECK_SHAPES = ((256, 6, 24, 24), (256, 120), (8, 3, 2, 2))


def compare_models(config: CompareConfig, ctx: mx.Context, log: Callable[[str], None] = print) -> dict:
    """Train the scratch and the Gluon LeNet from the same weights on the same batches.

    Returns both histories and, per epoch (0 = the shared start), how far the two models
    have drifted apart: weights, moving statistics, logits and predictions on a test probe;
    also the shared start and each model's moving statistics after every epoch.
    """
    first, second = COMPARED
    nets = {first: seeded_lenet(first, ctx, config.seed), second: seeded_lenet(second, ctx, seed=None)}
    _, test_iter = config.loaders(batch_size=512, seed=None, num_train=None, num_test=512)
    probe = next(iter(test_iter))[0].as_in_context(ctx)
    for net in nets.values():
        net(probe)  # completes Gluon's deferred init; prediction mode changes no statistics
    copy_parameters(nets[first], nets[second])
    snapshots = [seeded_lenet(first, ctx, seed=None)]  # the first model after each epoch
    snapshots[0](probe)
    copy_state(nets[first], snapshots[0])
    drift = [{"epoch": 0, **model_drift(nets[first], nets[second], probe)}]

    def snapshot(epoch: Epoch, net: gluon.Block) -> None:
        copy = seeded_lenet(first, ctx, seed=None)
        copy(probe)
        copy_state(net, copy)
        snapshots.append(copy)

    def measure(epoch: Epoch, net: gluon.Block) -> None:
        drift.append({"epoch": epoch.epoch, **model_drift(snapshots[epoch.epoch], net, probe)})

    runs, stats = {}, {first: [], second: []}
    for norm, callback in ((first, snapshot), (second, measure)):
        log(f"\n== {label(norm)} LeNet (shared start) ==")
        keep_stats = OnEpochEnd(lambda _, net, mine=stats[norm]: mine.append(stat_copies(net)[0]))
        runs[norm] = train_model(norm, config, ctx, log, net=nets[norm], callbacks=[OnEpochEnd(callback), keep_stats])
    return {"runs": runs, "drift": drift, "start": snapshots[0], "stats": stats}


def compare_devices(
    config: CompareConfig,
    contexts: Contexts,
    start: gluon.Block,
    references: Mapping,
    log: Callable[[str], None] = print,
) -> dict:
    """Train each BN kind on ``contexts`` from ``start``'s weights on the one-device runs' batches.

    The kinds are the norms in ``NORMS`` with a one-device norm to be held against. Per kind: its
    history, each statistics copy's distance from the one-device run's after every epoch, and test
    accuracy as the devices predict, with each copy, and with their mean.

    Args:
        config: the comparison's settings; ``gap_batches`` sets the statistics-only comparison's batches.
        contexts: the devices each kind trains on.
        start: the shared start whose weights every kind copies (``compare_models``'s ``"start"``).
        references: per one-device norm, its moving statistics after every epoch
            (``compare_models``'s ``"stats"``).
        log: where the per-epoch lines go.
    """
    probe_iter, test_iter = config.loaders(seed=config.seed + 1)
    probe = next(iter(test_iter))

    def fresh(norm: str, ctx: Contexts) -> gluon.Block:
        net = seeded_lenet(norm, ctx, seed=None)
        forward_shards(net, split_batch(*probe, ctx)[0])  # completes deferred shapes
        return net

    results = {}
    for norm, reference in ((n.name, n.devices) for n in NORMS.values() if n.devices):
        net = fresh(norm, contexts)
        copy_parameters(start, net)
        distances: list = []
        gaps: list = []

        def measure(
            epoch: Epoch, trained: gluon.Block, norm=norm, reference=reference, distances=distances, gaps=gaps
        ) -> None:
            distances.append(stats_distance(trained, references[reference][epoch.epoch - 1]))
            gaps.append(
                statistics_gap(
                    fresh(norm, contexts),
                    fresh(reference, as_list(contexts)[0]),
                    trained,
                    probe_iter,
                    contexts,
                    num_batches=config.gap_batches,
                )
            )

        log(f"\n== {label(norm)} LeNet on {describe(contexts)} (shared start) ==")
        trained = train_model(norm, config, contexts, log, net=net, callbacks=[OnEpochEnd(measure)])
        results[norm] = {
            "history": history_rows(trained.history),
            "reference": reference,
            "stats_distance": distances,
            "stats_gap": gaps,
            "test_acc": accuracy_per_copy(net, test_iter, contexts),
        }
    return results
