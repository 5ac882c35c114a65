"""Shared fixtures for the torch adapter tests: real scikit-learn digits and a trained CNN."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threads import torch_threads

from acgate.torch.models import SmallCNN
from acgate.torch.train import TrainStats, seeded_model, train_model


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn digits as N x 1 x 8 x 8 float32 in [0, 1] and int64 labels."""
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    return images, data.target.astype(np.int64)


def make_digits_cnn() -> SmallCNN:
    return SmallCNN(in_channels=1, image_hw=(8, 8), n_classes=10)


@pytest.fixture(scope="session")
def digits_cnn_factory():
    """Factory of an untrained SmallCNN for the digits (1 x 8 x 8 inputs, 10 classes)."""
    return make_digits_cnn


@pytest.fixture(scope="session")
def trained_cnn(digits) -> tuple[SmallCNN, TrainStats]:
    """A SmallCNN trained 5 epochs on all digits (seed 0). Tests must not modify it."""
    images, labels = digits
    with torch_threads(1):  # session fixtures are set up before the per-test fixture
        model = seeded_model(make_digits_cnn, seed=0)
        stats = train_model(model, images, labels, epochs=5, batch_size=64, seed=0)
    return model, stats
