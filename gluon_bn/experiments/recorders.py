"""Recorders: callbacks that sample a LeNet's gradients or sigmoid inputs while it trains, changing nothing.

Each one reads the net every few batches and appends a row (with its step) to a list in the run's
``extras``, so the samples are checkpointed and resumed with the run. Neither writes to the net: the
gradient recorder reads ``param.grad()`` after ``trainer.step`` (they stay there until the next
backward), and the activation recorder keeps references to the sigmoids' inputs of the training
forward pass (forward hooks, which fire only when the net runs imperatively).
"""

from __future__ import annotations

import math

import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..reports.claim_plots import PERCENTILES
from ..runs.loop import Callback

__all__ = [
    "ActivationRecorder",
    "GradientRecorder",
    "Recorder",
    "grad_norm",
    "layer_names",
    "sampling",
    "sigmoid_blocks",
    "weighted_layers",
]

#: Fashion-MNIST's training split: the subset a run takes when it names none.
_TRAIN_SIZE = 60000


def grad_norm(param: gluon.Parameter) -> float:
    """The L2 norm of ``param``'s gradient for the whole batch, read after ``trainer.step``.

    On several devices the step has already summed the shards' gradients into every device's copy
    (``make_trainer``'s ``update_on_kvstore=False``), so the first copy is the whole batch's.
    """
    return float(np.linalg.norm(param.list_grad()[0].asnumpy()))


def weighted_layers(net: gluon.Block) -> list[nn.Block]:
    """The LeNet's convolutional and dense layers, input to output."""
    found: list[nn.Block] = []
    net.apply(lambda block: found.append(block) if isinstance(block, (nn.Conv2D, nn.Dense)) else None)
    return found


def layer_names(net: gluon.Block) -> list[str]:
    """``conv1``, ``conv2``, ``dense1``...: the weighted layers' names, in order."""
    counts = {"conv": 0, "dense": 0}
    names = []
    for layer in weighted_layers(net):
        kind = "conv" if isinstance(layer, nn.Conv2D) else "dense"
        counts[kind] += 1
        names.append(f"{kind}{counts[kind]}")
    return names


def sigmoid_blocks(net: gluon.Block) -> list[nn.Activation]:
    """Every sigmoid of the LeNet, input to output: a block of its own beside BN, or inside its layer without BN.

    Gluon 1.9.1's ``nn.Activation`` has no public accessor for its kind, so this reads ``_act_type``.
    """
    found: list[nn.Activation] = []
    net.apply(
        lambda block: found.append(block) if isinstance(block, nn.Activation) and block._act_type == "sigmoid" else None
    )
    return found


def sampling(config, samples: int = 60) -> tuple[int, int]:
    """(batches per epoch, record every k batches) for about ``samples`` rows over the run ``config`` sets."""
    size = min(config.num_train or _TRAIN_SIZE, _TRAIN_SIZE)
    per_epoch = math.ceil(size / config.batch_size)
    return per_epoch, max(1, per_epoch * config.epochs // samples)


class Recorder(Callback):
    """Every ``every`` batches (counted over the run, from its first), appends ``sample()`` to ``extras[key]``."""

    key = "samples"

    def __init__(self, net: gluon.Block, extras: dict, batches_per_epoch: int, every: int):
        self.net, self.extras, self.batches_per_epoch, self.every = net, extras, batches_per_epoch, every

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        step = (epoch - 1) * self.batches_per_epoch + batch
        if (step - 1) % self.every == 0:
            self.extras.setdefault(self.key, []).append({"step": step, "epoch": epoch, **self.sample()})
        return False

    def sample(self) -> dict:
        """What this recorder measures now."""
        raise NotImplementedError


class GradientRecorder(Recorder):
    """Each weighted layer's weight gradient norm, as ``trainer.step(batch_size)`` applies it (divided by the batch)."""

    key = "gradients"

    def __init__(self, net: gluon.Block, extras: dict, batches_per_epoch: int, every: int, batch_size: int):
        super().__init__(net, extras, batches_per_epoch, every)
        self.layers = dict(zip(layer_names(net), weighted_layers(net)))
        self.batch_size = batch_size

    def sample(self) -> dict:
        return {"grad_norm": {name: grad_norm(layer.weight) / self.batch_size for name, layer in self.layers.items()}}


class ActivationRecorder(Recorder):
    """Each hidden layer's sigmoid input in the training forward pass: its std, and percentiles of its first unit.

    The net must run imperatively (``hybridize=False``): a compiled net calls no child's forward hooks,
    and the first sample then stops the run with that said.
    """

    key = "activations"

    def __init__(self, net: gluon.Block, extras: dict, batches_per_epoch: int, every: int):
        super().__init__(net, extras, batches_per_epoch, every)
        blocks = sigmoid_blocks(net)
        self.names = layer_names(net)[: len(blocks)]
        self.inputs: list[list] = [[] for _ in blocks]  # this batch's inputs, one per device shard
        self.handles = [block.register_forward_hook(self._hook(i)) for i, block in enumerate(blocks)]

    def _hook(self, i: int):
        def keep(block, inputs, output) -> None:
            # the training forward pass only: not a test pass, nor the symbols that infer deferred shapes
            if autograd.is_training() and isinstance(inputs[0], nd.NDArray):
                self.inputs[i].append(inputs[0])

        return keep

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        try:
            return super().on_batch_end(epoch, batch)
        finally:
            self.inputs = [[] for _ in self.inputs]

    def sample(self) -> dict:
        if not all(self.inputs):
            raise RuntimeError(
                "the sigmoids' forward hooks saw no training batch: the net is compiled; "
                "train it imperatively (hybridize=False)"
            )
        values = [np.concatenate([x.asnumpy() for x in shards]) for shards in self.inputs]
        return {
            "std": {name: float(x.std()) for name, x in zip(self.names, values)},
            "percentiles": {name: np.percentile(x[:, 0], PERCENTILES).tolist() for name, x in zip(self.names, values)},
        }

    def detach(self) -> None:
        """Remove the forward hooks."""
        for handle in self.handles:
            handle.detach()
