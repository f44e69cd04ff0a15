"""A real data loader with one batch turned to NaN: divergence at a known epoch and batch."""

import numpy as np


class Poisoned:
    """Real batches with batch ``batch`` of epoch ``epoch`` (1-based) turned to NaN; ``before()`` runs before it."""

    def __init__(self, loader, epoch=2, batch=3, before=lambda: None):
        self.loader, self.epoch, self.batch, self.before, self.passes = loader, epoch, batch, before, 0
        self.state, self.restore = loader.state, loader.restore

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        for i, (X, y) in enumerate(self.loader, 1):
            if (self.passes, i) == (self.epoch, self.batch):
                self.before()
                X = X * np.nan
            yield X, y
