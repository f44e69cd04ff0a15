"""The public API works from ``gluon_bn`` itself, whatever sub-package each piece lives in."""

import gluon_bn

PUBLIC = (
    "BatchNorm",
    "batch_norm",
    "lenet",
    "train_ch5",
    "load_data_fashion_mnist",
    "recompute_bn_stats",
    "FastBatchNorm",
    "SyncBatchNorm",
    "check_layer",
    "evaluate_accuracy",
    "try_gpu",
    "Epoch",
    "UsageError",
)


def test_every_public_name_is_importable_from_the_package():
    missing = [name for name in PUBLIC if not hasattr(gluon_bn, name)]
    assert missing == [] and set(PUBLIC) <= set(gluon_bn.__all__)


def test_the_chapter_layer_is_the_one_in_chapter_layers():
    from gluon_bn.chapter import layers

    assert gluon_bn.BatchNorm is layers.BatchNorm and gluon_bn.batch_norm is layers.batch_norm
    assert issubclass(gluon_bn.SyncBatchNorm, gluon_bn.BatchNorm)
