"""Real Fashion-MNIST's files: find the IDX files, verify them, download them if asked, decode once.

Where the files are looked for, in order (the first folder holding all four wins):

1. ``root`` (CLI ``--data-dir``) when given, and then nowhere else;
2. ``$GLUON_BN_DATA``;
3. ``$MXNET_HOME/datasets/fashion-mnist`` (MXNet's cache, ``~/.mxnet`` by default);
4. ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package ``dataset-fashion-mnist``);
5. a download into ``root`` or MXNet's cache, staged and verified before it is moved in place.

Every file is checked against the known releases by the SHA-256 of its
decompressed content, so a re-compressed copy (Debian's) still matches.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError

__all__ = ["FILES", "RELEASES", "FashionMNIST", "candidate_dirs", "download", "find_data_dir", "read_fashion_mnist"]

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

INSTALL_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
    "or put the four official .gz files in a folder and pass --data-dir "
    "(or set GLUON_BN_DATA)"
)


@dataclass(frozen=True)
class Digest:
    """What a known file looks like: SHA-256 of its content, SHA-1 of its .gz as published."""

    raw_sha256: str | None
    gz_sha1: str | None


#: Known releases. "current" is the release since 2017-08-31 (Zalando's and Debian's
#: copies); "2017-08-26" is the one whose .gz SHA-1s MXNet's FashionMNIST checks. Its
#: decompressed image digests are not known here, so those two files match by .gz SHA-1.
RELEASES: dict[str, dict[str, Digest]] = {
    "current": {
        TRAIN_IMAGES: Digest("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", None),
        TRAIN_LABELS: Digest(
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "09814cfef5a041118ceace42f8dae995319d331a",
        ),
        TEST_IMAGES: Digest("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", None),
        TEST_LABELS: Digest(
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "9caad14e1aff9adac77d3744963212d36af15bee",
        ),
    },
    "2017-08-26": {
        TRAIN_IMAGES: Digest(None, "0cf37b0d40ed5169c6b3aba31069a9770ac9043d"),
        TRAIN_LABELS: Digest(
            "c7673bb30764062aa9ddeaf6184d7043075ded6a31aee7d16f38402434ad395d",
            "236021d52f1e40852b06a4c3008d8de8aef1e40b",
        ),
        TEST_IMAGES: Digest(None, "626ed6a7c06dd17c0eec72fa3be1740f146a2863"),
        TEST_LABELS: Digest(
            "0106d6dfb86a77b9299271c292262daad9001d5a44d251a3880227436b8ce3b1",
            "17f9ab60e7257a1620f4ad76bbbaf857c3920701",
        ),
    },
}

#: Where a download looks, in order: Zalando's (current release), then MXNet's (2017-08-26).
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/dataset/fashion-mnist/",
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def mxnet_cache_dir() -> Path:
    """MXNet's own dataset cache folder, honouring $MXNET_HOME like MXNet does."""
    home = os.environ.get("MXNET_HOME") or os.path.join("~", ".mxnet")
    return Path(home).expanduser() / "datasets" / "fashion-mnist"


def candidate_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched, in order; with ``root`` only that one."""
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    if os.environ.get("GLUON_BN_DATA"):
        dirs.append(Path(os.environ["GLUON_BN_DATA"]).expanduser())
    dirs += [mxnet_cache_dir(), DEBIAN_DIR]
    return dirs


def _mirrors() -> list[str]:
    """Download base URLs; ``$GLUON_BN_DATA_URL`` replaces the defaults (for mirrors and tests)."""
    override = os.environ.get("GLUON_BN_DATA_URL")
    return [override] if override else list(MIRRORS)


def _read_verified(path: Path) -> tuple[bytes, str]:
    """Decompress ``path`` and return its content and release; raise DataError if unknown."""
    name = path.name
    try:
        packed = path.read_bytes()
        content = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is truncated or not a gzip file ({exc}); delete it and run again "
            f"to download a fresh copy, or {INSTALL_HINT}"
        ) from None
    raw = hashlib.sha256(content).hexdigest()
    gz = hashlib.sha1(packed).hexdigest()
    for release, digests in RELEASES.items():
        want = digests[name]
        if raw == want.raw_sha256 or gz == want.gz_sha1:
            return content, release
    expected = "; ".join(
        f"{release}: content sha256 {d[name].raw_sha256 or '?'}, .gz sha1 {d[name].gz_sha1 or '?'}"
        for release, d in RELEASES.items()
    )
    raise DataError(
        f"{path} does not match any known Fashion-MNIST release (content sha256 {raw}, "
        f".gz sha1 {gz}; expected {expected}); it is damaged or not Fashion-MNIST: "
        f"delete it and run again to download a fresh copy, or {INSTALL_HINT}"
    )


def _parse_idx(content: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse an IDX byte string: labels (magic 2049) or 28x28 images (magic 2051)."""
    ndim = 1 if magic == 2049 else 3
    header = struct.calcsize(">" + "I" * (ndim + 1))
    fields = struct.unpack(">" + "I" * (ndim + 1), content[:header])
    if fields[0] != magic:
        raise DataError(
            f"{path} has IDX magic number {fields[0]}, expected {magic}: "
            "the file is misnamed (images and labels swapped?)"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(fields[1:])


@dataclass(frozen=True)
class FashionMNIST:
    """The decoded set: uint8 images (N, 28, 28), int32 labels (N,), and where it came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    directory: Path
    release: str


def _decode(directory: Path) -> FashionMNIST:
    """Verify and decode the four files of one folder."""
    arrays, releases = {}, {}
    for name in FILES:
        path = directory / name
        content, releases[name] = _read_verified(path)
        arrays[name] = _parse_idx(content, path, 2051 if "images" in name else 2049)
    if len(set(releases.values())) > 1:
        mixed = ", ".join(f"{name}: {release}" for name, release in releases.items())
        raise DataError(
            f"{directory} mixes Fashion-MNIST releases ({mixed}), so images and "
            "labels would not line up; replace all four files from one release"
        )
    return FashionMNIST(
        arrays[TRAIN_IMAGES],
        arrays[TRAIN_LABELS].astype(np.int32),
        arrays[TEST_IMAGES],
        arrays[TEST_LABELS].astype(np.int32),
        directory,
        releases[TRAIN_IMAGES],
    )


@lru_cache(maxsize=2)
def _decode_cached(directory: Path, _stamp: tuple) -> FashionMNIST:
    """``_decode`` once per folder and file state (size, mtime)."""
    return _decode(directory)


def _stamp(directory: Path) -> tuple:
    """Size and mtime of each file, so an edited file is decoded again."""
    stats = [os.stat(directory / name) for name in FILES]
    return tuple((st.st_size, st.st_mtime_ns) for st in stats)


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with a progress bar."""
    with urllib.request.urlopen(url, timeout=30) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and out.tell() != total:
            raise OSError(f"connection closed after {out.tell()} of {total} bytes")


def download(target: Path) -> list[str]:
    """Download all four files into ``target``; return the failures if no mirror worked.

    Files are staged in a temporary folder beside ``target`` and moved in place only
    after all four verified as one release, so a failed download leaves nothing behind.
    """
    try:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
    except OSError as exc:
        return [f"cannot write to {target} ({exc.strerror}); pass --data-dir with a writable folder"]
    failures = []
    try:
        for base in _mirrors():
            try:
                for name in FILES:
                    _fetch(base.rstrip("/") + "/" + name, staging / name)
                _decode(staging)
            except (OSError, http.client.HTTPException, DataError) as exc:
                failures.append(f"{base}: {exc}")
                continue
            for name in FILES:
                os.replace(staging / name, target / name)
            return []
        return failures
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def find_data_dir(root: str | os.PathLike | None = None, download_missing: bool = True) -> Path:
    """Return the first searched folder holding all four files, downloading if none does."""
    searched = []
    for directory in candidate_dirs(root):
        present = [n for n in FILES if (directory / n).is_file()]
        if len(present) == len(FILES):
            return directory
        missing = ", ".join(n for n in FILES if n not in present)
        searched.append(f"{directory} ({'missing ' + missing if present else 'no files'})")
    target = Path(root).expanduser() if root is not None else mxnet_cache_dir()
    failures = download(target) if download_missing else ["download not attempted"]
    if not failures:
        return target
    raise DataError(
        "Fashion-MNIST not found. Searched: "
        + "; ".join(searched)
        + ". Download into "
        + str(target)
        + " failed: "
        + " | ".join(failures)
        + ". To fix: "
        + INSTALL_HINT
        + "."
    )


def read_fashion_mnist(root: str | os.PathLike | None = None) -> FashionMNIST:
    """Locate, verify and decode Fashion-MNIST (decoded once per process)."""
    directory = find_data_dir(root).resolve()
    return _decode_cached(directory, _stamp(directory))
