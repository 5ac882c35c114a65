"""Synthetic activations shared by the core and KFP tests."""

from __future__ import annotations

import numpy as np

#: Rows of the planted poison in :func:`mode_with_nested_poison`.
NESTED_POISON_ROWS = np.arange(550, 600)


def mode_with_nested_poison(seed: int = 2) -> np.ndarray:
    """A class of 600 rows in 6 dimensions: a main mode (340 rows), a second natural mode of 35%
    far from it (210 rows), and a tight 8% poison cluster (50 rows, the last ones) inside the
    second mode's region: poison that 2-means leaves inside a mode."""
    rng = np.random.default_rng(seed)
    main = rng.normal(0.0, 1.0, size=(340, 6))
    mode = rng.normal(0.0, 1.5, size=(210, 6)) + np.array([14.0, 0, 0, 0, 0, 0])
    poison = rng.normal(0.0, 0.3, size=(50, 6)) + np.array([14.0, 7.0, 0, 0, 0, 0])
    return np.concatenate([main, mode, poison])


def poison_inside_spread(make_blobs, *, n_per_class: int = 400, seed: int = 0):
    """``make_blobs`` data (tests/core/conftest.py): 4 classes; class 2 is stretched along one
    axis (2-means halves it) and holds 5% poison drawn around class 0's mean. (With a
    nearest-centroid retrain, a far stretched end left out goes to another class, so not every
    stretch and seed makes a clean example.)"""
    blobs = make_blobs(poisoned={2: 0}, poison_share=0.05, n_per_class=n_per_class, seed=seed)
    x = blobs.activations.copy()
    rng = np.random.default_rng(seed)
    clean_2 = (blobs.labels == 2) & ~blobs.is_poison
    direction = rng.normal(size=x.shape[1])
    direction /= np.linalg.norm(direction)
    x[clean_2] += np.outer(rng.normal(0.0, 15.0, clean_2.sum()), direction)
    return x, blobs


def left_out_outcome(predicted, confidence: float, label: int = 9):
    """An :class:`~acgate.core.detect.ExReOutcome` of a candidate of class ``label`` whose rows
    the retrain sent to ``predicted``, each with probability ``confidence``."""
    from acgate.core.detect import ExReOutcome

    predicted = np.asarray(predicted)
    counts = np.bincount(predicted[predicted != label], minlength=label + 1)
    source = int(counts.argmax())
    n_own = int((predicted == label).sum())
    return ExReOutcome(label=label, cluster=0, n_own=n_own, n_other=int(counts[source]),
                       source=source, score=n_own / max(int(counts[source]), 1),
                       own_probability=np.zeros(len(predicted)), predicted=predicted,
                       max_probability=np.full(len(predicted), confidence))


def with_activations(retrain, activations: np.ndarray):
    """A retrain (e.g. the core tests' nearest centroid) able to give its embedding, the given
    activations themselves, as the torch retrain gives its last hidden layer: what the
    typicality of the several-sources rule and the tail needs."""
    retrain.activations = lambda train_mask, positions: activations[np.asarray(positions)]
    return retrain
