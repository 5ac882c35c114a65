"""The retrain-and-predict callable that exclusionary reclassification needs.

Exclusionary reclassification (Chen et al. 2018, §"Exclusionary Reclassification") retrains a
model without a suspicious cluster and classifies the cluster's samples with it: if they are
still classified as their label the cluster is legitimate, otherwise poison (and the most
common other class is the suspected source). The core is torch-free; it only calls the callable
built here with a boolean training mask and the positions to classify.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from torch import nn

from acgate.core.analyses import RetrainAndPredict
from acgate.core.detect import segment_rows
from acgate.torch._arrays import as_input_tensor, as_label_tensor, positive_int, resolve_device
from acgate.torch.train import predict_proba, seeded_model, train_model

logger = logging.getLogger(__name__)

#: With ``max_rows``, every class keeps at least this many of its rows (all of a smaller class):
#: a rare class must still be learnt.
MIN_CLASS_ROWS = 1_000


def sampled_rows(train_mask: np.ndarray, labels: np.ndarray, max_rows: int | None,
                 seed: int = 0) -> np.ndarray:
    """The rows a retrain trains on: ``train_mask``, or above ``max_rows`` a seeded sample of it.

    Each class keeps its share of ``max_rows`` and at least :data:`MIN_CLASS_ROWS` rows (or all
    it has). The same mask and seed give the same rows.
    """
    kept = np.flatnonzero(train_mask)
    if max_rows is None or len(kept) <= max_rows:
        return train_mask
    rng = np.random.default_rng(seed)
    sampled = np.zeros_like(train_mask)
    for part in segment_rows(kept, labels[kept]).values():  # by class, ascending
        rows = kept[part]
        quota = max(round(max_rows * len(rows) / len(kept)), MIN_CLASS_ROWS)
        sampled[rows if quota >= len(rows) else rng.choice(rows, quota, replace=False)] = True
    return sampled


def make_retrain_and_predict(
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    model_factory: Callable[[], nn.Module],
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
    progress: bool = False,
    device: str = "auto",
    max_rows: int | None = None,
) -> RetrainAndPredict:
    """Build ``retrain_and_predict(train_mask, query_positions) -> probabilities``.

    Each call builds a fresh model with ``seeded_model(model_factory, seed)``, trains it with
    :func:`acgate.torch.train.train_model` on ``inputs[train_mask]`` / ``labels[train_mask]``
    (same ``seed``, so a call is deterministic), and returns its class probabilities for
    ``inputs[query_positions]``. The last trained model is reused when the next call has the same
    ``train_mask``. With ``max_rows``, a mask of more rows trains on a seeded sample of them
    (:func:`sampled_rows`); the core's typicality then measures against reference rows drawn
    from the whole mask, some of them not trained on.

    Args:
        inputs: All training inputs ``N x ...`` (float images/features or int64 token ids).
        labels: All training labels, int ``N``.
        model_factory: Builds an untrained model returning ``N x n_classes`` logits.
        epochs: Training epochs per retrain.
        batch_size: Samples per step. Default 64.
        lr: Adam learning rate. Default 1e-3.
        seed: Seed for initial weights, shuffling and dropout. Default 0.
        weight_decay: Adam weight decay. Default 0.
        progress: Show a tqdm bar on stderr while retraining.
        device: Where each retrain runs (:func:`acgate.torch._arrays.resolve_device`).
        max_rows: Most rows a retrain trains on (``None``: every row of the mask).

    Returns:
        The callable. It takes ``train_mask`` (bool ``N``: samples to train on) and
        ``query_positions`` (int ``M``: positions into ``inputs``) and returns float32
        probabilities ``M x n_classes``. Its attribute ``activations(train_mask,
        query_positions)`` returns the same retrained model's last-hidden-layer activations
        ``M x D`` (the core measures how typical a left-out sample is of the class it went to).

    Raises:
        ValueError / TypeError: Bad ``inputs``/``labels`` here; a bad mask or positions at call
            time (the message quotes the shape or value).
    """
    n_samples = len(as_input_tensor(inputs))
    as_label_tensor(labels, n_samples, None)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    if max_rows is not None:
        max_rows = positive_int(max_rows, "max_rows")
    label_array = np.asarray(labels)
    if not callable(model_factory):
        raise TypeError(f"model_factory must be callable, got {type(model_factory).__name__}")
    cache: dict[bytes, nn.Module] = {}

    def checked(train_mask: np.ndarray, query_positions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        mask = np.asarray(train_mask)
        if mask.dtype != np.bool_ or mask.shape != (n_samples,):
            raise ValueError(
                f"train_mask must be a bool array of shape ({n_samples},), "
                f"got {mask.dtype} {mask.shape}"
            )
        if not mask.any():
            raise ValueError("train_mask selects no samples to train on")
        positions = np.asarray(query_positions)
        if positions.ndim != 1 or not (
            np.issubdtype(positions.dtype, np.integer) or positions.size == 0
        ):
            raise ValueError(
                f"query_positions must be a 1-D int array, got {positions.dtype} {positions.shape}"
            )
        positions = positions.astype(np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= n_samples):
            bad = positions[(positions < 0) | (positions >= n_samples)][0]
            raise ValueError(f"query position {int(bad)} is outside [0, {n_samples})")
        return mask, positions

    def model_for(mask: np.ndarray) -> nn.Module:
        key = np.packbits(mask).tobytes()
        model = cache.get(key)
        if model is None:
            started = time.perf_counter()
            rows = sampled_rows(mask, label_array, max_rows, seed)
            model = seeded_model(model_factory, seed).to(resolve_device(device))
            train_model(
                model,
                inputs[rows],
                labels[rows],
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                seed=seed,
                progress=progress,
            )
            cache.clear()
            cache[key] = model
            logger.info(
                "exclusionary reclassification: retrained on %d of %d samples in %.1f s",
                int(rows.sum()),
                n_samples,
                time.perf_counter() - started,
            )
        return model

    def retrain_and_predict(train_mask: np.ndarray, query_positions: np.ndarray) -> np.ndarray:
        mask, positions = checked(train_mask, query_positions)
        model = model_for(mask)
        if positions.size == 0:
            n_classes = predict_proba(model, inputs[:1]).shape[1]
            return np.zeros((0, n_classes), dtype=np.float32)
        return predict_proba(model, inputs[positions])

    def activations(train_mask: np.ndarray, query_positions: np.ndarray) -> np.ndarray:
        from acgate.torch.extract import extract_activations

        mask, positions = checked(train_mask, query_positions)
        model = model_for(mask)
        if positions.size == 0:
            return np.zeros((0, 0), dtype=np.float32)
        model.eval()
        return extract_activations(model, inputs[positions])[0]

    retrain_and_predict.activations = activations  # type: ignore[attr-defined]
    return retrain_and_predict
