"""Synthetic activations with planted poison (``scale`` and ``art_scale``).

128-d float32, 10 classes, 5% of the rows of every class shifted by 6 units along one random
direction. Only numpy is imported at module level (measurement children import this first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH = 128
N_CLASSES = 10
POISON_SHARE = 0.05
SHIFT = 6.0
#: Rows per batch of :func:`write_streamed_activations`.
STREAM_BATCH = 100_000


def _centres_and_shift(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(0.0, 3.0, size=(N_CLASSES, WIDTH)).astype(np.float32)
    shift = rng.normal(0.0, 1.0, size=WIDTH).astype(np.float32)
    shift *= SHIFT / np.linalg.norm(shift)
    return centres, shift


def synthetic_activations(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """``(activations, labels, is_poison)``: the model above, in memory."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, size=n_rows)
    centres = rng.normal(0.0, 3.0, size=(N_CLASSES, WIDTH)).astype(np.float32)
    activations = rng.standard_normal((n_rows, WIDTH), dtype=np.float32)
    activations += centres[labels]
    is_poison = rng.random(n_rows) < POISON_SHARE
    shift = rng.normal(0.0, 1.0, size=WIDTH).astype(np.float32)
    shift *= SHIFT / np.linalg.norm(shift)
    activations[is_poison] += shift
    return activations, labels, is_poison


def write_streamed_activations(n_rows: int, path: Path, seed: int = 0) -> np.ndarray:
    """Write activations of the same model to a Parquet file in batches.

    Memory stays at one batch (the random draws differ from :func:`synthetic_activations`).

    Returns:
        The ground truth (``is_poison`` by sample id).
    """
    from acgate.io.activations import ActivationWriter

    rng = np.random.default_rng(seed)
    centres, shift = _centres_and_shift(rng)
    truth = np.zeros(n_rows, dtype=bool)
    with ActivationWriter(path, width=WIDTH) as writer:
        for start in range(0, n_rows, STREAM_BATCH):
            size = min(STREAM_BATCH, n_rows - start)
            labels = rng.integers(0, N_CLASSES, size=size)
            activations = rng.standard_normal((size, WIDTH), dtype=np.float32) + centres[labels]
            poison = rng.random(size) < POISON_SHARE
            activations[poison] += shift
            truth[start:start + size] = poison
            writer.write_batch(np.arange(start, start + size), labels, None, activations)
    return truth
