"""Scoring flags against ground truth (evaluation only: detection never sees the truth)."""

from __future__ import annotations

from typing import Any

import numpy as np

from acgate.core.result import DetectionResult


def precision_recall_f1(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of boolean ``flagged`` against boolean ``truth``.

    Conventions for empty sets: precision is 1 when nothing is flagged, recall is 1 when there
    is no poison, and F1 is 1 when both are empty (a clean class left alone is a perfect score).
    """
    flagged = np.asarray(flagged, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"flags have shape {flagged.shape} but the truth has {truth.shape}")
    tp = int((flagged & truth).sum())
    n_flagged, n_true = int(flagged.sum()), int(truth.sum())
    precision = tp / n_flagged if n_flagged else 1.0
    recall = tp / n_true if n_true else 1.0
    if n_flagged == 0 and n_true == 0:
        f1 = 1.0
    else:
        f1 = 2 * tp / (n_flagged + n_true)
    accuracy = float((flagged == truth).mean()) if len(truth) else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy,
            "tp": tp, "n_flagged": n_flagged, "n_poison": n_true}


def flag_metrics(result: DetectionResult, is_poison: Any) -> dict[str, Any]:
    """Overall and per-class flag quality; ``is_poison`` is aligned with the result's rows."""
    truth = np.asarray(is_poison, dtype=bool)
    if len(truth) != result.n_samples:
        raise ValueError(f"is_poison has {len(truth)} values; the result has "
                         f"{result.n_samples} samples")
    per_class = []
    for label in np.unique(result.segments):
        rows = result.segments == label
        row = precision_recall_f1(result.is_poison[rows], truth[rows])
        row["label"] = int(label)
        per_class.append(row)
    return {"overall": precision_recall_f1(result.is_poison, truth), "per_class": per_class}
