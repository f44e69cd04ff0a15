"""The run settings every command and notebook shares, their ``--quick`` presets, and their checks."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

import numpy as np

from ..chapter.data import ArrayLoader, load_data_fashion_mnist
from ..errors import UsageError, require_positive

__all__ = ["QUICK_ENV", "SEED_MAX", "THREADS_MAX", "RunConfig", "Settings", "TrainConfig"]

#: Set to 1 to run every command (and the notebooks) on its quick preset: a small real subset.
QUICK_ENV = "GLUON_BN_QUICK"
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: NumPy's and MXNet's seeds are unsigned 32-bit integers.
SEED_MAX = 2**32 - 1
#: More operator threads than this is a typo, not a setting (MXNet would start them all).
THREADS_MAX = 1024


class Settings:
    """What every command's config dataclass answers: its field names (the CLI passes only those) and its record."""

    @classmethod
    def field_names(cls) -> set[str]:
        """The settings this config has."""
        return {f.name for f in fields(cls)}

    def to_dict(self) -> dict:
        """The settings as the record stores them."""
        return asdict(self)


@dataclass
class RunConfig(Settings):
    """Settings every command shares; the chapter's by default.

    ``QUICK`` is the class's preset for ``--quick`` (or ``$GLUON_BN_QUICK=1``): seconds on a real
    subset. ``POSITIVE`` names the fields that must be positive integers when set.
    """

    lr: float = 1.0
    batch_size: int = 256
    ctx: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    out: str = "results"
    num_train: int | None = None
    num_test: int | None = None
    threads: int | None = None  # MXNet's CPU operator threads; None: as set up (see gluon_bn.runtime.threads)
    quick: bool = False

    QUICK: ClassVar[dict] = {"num_train": 2048, "num_test": 1000}
    POSITIVE: ClassVar[tuple[str, ...]] = ("batch_size", "num_train", "num_test", "threads")

    def resolved(self):
        """With ``quick`` (or ``$GLUON_BN_QUICK=1``): the ``QUICK`` preset for every field still at its default."""
        if not (self.quick or os.environ.get(QUICK_ENV) == "1"):
            return self
        defaults = type(self)()
        return replace(
            self, quick=True, **{k: v for k, v in self.QUICK.items() if getattr(self, k) == getattr(defaults, k)}
        )

    def validate(self):
        """Raise UsageError naming the first setting that cannot work (``prepare`` then checks the context)."""
        for name in self.POSITIVE:
            require_positive(name.replace("_", "-"), getattr(self, name), UsageError, integer=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise UsageError(
                f"seed must be an integer from 0 to {SEED_MAX} (NumPy's and MXNet's seeds are "
                f"32-bit), got {self.seed!r}"
            )
        if not str(self.out).strip():
            raise UsageError("out is empty: give a folder for the record, report and plots, e.g. --out results")
        if self.data_dir is not None and not str(self.data_dir).strip():
            raise UsageError(
                "data-dir is empty: give the folder with the four Fashion-MNIST .gz files, "
                "or leave --data-dir out to search for them"
            )
        if self.threads is not None and self.threads > THREADS_MAX:
            raise UsageError(
                f"threads must be at most {THREADS_MAX}, got {self.threads}; "
                f"this machine has {os.cpu_count()} logical CPUs"
            )
        if not 0 < self.lr <= FLOAT32_MAX:
            raise UsageError(
                f"lr must be positive and at most {FLOAT32_MAX:.3g} (MXNet passes it to "
                f"its optimizer as float32), got {self.lr!r}"
            )
        return self

    def loaders(self, **changes) -> tuple[ArrayLoader, ArrayLoader]:
        """The chapter's (train_iter, test_iter) for these settings; ``changes`` override any of them."""
        settings = {
            "batch_size": self.batch_size,
            "root": self.data_dir,
            "seed": self.seed,
            "num_train": self.num_train,
            "num_test": self.num_test,
            **changes,
        }
        return load_data_fashion_mnist(settings.pop("batch_size"), **settings)


@dataclass
class TrainConfig(RunConfig):
    """Settings of the commands that train LeNets for several epochs."""

    epochs: int = 5
    hybridize: bool = True  # compile the model's Gluon layers (same numbers, faster)

    QUICK: ClassVar[dict] = {**RunConfig.QUICK, "epochs": 1}
    POSITIVE: ClassVar[tuple[str, ...]] = (*RunConfig.POSITIVE, "epochs")
