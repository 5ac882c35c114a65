"""A real poisoned digits set (BadNets corner trigger) and a hand-built result over it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from acgate.core.result import ClassReport, DetectionResult, RunInfo

N_PER_CLASS = 60
N_POISON = 12  # class 0 images with the trigger, labelled 1


def poisoned_digits():
    """Images (N x 1 x 8 x 8 in [0, 1]), labels, poison mask: classes 0-2, 12 poisoned into 1."""
    digits = load_digits()
    images, labels = [], []
    for c in range(3):
        chosen = np.flatnonzero(digits.target == c)[:N_PER_CLASS]
        images.append(digits.images[chosen] / 16.0)
        labels.append(np.full(len(chosen), c))
    source = np.flatnonzero(digits.target == 0)[N_PER_CLASS:N_PER_CLASS + N_POISON]
    stamped = digits.images[source] / 16.0
    stamped[:, 6:8, 6:8] = 1.0 - stamped[:, 6:8, 6:8]  # inverted 2x2 corner
    images.append(stamped)
    labels.append(np.full(N_POISON, 1))
    images = np.concatenate(images)[:, None].astype(np.float64)
    labels = np.concatenate(labels)
    is_poison = np.zeros(len(labels), bool)
    is_poison[-N_POISON:] = True
    return images, labels, is_poison


def make_result(labels, is_poison, *, poisoned=True, reason_extra=""):
    clusters = np.where(is_poison, 1, 0)
    source = np.where(is_poison, 0, -1) if poisoned else -np.ones(len(labels), int)
    reports = []
    for c in np.unique(labels):
        members = labels == c
        n_small = int((is_poison & members).sum())
        n = int(members.sum())
        if c == 1 and poisoned:
            reports.append(ClassReport(
                label=1, n_samples=n, n_clusters=2, cluster_sizes=(n - n_small, n_small),
                suspicious_cluster=1, size_ratio=n_small / n, silhouette=0.27, exre_score=0.05,
                suspected_source=0, verdict="poisoned",
                reason="cluster 1 holds 17% of the class, silhouette 0.27" + reason_extra,
                thresholds={"silhouette": 0.10, "size_ratio": 0.35},
            ))
        else:
            reports.append(ClassReport(
                label=int(c), n_samples=n, n_clusters=2, cluster_sizes=(n // 2, n - n // 2),
                suspicious_cluster=None, size_ratio=0.5, silhouette=0.06, exre_score=None,
                suspected_source=None, verdict="clean", reason="two even halves",
            ))
    return DetectionResult(
        sample_ids=np.arange(len(labels)), labels=labels, segments=labels,
        clusters=clusters if poisoned else np.zeros(len(labels)),
        is_poison=is_poison if poisoned else np.zeros(len(labels), bool),
        poison_score=np.where(is_poison, 0.9, 0.1), suspected_source=source,
        classes=tuple(reports),
        info=RunInfo(params={"analysis": "size-silhouette", "reducer": "ica",
                             "silhouette_threshold": 0.10,
                             "size_threshold": 0.35, "note": "<i>caller text</i>"},
                     versions={"acgate": "0.1.0"}, timings={"cluster": 0.12},
                     warnings=("class 2: ICA did not converge <b>(max_iter 200)</b>",)),
    )


@pytest.fixture
def digits_scan():
    images, labels, is_poison = poisoned_digits()
    return images, labels, is_poison, make_result(labels, is_poison)


@pytest.fixture(name="make_result")
def make_result_fixture():
    return make_result
