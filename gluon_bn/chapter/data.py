"""The chapter's data loader: minibatches of real Fashion-MNIST as NDArrays (the files: ``fashion_mnist``)."""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
from mxnet import nd

from ..errors import require_positive
from ..runtime.threads import serial_python_thread
from .fashion_mnist import FashionMNIST, read_fashion_mnist

__all__ = ["ArrayLoader", "load_data_fashion_mnist"]


class ArrayLoader:
    """Minibatches of in-memory arrays as NDArrays: X float32 in [0, 1], y int32.

    Shuffled afresh on every pass when ``shuffle`` is set; the last partial batch is kept.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        resize: int | None = None,
        seed: int | None = None,
    ):
        require_positive("batch_size", batch_size, integer=True)
        # The same scaling as gluon's ToTensor: uint8 HxW -> float32 1xHxW in [0, 1].
        self.images = (images.astype(np.float32) / 255)[:, None, :, :]
        self.labels = labels.astype(np.int32)
        self.batch_size, self.shuffle, self.resize = batch_size, shuffle, resize
        self.rng = np.random.default_rng(seed)
        self._pass_start: dict | None = None  # RNG state when the pass under way began
        self._position = 0  # batches handed out in that pass
        self._skip = 0  # batches to skip at the next pass (resume)
        self.part = (0, 1)  # (rank, workers): which part of every batch to hand out

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def shard(self, rank: int, workers: int) -> "ArrayLoader":
        """Hand out part ``rank`` of ``workers`` of every batch: a worker's share of the global batch,
        so the workers together see exactly the batches one process sees."""
        self.part = (rank, workers)
        return self

    def state(self) -> dict:
        """Where the batch order stands, as JSON: resuming it repeats the remaining batches."""
        if self._pass_start is not None:
            return {"rng": self._pass_start, "skip": self._position}
        return {"rng": self.rng.bit_generator.state, "skip": 0}

    def restore(self, state: dict) -> None:
        """Continue from ``state()``: the next pass skips the batches already handed out."""
        self.rng.bit_generator.state = state["rng"]
        self._skip = state["skip"]

    def __iter__(self) -> Iterator[tuple[nd.NDArray, nd.NDArray]]:
        serial_python_thread()  # this thread copies every batch: no OpenMP team of its own (see threads)
        n = len(self.labels)
        self._pass_start, self._position = self.rng.bit_generator.state, self._skip
        order = self.rng.permutation(n) if self.shuffle else None
        first, self._skip = self._position * self.batch_size, 0
        for start in range(first, n, self.batch_size):
            idx = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            if self.part[1] > 1:
                idx = np.array_split(np.arange(n)[idx], self.part[1])[self.part[0]]
            X = nd.array(self.images[idx], dtype=np.float32)
            if self.resize:
                X = nd.contrib.BilinearResize2D(X, height=self.resize, width=self.resize)
            self._position += 1
            yield X, nd.array(self.labels[idx], dtype=np.int32)
        self._pass_start, self._position = None, 0


def load_data_fashion_mnist(
    batch_size: int,
    resize: int | None = None,
    root: str | os.PathLike | None = None,
    *,
    seed: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    data: FashionMNIST | None = None,
) -> tuple[ArrayLoader, ArrayLoader]:
    """The chapter's loader: (train_iter, test_iter) over real Fashion-MNIST.

    The training batches are shuffled afresh on every pass; the test batches keep the file's order.

    Args:
        batch_size: examples per batch, in both loaders; the last partial batch is kept.
        resize: the side, in pixels, images are resized to (bilinear); None keeps 28x28.
        root: the folder the files are read from (when ``data`` is not given); None searches the usual folders.
        seed: fixes the shuffling order of the training batches; None leaves it random.
        num_train: keep only the first examples of the training split (quick runs); None keeps all.
        num_test: keep only the first examples of the test split (quick runs); None keeps all.
        data: the set already read (else it is read from ``root``).
    """
    require_positive("num_train", num_train, integer=True)
    require_positive("num_test", num_test, integer=True)
    data = data if data is not None else read_fashion_mnist(root)
    train = ArrayLoader(
        data.train_images[:num_train], data.train_labels[:num_train], batch_size, shuffle=True, resize=resize, seed=seed
    )
    test = ArrayLoader(
        data.test_images[:num_test], data.test_labels[:num_test], batch_size, shuffle=False, resize=resize
    )
    return train, test
