"""Checkpoints of one model's training: written atomically, read back without pickle.

A checkpoint folder ``ckpt-NNNNNN`` holds the parameters (MXNet's own ``save_parameters`` format,
the first device's copy), every BN layer's moving statistics on every device, read and written
through ``bnstate`` so the chapter's NDArray attributes are covered too, and the optimizer's state
NDArrays (``nd.save``). ``latest.json`` beside it names the newest
complete folder and carries everything else as JSON: the run's settings, progress, history,
partial-epoch sums, the batch order's RNG state and the optimizer's update counters.
A folder is built under a temporary name and renamed into place before ``latest.json`` is
replaced, so a kill at any moment leaves the previous checkpoint readable.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import mxnet as mx
from mxnet import gluon, nd

from ..norms.bnstate import bn_layers, layer_stat_copies, set_layer_stat_copies
from ..runtime.devices import Contexts, as_list
from . import faults
from .files import atomic_write_json, free_bytes, naming_full_disk

__all__ = ["Checkpointer"]

_LATEST = "latest.json"


#: Less free space than this after an incomplete ``nd.save`` counts as a full filesystem.
_NEARLY_FULL = 64 * 1024


def _save(path: Path, arrays: dict) -> None:
    """``nd.save``, made sure of. MXNet says only "FileStream.Write incomplete" when a write fails, and
    does not check the file's close, so a full disk can leave the file empty with no error at all: the
    file is synced and read back, and an incomplete one raises OSError (ENOSPC when the disk is full)."""
    try:
        nd.save(str(path), arrays)
    except mx.base.MXNetError as exc:
        if "Write incomplete" not in str(exc):
            raise
        whole = False
    else:
        with open(path, "rb") as saved:
            os.fsync(saved.fileno())
        try:
            whole = not arrays or len(_load_dict(path)) == len(arrays)
        except mx.base.MXNetError:
            whole = False
    if not whole:
        full = free_bytes(path) < _NEARLY_FULL
        raise OSError(errno.ENOSPC if full else errno.EIO, "written incompletely", str(path))


def _load_dict(path: Path) -> dict:
    """``nd.load`` of a saved dict (MXNet gives back an empty list for an empty one)."""
    loaded = nd.load(str(path))
    return loaded if isinstance(loaded, dict) else {}


class Checkpointer:
    """Saves and restores one model's training state in ``directory``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def exists(self) -> bool:
        return (self.directory / _LATEST).is_file()

    def meta(self) -> dict | None:
        """What ``latest.json`` says, or None when there is no checkpoint."""
        if not self.exists():
            return None
        return json.loads((self.directory / _LATEST).read_text())

    def save(self, net: gluon.Block, trainer: gluon.Trainer, state: dict) -> Path:
        """Write a new checkpoint of ``net`` and ``trainer`` with ``state`` (JSON-able).

        On a full filesystem raise ``DiskFull`` naming the checkpoint; the previous one stays the newest.
        """
        number = (self.meta() or {}).get("number", 0) + 1
        final = self.directory / f"ckpt-{number:06d}"
        with naming_full_disk(self.directory):
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=self.directory))
        try:
            with naming_full_disk(final):
                _save(tmp / "params", _parameters(net))
                faults.reached("checkpoint", model=self.directory.name, number=number)
                stats = {
                    f"{i}:{j}:{name}": nd.array(value, dtype="float64")
                    for i, layer in enumerate(bn_layers(net))
                    for j, copy in enumerate(layer_stat_copies(layer))
                    for name, value in zip(("mean", "var"), copy)
                }
                _save(tmp / "stats", stats)
                arrays, counters = _read_trainer(net, trainer)
                _save(tmp / "optimizer", arrays)
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            atomic_write_json(
                self.directory / _LATEST, {**state, "number": number, "folder": final.name, "optimizer": counters}
            )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)  # latest.json still names the previous one
            raise
        for old in [*self.directory.glob("ckpt-*"), *self.directory.glob(".ckpt-*")]:  # and a killed save's
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, net: gluon.Block, trainer: gluon.Trainer, ctx: Contexts) -> dict:
        """Restore ``net`` and ``trainer`` from the newest checkpoint; return its state."""
        meta = self.meta()
        folder = self.directory / meta["folder"]
        net.load_parameters(str(folder / "params"), ctx=ctx)
        stats = _load_dict(folder / "stats")
        for i, layer in enumerate(bn_layers(net)):
            copies = sorted({int(key.split(":")[1]) for key in stats if key.startswith(f"{i}:")})
            set_layer_stat_copies(
                layer,
                [(stats[f"{i}:{j}:mean"].asnumpy(), stats[f"{i}:{j}:var"].asnumpy()) for j in copies],
                as_list(ctx)[0],
            )
        _write_trainer(net, trainer, _load_dict(folder / "optimizer"), meta["optimizer"], as_list(ctx))
        return meta


# -- Where MXNet 1.9.1 keeps a net's parameter names and a trainer's state.
# Its public ``Trainer.save_states``/``load_states``
# pickle the updater, and loading a pickle can run code, so checkpoints read and write these
# private attributes instead. They are reached only in the three functions below;
# tests/test_checkpoint.py fails loudly if an MXNet release renames them.


def _structural_names(net: gluon.Block) -> dict[str, str]:
    """Global parameter name -> its place in the net ('0.weight'), stable across processes."""
    return {param.name: structural for structural, param in net._collect_params_with_prefix().items()}


def _parameters(net: gluon.Block) -> dict:
    """What ``save_parameters`` writes, but the first device's copy: with several devices it writes
    their mean, which for 3 devices is not the weights to the last bit."""
    return {structural: param.list_data()[0] for structural, param in net._collect_params_with_prefix().items()}


def _read_trainer(net: gluon.Block, trainer: gluon.Trainer) -> tuple[dict, dict]:
    """The optimizer's per-parameter state NDArrays (momentum buffers and the like) and its counters.

    Keyed by the parameter's place in the net ('0.weight'), not by the trainer's index, which
    follows global parameter names and so differs between processes.
    """
    names = _structural_names(net)
    arrays = {}
    for index, state in trainer._updaters[0].states.items():
        parts = state if isinstance(state, (tuple, list)) else (state,)
        for j, part in enumerate(parts):
            if part is None:
                continue
            if not isinstance(part, nd.NDArray):
                raise TypeError(f"cannot checkpoint optimizer state of type {type(part).__name__}")
            arrays[f"{names[trainer._params[index].name]}:{j}:{len(parts)}"] = part.as_in_context(mx.cpu())
    optimizer = trainer._optimizer
    counters = {
        "num_update": optimizer.num_update,
        "update_count": {names[trainer._params[i].name]: v for i, v in optimizer._index_update_count.items()},
    }
    return arrays, counters


def _write_trainer(
    net: gluon.Block, trainer: gluon.Trainer, arrays: dict, counters: dict, contexts: list[mx.Context]
) -> None:
    """Put back what ``_read_trainer`` returned, into the optimizer state beside each device's copy."""
    index_of = {
        structural: trainer._param2idx[name]
        for name, structural in _structural_names(net).items()
        if name in trainer._param2idx
    }
    optimizer = trainer._optimizer
    optimizer.num_update = counters["num_update"]
    optimizer._index_update_count = {index_of[k]: v for k, v in counters["update_count"].items()}
    grouped: dict[int, dict] = {}
    for key, array in arrays.items():
        structural, j, n = key.split(":")
        grouped.setdefault(index_of[structural], {"n": int(n)})[int(j)] = array
    for updater, ctx in zip(trainer._updaters, contexts):
        for index, parts in grouped.items():
            values = [None if parts.get(j) is None else parts[j].as_in_context(ctx) for j in range(parts["n"])]
            updater.states[index] = values[0] if parts["n"] == 1 else tuple(values)
            updater.states_synced[index] = True
