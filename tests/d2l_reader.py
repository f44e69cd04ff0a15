"""A reader of d2l's own MXNet chapters, in that book's style, where gluon-bn is installed but never imported.

d2l's MXNet sections start with ``from d2l import mxnet as d2l`` and ``npx.set_np()``, build a model on
``d2l.Classifier`` and train it with ``d2l.Trainer`` on ``d2l.FashionMNIST``. On NumPy 1.24 and newer that
first line fails unless gluon-bn's start-up hook restores the NumPy names MXNet 1.9.1 reads.

There is no download here, and MXNet's ``FashionMNIST`` checks the SHA-1 of the original ``.gz`` files,
which Debian recompressed: so the data module below reads the same real files from a folder instead.

    python tests/d2l_reader.py DATA_DIR [--num-train N]
"""

from d2l import mxnet as d2l  # first, as every d2l section does
from mxnet import autograd, gluon, init, np, npx
from mxnet.gluon import nn

npx.set_np()

import argparse  # noqa: E402
import gzip  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy  # noqa: E402


def normalize(X, gamma, beta, moving_mean, moving_var, eps: float, momentum: float):
    """Batch normalization in ``mxnet.np``: batch statistics while training, the moving ones otherwise."""
    if not autograd.is_training():
        return gamma * (X - moving_mean) / np.sqrt(moving_var + eps) + beta, moving_mean, moving_var
    axes = (0,) if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(axis=axes, keepdims=True)
    var = ((X - mean) ** 2).mean(axis=axes, keepdims=True)
    moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
    moving_var = momentum * moving_var + (1.0 - momentum) * var
    return gamma * (X - mean) / np.sqrt(var + eps) + beta, moving_mean, moving_var


class ScratchBatchNorm(nn.Block):
    """A from-scratch BN layer: learned scale and shift, moving statistics kept outside the gradient."""

    def __init__(self, channels: int, ndim: int, **kwargs):
        super().__init__(**kwargs)
        shape = (1, channels) if ndim == 2 else (1, channels, 1, 1)
        self.gamma = self.params.get("gamma", shape=shape, init=init.One())
        self.beta = self.params.get("beta", shape=shape, init=init.Zero())
        self.moving_mean = np.zeros(shape)
        self.moving_var = np.ones(shape)

    def forward(self, X):
        if self.moving_mean.ctx != X.ctx:
            self.moving_mean, self.moving_var = self.moving_mean.copyto(X.ctx), self.moving_var.copyto(X.ctx)
        Y, self.moving_mean, self.moving_var = normalize(
            X, self.gamma.data(), self.beta.data(), self.moving_mean, self.moving_var, eps=1e-5, momentum=0.9
        )
        return Y


class ScratchBNLeNet(d2l.Classifier):
    """LeNet with a BN layer after every convolution and dense layer but the last."""

    def __init__(self, lr: float = 0.1, num_classes: int = 10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential()
        for block in (
            [nn.Conv2D(6, kernel_size=5), ScratchBatchNorm(6, 4)],
            [nn.Conv2D(16, kernel_size=5), ScratchBatchNorm(16, 4)],
        ):
            self.net.add(*block, nn.Activation("sigmoid"), nn.AvgPool2D(pool_size=2, strides=2))
        for width in (120, 84):
            self.net.add(nn.Dense(width), ScratchBatchNorm(width, 2), nn.Activation("sigmoid"))
        self.net.add(nn.Dense(num_classes))
        self.initialize(init.Xavier())


def read_idx(path: str):
    """One IDX file as MXNet's vision datasets hold it: images N x 28 x 28 x 1 in ``mxnet.np``, labels N."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if "labels" in os.path.basename(path):
        return numpy.frombuffer(raw, numpy.uint8, offset=8).astype(numpy.int32)
    return np.array(numpy.frombuffer(raw, numpy.uint8, offset=16).reshape(-1, 28, 28, 1), dtype="uint8")


class LocalFashionMNIST(d2l.FashionMNIST):
    """``d2l.FashionMNIST`` with its two splits read from a folder of the four IDX files."""

    def __init__(self, folder: str, batch_size: int = 64, num_train: int | None = None):
        d2l.DataModule.__init__(self)
        self.save_hyperparameters(ignore=["folder", "num_train"])
        to_tensor = gluon.data.vision.transforms.ToTensor()
        splits = {}
        for split, prefix in (("train", "train"), ("val", "t10k")):
            images = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))
            labels = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"))
            keep = num_train if split == "train" else None
            splits[split] = gluon.data.ArrayDataset(images[:keep], labels[:keep]).transform_first(to_tensor)
        self.train, self.val = splits["train"], splits["val"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--num-train", type=int)
    args = parser.parse_args()
    data = LocalFashionMNIST(args.data_dir, batch_size=128, num_train=args.num_train)
    model = ScratchBNLeNet(lr=0.1)
    trainer = d2l.Trainer(max_epochs=1, num_gpus=1)
    trainer.fit(model, data)
    X, y = next(iter(data.val_dataloader()))
    with autograd.predict_mode():
        accuracy = float(model.accuracy(model(X), y))
    print(f"gluon_bn imported: {'gluon_bn' in sys.modules}")
    print(
        f"d2l epoch done: {trainer.train_batch_idx} batches, {len(data.train)} examples, "
        f"first validation batch accuracy {accuracy:.3f}"
    )
    print(f"first BN layer gamma: {model.net[1].gamma.data().reshape(-1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
