"""Synthetic activations for the core tests: seeded Gaussian blobs, one per class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class Blobs:
    activations: np.ndarray
    labels: np.ndarray
    is_poison: np.ndarray
    means: np.ndarray

    @property
    def poison_ids(self) -> np.ndarray:
        return np.flatnonzero(self.is_poison)


def make_blobs(*, n_classes: int = 4, n_per_class: int = 200, n_features: int = 24,
               poisoned: dict[int, int] | None = None, poison_share: float = 0.15,
               seed: int = 0) -> Blobs:
    """One isotropic Gaussian per class (means ~10 apart, std 1).

    ``poisoned`` maps a target class to a source class: ``poison_share`` of the target's rows
    are drawn around the source's mean instead (what backdoor poison looks like in the last
    hidden layer: source-class features under the target's label). Rows are shuffled.
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(n_classes, n_features))
    xs, ys, truth = [], [], []
    for label in range(n_classes):
        n_poison = int(round(poison_share * n_per_class)) if label in (poisoned or {}) else 0
        clean = rng.normal(means[label], 1.0, size=(n_per_class - n_poison, n_features))
        xs.append(clean)
        truth.extend([False] * len(clean))
        if n_poison:
            source = poisoned[label]
            xs.append(rng.normal(means[source], 1.0, size=(n_poison, n_features)))
            truth.extend([True] * n_poison)
        ys.extend([label] * n_per_class)
    x = np.concatenate(xs)
    y = np.asarray(ys, dtype=np.int64)
    t = np.asarray(truth)
    order = rng.permutation(len(x))
    return Blobs(activations=x[order], labels=y[order], is_poison=t[order], means=means)


def nearest_centroid_retrain(activations: np.ndarray, labels: np.ndarray,
                             calls: list | None = None):
    """A real retrain for exclusionary reclassification: a nearest-centroid classifier fitted on
    the rows of ``train_mask`` only; returns softmax(-squared distance) probabilities."""
    n_classes = int(labels.max()) + 1

    def retrain_and_predict(train_mask: np.ndarray, query_positions: np.ndarray) -> np.ndarray:
        train_mask = np.asarray(train_mask, dtype=bool)
        if calls is not None:
            calls.append((train_mask.copy(), np.asarray(query_positions).copy()))
        centroids = np.full((n_classes, activations.shape[1]), np.inf)
        for c in range(n_classes):
            rows = train_mask & (labels == c)
            if rows.any():
                centroids[c] = activations[rows].mean(axis=0)
        query = activations[np.asarray(query_positions)]
        distances = ((query[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        logits = -distances
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    return retrain_and_predict


@pytest.fixture(scope="session")
def planted() -> Blobs:
    """4 classes x 200; class 2 carries a 15% cluster drawn around class 0's mean."""
    return make_blobs(poisoned={2: 0})


@pytest.fixture(scope="session")
def clean_blobs() -> Blobs:
    """4 clean classes x 200, one Gaussian each."""
    return make_blobs(poisoned=None, seed=1)


@pytest.fixture(name="make_blobs")
def make_blobs_fixture():
    return make_blobs


@pytest.fixture(name="nearest_centroid_retrain")
def nearest_centroid_retrain_fixture():
    return nearest_centroid_retrain
