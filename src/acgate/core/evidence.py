"""What an analyzer is given and what it returns: thresholds, evidence, judgements.

Every analyzer (:mod:`acgate.core.analyses`) is a *judge* with one signature: it takes every
class's :class:`~acgate.core.clustering.ClassClustering` and one :class:`Evidence` object and
returns a :class:`ClassJudgement` per judged class. An analyzer that looks at one class at a
time and one that needs a shared retrain over all classes (exclusionary reclassification) fit
the same interface; each declares the kinds of evidence (:data:`EVIDENCE_KINDS`) it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from acgate.core.clustering import ClassClustering
from acgate.core.tail import HELD_OUT_OVERLAP

#: ``retrain_and_predict(train_mask, query_positions) -> probabilities (m x n_classes)``:
#: train a fresh model on the rows where ``train_mask`` is true and return class probabilities
#: for the rows at ``query_positions``. Supplied by the torch adapter; the core never trains.
RetrainAndPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Default size cut of the per-class analyses (ART's relative-size default; the paper's 35%).
SIZE_THRESHOLD = 0.35
#: Defaults of exclusionary reclassification's source share, nested-candidate source share
#: and natural-confusion cut (measured: bench/RESULTS.md, "candidates").
SOURCE_SHARE_THRESHOLD = 0.5
NESTED_SOURCE_SHARE_THRESHOLD = 0.7
CONFUSION_THRESHOLD = 0.03
#: Default l/p cut of exclusionary reclassification (the paper's is 1: more left-out rows sent
#: to the other class than kept). Poison left out of the retrain goes to its source almost
#: whole: the one-source poison candidates of the attack matrix measured l/p <= 0.39 on MNIST
#: and <= 0.09 on text, 95% of digits' <= 0.34; the natural modes of clean digits classes that
#: passed every other test kept a third or more of their rows (l/p 0.50-0.87: clean digits
#: flagged a class on 3 of 5 seeds at 1, on 1 at 0.5; bench/RESULTS.md "attack_matrix").
EXRE_THRESHOLD = 0.5

EvidenceKind = Literal["activations", "retrain", "predictions"]
#: The kinds of evidence an analyzer may declare, and the argument of
#: :func:`acgate.core.detect.analyze` (and :func:`~acgate.core.detect.detect`) that carries
#: each. Every analyzer also gets the classes' clusterings and thresholds.
EVIDENCE_KINDS: Mapping[str, str] = {
    "activations": "activations (the class's own rows and every class's centroid in the "
                   "full feature space)",
    "retrain": "retrain_and_predict (a callable that retrains the proxy without the "
               "candidate clusters)",
    "predictions": "predictions (the proxy's prediction per sample)",
}


@dataclass(frozen=True)
class Thresholds:
    """The thresholds a class is judged with.

    Attributes:
        size: Largest share of a class that a poison cluster may hold.
        silhouette: Smallest silhouette score that counts as "two real clusters".
        exre: l/p below this means poison under exclusionary reclassification.
        source_share: Under exclusionary reclassification, the smallest share of a candidate
            cluster that the retrained model must put in one other class (the suspected
            source) for the cluster to be poison. Poison is another class's samples with a
            trigger, so once left out it goes to that class almost unanimously (MNIST:
            0.93-1.00 of the cluster); a natural mode of the class scatters over its
            neighbours (measured: ``bench/RESULTS.md``, "candidates").
        nested_source_share: The same for a sub-cluster found inside a candidate at a larger
            k: smaller, purer groups of a natural mode go to one look-alike class more often,
            so they must go there more unanimously.
        confusion: Largest natural confusion between the class and the suspected source: the
            share of the class's other samples the proxy predicts as the source plus the share
            of the source's samples it predicts as the class. A trigger makes poison trivially
            separable from its source, so poison pairs stay below (MNIST: at most 0.018); a
            class pair the proxy itself mixes up is a natural overlap (Fashion-MNIST shirt and
            T-shirt: 0.19). Used only when the proxy's predictions are given; 2 disables it.
        overlap: Smallest held-out overlap of the class and the suspected source that counts
            as natural: the share of the source's own tail that a retrain without every tail
            and candidate sends to the class (and at least 6.5x the median share of the other
            classes' tails; :func:`acgate.core.tail.natural_overlap`). A natural overlap clears
            a one-source candidate, and a tail's clump counts only its rows sent to other
            classes. Asked in classes of at least 1,000 rows; 2 disables it.
    """

    size: float = SIZE_THRESHOLD
    silhouette: float = 0.10
    exre: float = EXRE_THRESHOLD
    source_share: float = SOURCE_SHARE_THRESHOLD
    nested_source_share: float = NESTED_SOURCE_SHARE_THRESHOLD
    confusion: float = CONFUSION_THRESHOLD
    overlap: float = HELD_OUT_OVERLAP

    def as_dict(self) -> dict[str, float]:
        """The thresholds by name."""
        return {"size": self.size, "silhouette": self.silhouette, "exre": self.exre,
                "source_share": self.source_share,
                "nested_source_share": self.nested_source_share, "confusion": self.confusion,
                "overlap": self.overlap}


@dataclass(frozen=True)
class ClassJudgement:
    """One analysis's decision on one class.

    Attributes:
        suspicious_cluster: The poison candidate, or ``None``.
        size_ratio: Share of the class in the suspicious (else smallest) cluster.
        is_poisoned: The decision.
        reason: Plain-words explanation.
        flagged: Per-position flags (aligned with ``clustering.positions``).
        sample_scores: Per-position poison score in [0, 1].
        suspected_source: Suspected source class, or ``None``.
        exre_score: l/p of the suspicious cluster when exclusionary reclassification ran.
        scores: Named scores for the class report.
        sample_sources: Per-position suspected source (``-1`` for none), when the analysis
            names one per sample (exclusionary reclassification: the retrained model's
            prediction); ``None`` means every flagged sample gets ``suspected_source``.
    """

    suspicious_cluster: int | None
    size_ratio: float | None
    is_poisoned: bool
    reason: str
    flagged: np.ndarray
    sample_scores: np.ndarray
    suspected_source: int | None = None
    exre_score: float | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    sample_sources: np.ndarray | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything an analyzer may judge the classes with, beyond their clusterings.

    Attributes:
        activations: Validated activations of every sample (n_samples x n_features).
        labels: Validated label per sample.
        thresholds: The global thresholds.
        class_thresholds: Per-class thresholds that override the global ones.
        random_state: Seed of the analyzers' random steps.
        retrain_and_predict: The retrain (evidence kind ``"retrain"``), or ``None``.
        predictions: The proxy's prediction per sample (kind ``"predictions"``), or ``None``.
    """

    activations: np.ndarray
    labels: np.ndarray
    thresholds: Thresholds
    random_state: int
    class_thresholds: Mapping[int, Thresholds] = field(default_factory=dict)
    retrain_and_predict: RetrainAndPredict | None = None
    predictions: np.ndarray | None = None

    def thresholds_for(self, label: int) -> Thresholds:
        """The thresholds class ``label`` is judged with (its own, else the global ones)."""
        return self.class_thresholds.get(label, self.thresholds)

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of evidence (:data:`EVIDENCE_KINDS`) this object holds."""
        return available_evidence(self.retrain_and_predict, self.predictions)


def available_evidence(retrain_and_predict: RetrainAndPredict | None,
                       predictions: object = None) -> frozenset[str]:
    """The kinds of evidence present when these optional arguments are given (or ``None``)."""
    kinds = {"activations"}
    if retrain_and_predict is not None:
        kinds.add("retrain")
    if predictions is not None:
        kinds.add("predictions")
    return frozenset(kinds)


#: An analyzer's judge: every class's clustering and the evidence in, a judgement per judged
#: (not skipped) class out.
Judge = Callable[[Sequence[ClassClustering], Evidence], dict[int, ClassJudgement]]


def smallest_cluster(clustering: ClassClustering) -> tuple[int, float]:
    """The smallest cluster and its share of the class."""
    sizes = np.asarray(clustering.cluster_sizes)
    smallest = int(np.argmin(sizes))
    return smallest, float(sizes[smallest] / sizes.sum())


def membership_scores(clustering: ClassClustering, suspicious: int) -> np.ndarray:
    """Per-sample score in [0, 1]: how much nearer the suspicious centroid than the main one.

    ``d_main / (d_main + d_suspicious)`` in the reduced space: 0.5 on the boundary, towards 1
    inside the suspicious cluster.
    """
    reduced = clustering.reduced
    main = 0 if suspicious != 0 else 1
    c_main = reduced[clustering.clusters == main].mean(axis=0)
    c_susp = reduced[clustering.clusters == suspicious].mean(axis=0)
    d_main = np.linalg.norm(reduced - c_main, axis=1)
    d_susp = np.linalg.norm(reduced - c_susp, axis=1)
    total = d_main + d_susp
    return np.divide(d_main, total, out=np.full(len(total), 0.5), where=total > 0)
