"""Fashion-MNIST: where it is found, how it is verified, what the batches look like."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from gluon_bn import load_data_fashion_mnist
from gluon_bn.chapter import fashion_mnist
from gluon_bn.errors import DataError


def _raw(path: Path, offset: int) -> np.ndarray:
    """Decode an IDX file independently of gluon_bn."""
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def test_batches_are_tensors_like_totensor_gives(real_data_dir):
    train, test = load_data_fashion_mnist(256, num_train=1000, num_test=600, seed=0)
    batches = list(train)
    assert len(train) == len(batches) == 4
    assert [X.shape for X, _ in batches] == [(256, 1, 28, 28)] * 3 + [(232, 1, 28, 28)]
    X, y = batches[0]
    assert X.dtype == np.float32 and y.dtype == np.int32 and y.shape == (256,)
    assert 0.0 <= X.min().asscalar() and X.max().asscalar() <= 1.0
    assert sum(y.shape[0] for _, y in batches) == 1000
    # Test batches come in file order and equal the raw bytes / 255, labels the raw labels.
    X0, y0 = next(iter(test))
    images = _raw(real_data_dir / fashion_mnist.TEST_IMAGES, 16).reshape(-1, 28, 28)
    labels = _raw(real_data_dir / fashion_mnist.TEST_LABELS, 8)
    np.testing.assert_array_equal(X0.asnumpy()[:, 0], images[:256].astype(np.float32) / 255)
    np.testing.assert_array_equal(y0.asnumpy(), labels[:256])


def test_full_set_sizes_and_labels(real_data_dir):
    fm = fashion_mnist.read_fashion_mnist()
    assert fm.train_images.shape == (60000, 28, 28) and fm.test_images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(fm.train_labels, _raw(real_data_dir / fashion_mnist.TRAIN_LABELS, 8))
    assert np.bincount(fm.train_labels).tolist() == [6000] * 10
    assert fm.release == "current"


def test_training_batches_reshuffle_each_epoch_and_repeat_with_a_seed(real_data_dir):
    def labels(loader):
        return np.concatenate([y.asnumpy() for _, y in loader])

    a, _ = load_data_fashion_mnist(100, num_train=500, seed=7)
    b, _ = load_data_fashion_mnist(100, num_train=500, seed=7)
    first, second = labels(a), labels(a)
    assert not np.array_equal(first, second)
    assert sorted(first) == sorted(second)
    np.testing.assert_array_equal(first, labels(b))


def test_resize_gives_the_requested_size(real_data_dir):
    train, _ = load_data_fashion_mnist(16, resize=32, num_train=16)
    X, _ = next(iter(train))
    assert X.shape == (16, 1, 32, 32)


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GLUON_BN_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mx"))
    assert fashion_mnist.candidate_dirs() == [
        tmp_path / "mine",
        tmp_path / "mx" / "datasets" / "fashion-mnist",
        fashion_mnist.DEBIAN_DIR,
    ]
    assert fashion_mnist.candidate_dirs(tmp_path / "given") == [tmp_path / "given"]
    monkeypatch.delenv("GLUON_BN_DATA")
    monkeypatch.delenv("MXNET_HOME")
    assert fashion_mnist.candidate_dirs()[0] == Path("~/.mxnet/datasets/fashion-mnist").expanduser()


def test_env_folder_wins_and_recompressed_copy_still_verifies(isolated, data_copy, monkeypatch):
    for name in fashion_mnist.FILES:  # re-compress, as Debian did: different .gz bytes, same content
        path = data_copy / name
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1))
    monkeypatch.setenv("GLUON_BN_DATA", str(data_copy))
    fm = fashion_mnist.read_fashion_mnist()
    assert fm.directory == data_copy.resolve() and fm.release == "current"


def test_root_is_the_only_place_searched(isolated, data_copy, monkeypatch):
    monkeypatch.setenv("GLUON_BN_DATA", str(data_copy))
    empty = isolated / "empty"
    with pytest.raises(DataError) as err:
        fashion_mnist.read_fashion_mnist(root=empty)
    assert str(empty) in str(err.value) and str(data_copy) not in str(err.value)


def test_truncated_file_is_refused_by_name(data_copy):
    path = data_copy / fashion_mnist.TRAIN_LABELS
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError) as err:
        fashion_mnist.read_fashion_mnist(root=data_copy)
    assert str(path) in str(err.value) and "truncated" in str(err.value)
    assert "delete it" in str(err.value)


def test_corrupted_content_is_refused_with_expected_digest(data_copy):
    path = data_copy / fashion_mnist.TEST_LABELS
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[100] = (content[100] + 1) % 10
    path.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError) as err:
        fashion_mnist.read_fashion_mnist(root=data_copy)
    message = str(err.value)
    assert str(path) in message and "does not match any known" in message
    assert fashion_mnist.RELEASES["current"][fashion_mnist.TEST_LABELS].raw_sha256 in message


def test_swapped_file_names_are_refused(data_copy):
    a, b = data_copy / fashion_mnist.TEST_LABELS, data_copy / fashion_mnist.TRAIN_LABELS
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    with pytest.raises(DataError, match="does not match any known") as err:
        fashion_mnist.read_fashion_mnist(root=data_copy)
    assert str(b) in str(err.value)  # the first of the two files it verifies


def test_mixed_releases_are_refused(data_copy, monkeypatch):
    path = data_copy / fashion_mnist.TEST_LABELS
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[-1] = (content[-1] + 1) % 10
    path.write_bytes(gzip.compress(bytes(content)))
    import hashlib

    other = {name: fashion_mnist.Digest(None, None) for name in fashion_mnist.FILES}
    other[fashion_mnist.TEST_LABELS] = fashion_mnist.Digest(hashlib.sha256(bytes(content)).hexdigest(), None)
    monkeypatch.setitem(fashion_mnist.RELEASES, "other", other)
    with pytest.raises(DataError, match="mixes Fashion-MNIST releases"):
        fashion_mnist.read_fashion_mnist(root=data_copy)


def test_nothing_found_lists_every_place_and_the_fix(isolated, monkeypatch):
    monkeypatch.setenv("GLUON_BN_DATA", str(isolated / "env-dir"))
    partial = isolated / "mxnet-home" / "datasets" / "fashion-mnist"
    partial.mkdir(parents=True)
    (partial / fashion_mnist.TRAIN_LABELS).write_bytes(b"")
    with pytest.raises(DataError) as err:
        fashion_mnist.read_fashion_mnist()
    message = str(err.value)
    for place in (isolated / "env-dir", partial, fashion_mnist.DEBIAN_DIR):
        assert str(place) in message
    assert "missing train-images" in message
    assert "apt-get install dataset-fashion-mnist" in message and "127.0.0.1:9" in message


def test_download_from_a_mirror_lands_verified_files(isolated, mirror):
    mirror()
    target = isolated / "dl"
    fm = fashion_mnist.read_fashion_mnist(root=target)
    assert fm.release == "current" and fm.directory == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == sorted(fashion_mnist.FILES)


def test_default_download_goes_to_mxnet_cache(isolated, mirror):
    mirror()
    assert (
        fashion_mnist.find_data_dir()
        == fashion_mnist.mxnet_cache_dir()
        == isolated / "mxnet-home" / "datasets" / "fashion-mnist"
    )


def test_download_cut_halfway_leaves_nothing_behind(isolated, mirror):
    mirror(cut={fashion_mnist.TRAIN_IMAGES})
    target = isolated / "dl"
    with pytest.raises(DataError) as err:
        fashion_mnist.read_fashion_mnist(root=target)
    assert "Download into" in str(err.value)
    assert list(target.iterdir()) == []


def test_unwritable_download_folder_is_named(isolated):
    blocker = isolated / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write to"):
        fashion_mnist.read_fashion_mnist(root=blocker / "sub")


def test_bad_sizes_are_refused(real_data_dir):
    with pytest.raises(ValueError, match="batch_size must be a positive integer, at most 2147483647, got 0"):
        load_data_fashion_mnist(0)
    with pytest.raises(ValueError, match="num_train must be a positive integer, at most 2147483647, got 0"):
        load_data_fashion_mnist(8, num_train=0)
