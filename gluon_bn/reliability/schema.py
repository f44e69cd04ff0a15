"""The record's schema, written down once: what every ``gluon-bn`` record holds, as a JSON Schema.

``FORMAT`` names the schema's version. Change it whenever a field is added, removed, renamed or
retyped: ``tests/test_record.py`` holds the schema's digest for each version and fails when the
schema changes under an old name. Records of ``READABLE`` older formats still load.
"""

from __future__ import annotations

import functools
from typing import Mapping

__all__ = ["FORMAT", "READABLE", "SCHEMA", "validate"]

FORMAT = "gluon-bn-record/2"
#: Older formats that still load (``exercise --resume`` reads its record): format 1 lacked
#: ``complete`` in the compare and bench records, and had no written schema.
READABLE = ("gluon-bn-record/1",)

_NUMBER = {"type": "number"}
_NUMBERS = {"type": "array", "items": _NUMBER}
_EPOCH = {  # one line of the chapter's log (``chapter.training.Epoch``)
    "type": "object",
    "required": ["epoch", "loss", "train_acc", "test_acc", "time"],
    "additionalProperties": False,
    "properties": {
        "epoch": {"type": "integer", "minimum": 1},
        "loss": _NUMBER,
        "train_acc": _NUMBER,
        "test_acc": _NUMBER,
        "time": _NUMBER,
    },
}
_HISTORY = {"type": "array", "items": _EPOCH}
_MODEL_RUN = {  # one trained LeNet (``runs.supervised.ModelRun``)
    "type": "object",
    "required": ["history", "first_bn", "wall_time"],
    "additionalProperties": False,
    "properties": {
        "history": _HISTORY,
        "first_bn": {
            "type": "object",
            "required": ["gamma", "beta"],
            "additionalProperties": False,
            "properties": {"gamma": _NUMBERS, "beta": _NUMBERS},
        },
        "wall_time": _NUMBER,
        "workers": {"type": "array", "items": {"type": "object", "required": ["epoch"]}},
    },
}
_ROWS = {"type": "array", "items": {"type": "object"}}
_RESULTS = {  # what each command measured
    "reproduce": {"type": "object", "additionalProperties": _MODEL_RUN},
    "compare": {
        "type": "object",
        "additionalProperties": False,
        "required": ["checks", "differences", "modes", "models", "drift", "speed", "devices"],
        "properties": {
            "checks": _ROWS,
            "differences": _ROWS,
            "modes": _ROWS,
            "drift": _ROWS,
            "speed": _ROWS,
            "models": {"type": "object", "additionalProperties": _MODEL_RUN},
            "devices": {"type": ["object", "null"]},
        },
    },
    "exercise": {
        "type": "object",
        "additionalProperties": False,
        "required": ["runs"],
        "properties": {
            "runs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["variant", "seed", "status", "history", "extras"],
                    "properties": {"status": {"enum": ["trained", "diverged"]}, "history": _HISTORY},
                },
            },
            "summary": _ROWS,
            "conclusion": {"type": "string"},
        },
    },
    "bench": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"layers": _ROWS, "epochs": _ROWS, "memory": _ROWS, "profile": {"type": "object"}},
    },
}

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "gluon-bn record",
    "type": "object",
    "required": ["format", "command", "config", "environment", "data", "complete", "wall_time", "results"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "command": {"enum": sorted(_RESULTS)},
        "config": {"type": "object"},  # the command's settings, as its config dataclass names them
        "environment": {
            "type": "object",
            "required": [
                "python",
                "platform",
                "machine",
                "cpu",
                "cpu_count",
                "context",
                "devices",
                "packages",
                "threads",
            ],
            "properties": {
                "devices": {"type": "integer", "minimum": 1},
                "packages": {"type": "object"},
                "threads": {"type": "object", "required": ["operator_threads", "python_thread"]},
            },
        },
        "data": {
            "type": "object",
            "required": ["directory", "release"],
            "additionalProperties": False,
            "properties": {"directory": {"type": "string"}, "release": {"type": "string"}},
        },
        "complete": {"type": "boolean"},  # false while a run is under way, or after it stopped
        "wall_time": _NUMBER,
        "results": {"type": "object"},
        "chapter": {"type": "object", "required": ["epoch", "results"]},  # reproduce: the published numbers
        "distributed": {"type": "object", "required": ["kvstore", "workers", "servers"]},
        "diverged": {"type": "object", "required": ["epoch", "batch", "loss"]},
        "interrupted": {"type": "string"},  # the model whose training the user stopped
        "failures": {"type": "array", "items": {"type": "string"}},  # compare: agreements that did not hold
        "targets": {"type": "array", "items": {"type": "string"}},  # bench: each target, measured
    },
    "allOf": [
        {"if": {"properties": {"command": {"const": name}}}, "then": {"properties": {"results": schema}}}
        for name, schema in _RESULTS.items()
    ],
}


@functools.lru_cache(maxsize=1)
def _validator():
    """``SCHEMA``'s validator, built once per process (records are checked at every write)."""
    import jsonschema  # only where records are written or read

    return jsonschema.Draft202012Validator(SCHEMA)


def validate(record: Mapping) -> None:
    """Raise ValueError naming the first place where ``record`` does not follow ``SCHEMA``."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(record))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ValueError(f"not a {FORMAT} record at {where}: {error.message}")
