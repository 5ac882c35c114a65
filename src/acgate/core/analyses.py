"""Analyses that decide whether a class holds a poison cluster: one function each, one registry.

Per-class analyses take a :class:`~acgate.core.clustering.ClassClustering` and return a
:class:`ClassJudgement`. Exclusionary reclassification (``"exre"``) needs a retrain over all
classes at once, so :func:`exclusionary_reclassification` works on every class's candidate
cluster together; :func:`acgate.core.detect.detect` wires it up.

Analyses (see the README's "How it decides"):

* ``size`` — relative size: the smallest cluster is suspicious when its share of the class is at
  most ``size_threshold`` (ART's ``relative-size``). Alone it flags natural sub-populations.
* ``silhouette`` — the 2-clustering fits well (silhouette >= ``silhouette_threshold``).
* ``size-silhouette`` — both at once: the paper's plain recipe.
* ``distance`` — the suspicious cluster's centroid is nearer another class's centroid than its
  own class's main cluster (ART's ``distance``); that class is the suspected source.
* ``spectral`` — spectral signature (Tran et al. 2018): per class, project the centred
  activations on the top singular vector; the optimal 1-D two-way split of the projections is a
  poison cluster when its smaller side holds at most ``size_threshold`` and the two sides are
  well separated (Ashman's D >= :data:`SEPARATION_THRESHOLD`).
* ``robust`` — in the spirit of SPECTRE (Hayase et al. 2021): a robust mean and covariance
  (Minimum Covariance Determinant, seeded) of the reduced activations; samples whose robust
  Mahalanobis distance exceeds the chi-square 99.9% quantile are outliers, and they are a
  poison cluster when they hold between :data:`ROBUST_MIN_SHARE` and ``size_threshold`` of the
  class (a clean second mode of equal size is more than ``size_threshold`` and stays clean).
* ``exre`` — exclusionary reclassification (the paper's recommended analysis): candidate
  clusters are left out of a retrain; a candidate whose samples are then classified mostly as
  one other class (``l / p < exre_threshold`` and at least ``source_share`` of it in that class)
  is poison and that class is the suspected source — unless the proxy itself confuses the two
  classes (``confusion``: a natural class overlap, not a trigger).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from acgate.core.clustering import ClassClustering

AnalysisName = Literal[
    "exre", "size-silhouette", "size", "silhouette", "distance", "spectral", "robust"
]
ANALYSES: tuple[str, ...] = get_args(AnalysisName)

#: ``retrain_and_predict(train_mask, query_positions) -> probabilities (m x n_classes)``:
#: train a fresh model on the rows where ``train_mask`` is true and return class probabilities
#: for the rows at ``query_positions``. Supplied by the torch adapter; the core never trains.
RetrainAndPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


#: Defaults of exclusionary reclassification's source share, nested-candidate source share
#: and natural-confusion cut (measured: bench/RESULTS.md, "candidates").
SOURCE_SHARE_THRESHOLD = 0.5
NESTED_SOURCE_SHARE_THRESHOLD = 0.7
CONFUSION_THRESHOLD = 0.03


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
    """

    size: float = 0.35
    silhouette: float = 0.10
    exre: float = 1.0
    source_share: float = SOURCE_SHARE_THRESHOLD
    nested_source_share: float = NESTED_SOURCE_SHARE_THRESHOLD
    confusion: float = CONFUSION_THRESHOLD

    def as_dict(self) -> dict[str, float]:
        """The thresholds by name."""
        return {"size": self.size, "silhouette": self.silhouette, "exre": self.exre,
                "source_share": self.source_share,
                "nested_source_share": self.nested_source_share, "confusion": self.confusion}


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
class ClassContext:
    """What a per-class analysis may know about the other classes.

    Attributes:
        centroids: Mean activation of every analysed class, by label (full feature space).
        activations: This class's activations (rows aligned with the clustering's positions).
        random_state: Seed for analyses with random steps.
    """

    centroids: Mapping[int, np.ndarray]
    activations: np.ndarray
    random_state: int = 0


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


def _judgement(clustering: ClassClustering, suspicious: int, share: float, poisoned: bool,
               reason: str, **kwargs: object) -> ClassJudgement:
    scores = membership_scores(clustering, suspicious)
    flagged = (clustering.clusters == suspicious) if poisoned else np.zeros(
        len(clustering.clusters), dtype=bool)
    return ClassJudgement(
        suspicious_cluster=suspicious if poisoned else None, size_ratio=share,
        is_poisoned=poisoned, reason=reason, flagged=flagged, sample_scores=scores,
        **kwargs,  # type: ignore[arg-type]
    )


def analyze_size(clustering: ClassClustering, thresholds: Thresholds,
                 context: ClassContext) -> ClassJudgement:
    """Relative size: the smallest cluster holds at most ``thresholds.size`` of the class."""
    del context
    suspicious, share = smallest_cluster(clustering)
    poisoned = share <= thresholds.size
    reason = (f"smallest cluster holds {share:.1%} of the class "
              f"({'<=' if poisoned else '>'} size threshold {thresholds.size:.0%})")
    return _judgement(clustering, suspicious, share, poisoned, reason,
                      scores={"size_ratio": share})


def analyze_silhouette(clustering: ClassClustering, thresholds: Thresholds,
                       context: ClassContext) -> ClassJudgement:
    """Silhouette: the clustering fits (score >= threshold); the smaller cluster is flagged."""
    del context
    suspicious, share = smallest_cluster(clustering)
    score = clustering.silhouette if clustering.silhouette is not None else -1.0
    poisoned = score >= thresholds.silhouette and share < 0.5
    reason = (f"silhouette {score:.3f} {'>=' if poisoned else '<'} threshold "
              f"{thresholds.silhouette:.2f}")
    return _judgement(clustering, suspicious, share, poisoned, reason,
                      scores={"silhouette": score})


def analyze_size_silhouette(clustering: ClassClustering, thresholds: Thresholds,
                            context: ClassContext) -> ClassJudgement:
    """The paper's plain recipe: small cluster AND a well-fitting clustering."""
    del context
    suspicious, share = smallest_cluster(clustering)
    score = clustering.silhouette if clustering.silhouette is not None else -1.0
    small = share <= thresholds.size
    separated = score >= thresholds.silhouette
    poisoned = small and separated
    reason = (f"smallest cluster {share:.1%} ({'<=' if small else '>'} {thresholds.size:.0%}), "
              f"silhouette {score:.3f} ({'>=' if separated else '<'} "
              f"{thresholds.silhouette:.2f})")
    return _judgement(clustering, suspicious, share, poisoned, reason,
                      scores={"size_ratio": share, "silhouette": score})


def analyze_distance(clustering: ClassClustering, thresholds: Thresholds,
                     context: ClassContext) -> ClassJudgement:
    """Distance: the small cluster sits nearer another class than its own main cluster."""
    suspicious, share = smallest_cluster(clustering)
    x = context.activations
    main = 0 if suspicious != 0 else 1
    c_susp = x[clustering.clusters == suspicious].mean(axis=0)
    c_main = x[clustering.clusters == main].mean(axis=0)
    own = float(np.linalg.norm(c_susp - c_main))
    others = {label: float(np.linalg.norm(c_susp - centroid))
              for label, centroid in context.centroids.items() if label != clustering.label}
    if not others:
        return _judgement(clustering, suspicious, share, False,
                          "no other class to compare distances with",
                          scores={"distance_ratio": float("nan")})
    nearest = min(others, key=others.get)
    ratio = others[nearest] / own if own > 0 else float("inf")
    poisoned = ratio < 1.0 and share <= thresholds.size
    reason = (f"small cluster ({share:.1%}) is {ratio:.2f}x as far from class {nearest} as from "
              f"its own main cluster")
    return _judgement(clustering, suspicious, share, poisoned, reason,
                      suspected_source=nearest if poisoned else None,
                      scores={"distance_ratio": ratio, "size_ratio": share})


#: Ashman's D above which a two-way split counts as two separate groups (D > 2 is the usual
#: bimodality bound; 3 keeps the split of one heavy-tailed mode from counting).
SEPARATION_THRESHOLD = 3.0
#: Smallest outlier share the robust analysis treats as a cluster rather than tail noise.
ROBUST_MIN_SHARE = 0.02
ROBUST_QUANTILE = 0.999


def _best_split_1d(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Optimal two-way split of 1-D values (exact 1-D 2-means) and Ashman's D of the split.

    Returns:
        A boolean mask of the smaller side and the separation D.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    n = len(ordered)
    cumsum = np.cumsum(ordered)
    cumsq = np.cumsum(ordered**2)
    left_n = np.arange(1, n)
    left_sum, left_sq = cumsum[:-1], cumsq[:-1]
    right_n = n - left_n
    right_sum, right_sq = cumsum[-1] - left_sum, cumsq[-1] - left_sq
    within = (left_sq - left_sum**2 / left_n) + (right_sq - right_sum**2 / right_n)
    cut = int(np.argmin(within)) + 1
    low, high = ordered[:cut], ordered[cut:]
    spread = np.sqrt(low.var() + high.var())
    separation = float(np.sqrt(2) * abs(high.mean() - low.mean()) / spread) if spread > 0 else (
        float("inf") if high.mean() != low.mean() else 0.0)
    smaller = np.zeros(n, dtype=bool)
    side = order[:cut] if cut <= n - cut else order[cut:]
    smaller[side] = True
    return smaller, separation


def _mask_judgement(clustering: ClassClustering, mask: np.ndarray, scores: np.ndarray,
                    poisoned: bool, reason: str, named: Mapping[str, float]) -> ClassJudgement:
    share = float(mask.mean())
    return ClassJudgement(
        suspicious_cluster=None, size_ratio=share, is_poisoned=poisoned, reason=reason,
        flagged=mask.copy() if poisoned else np.zeros(len(mask), dtype=bool),
        sample_scores=scores, scores=dict(named),
    )


def analyze_spectral(clustering: ClassClustering, thresholds: Thresholds,
                     context: ClassContext) -> ClassJudgement:
    """Spectral signature: top-singular-vector projection, split where it is bimodal."""
    x = np.asarray(context.activations, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projection = centred @ vt[0]
    smaller, separation = _best_split_1d(projection)
    share = float(smaller.mean())
    squared = projection**2
    scores = squared / squared.max() if squared.max() > 0 else np.zeros(len(squared))
    poisoned = share <= thresholds.size and separation >= SEPARATION_THRESHOLD
    reason = (f"top singular direction splits off {share:.1%} of the class with separation "
              f"D = {separation:.2f} ({'>=' if separation >= SEPARATION_THRESHOLD else '<'} "
              f"{SEPARATION_THRESHOLD:g})")
    return _mask_judgement(clustering, smaller, scores, poisoned, reason,
                           {"size_ratio": share, "spectral_separation": separation})


def analyze_robust(clustering: ClassClustering, thresholds: Thresholds,
                   context: ClassContext) -> ClassJudgement:
    """Robust covariance (MCD) outliers in the reduced space, judged by their share."""
    from scipy.stats import chi2
    from sklearn.covariance import MinCovDet

    reduced = np.asarray(clustering.reduced, dtype=np.float64)
    seed = int(context.random_state)
    try:
        fit = MinCovDet(random_state=seed).fit(reduced)
        distances = fit.mahalanobis(reduced)
    except (ValueError, np.linalg.LinAlgError) as error:
        mask = np.zeros(len(reduced), dtype=bool)
        return _mask_judgement(clustering, mask, np.zeros(len(reduced)), False,
                               f"robust covariance could not be estimated: {error}",
                               {"robust_outlier_share": float("nan")})
    cutoff = float(chi2.ppf(ROBUST_QUANTILE, df=reduced.shape[1]))
    outliers = distances > cutoff
    share = float(outliers.mean())
    scores = distances / (distances + cutoff)
    poisoned = ROBUST_MIN_SHARE <= share <= thresholds.size
    reason = (f"{share:.1%} of the class lies beyond the robust 99.9% radius "
              f"(poison when between {ROBUST_MIN_SHARE:.0%} and {thresholds.size:.0%})")
    return _mask_judgement(clustering, outliers, scores, poisoned, reason,
                           {"robust_outlier_share": share})


PerClassAnalysis = Callable[[ClassClustering, Thresholds, ClassContext], ClassJudgement]
ANALYSIS_REGISTRY: dict[str, PerClassAnalysis | None] = {
    "exre": None,  # cross-class: see exclusionary_reclassification
    "size-silhouette": analyze_size_silhouette,
    "size": analyze_size,
    "silhouette": analyze_silhouette,
    "distance": analyze_distance,
    "spectral": analyze_spectral,
    "robust": analyze_robust,
}


@dataclass(frozen=True)
class ExReOutcome:
    """Exclusionary reclassification of one candidate cluster.

    Attributes:
        label: The class the cluster belongs to.
        cluster: The candidate cluster id.
        n_own: ``l``: samples classified as their own label by the retrained model.
        n_other: ``p``: samples classified as the most common other class.
        source: That most common other class (the suspected source), or ``None``.
        score: ``l / max(p, 1)``; below the threshold means poison.
        own_probability: Per-sample probability of the own label (aligned with the cluster's
            positions in the clustering).
        predicted: Per-sample predicted class.
        max_probability: Per-sample probability of the predicted class (the retrain's
            confidence), or ``None`` when not recorded.
    """

    label: int
    cluster: int
    n_own: int
    n_other: int
    source: int | None
    score: float
    own_probability: np.ndarray
    predicted: np.ndarray
    max_probability: np.ndarray | None = None


def exclusionary_reclassification(
    candidates: Mapping[int, tuple[ClassClustering, int]],
    n_samples: int,
    retrain_and_predict: RetrainAndPredict,
) -> dict[int, ExReOutcome]:
    """Retrain once without every candidate cluster, then classify the candidates.

    Leaving out all candidates at once (not one at a time) keeps an undetected poison cluster of
    one class from teaching the retrained model the trigger that another candidate carries.

    Args:
        candidates: By label: the class clustering and its candidate cluster id.
        n_samples: Rows in the full arrays (for the training mask).
        retrain_and_predict: See :data:`RetrainAndPredict`.

    Returns:
        By label, the :class:`ExReOutcome` of its candidate.

    Raises:
        ValueError: When ``retrain_and_predict`` returns probabilities of the wrong shape.
    """
    outcomes = exclusionary_reclassification_clusters(
        {label: (clustering, [cluster]) for label, (clustering, cluster) in candidates.items()},
        n_samples, retrain_and_predict)
    return {label: outcomes[(label, cluster)] for label, (_, cluster) in candidates.items()}


def exclusionary_reclassification_clusters(
    candidates: Mapping[int, tuple[ClassClustering, Sequence[int]]],
    n_samples: int,
    retrain_and_predict: RetrainAndPredict,
) -> dict[tuple[int, int], ExReOutcome]:
    """:func:`exclusionary_reclassification` with any number of candidate clusters per class.

    One retrain leaves out every candidate of every class; each candidate is then judged on
    its own (``l`` and ``p`` counted over its members).

    Returns:
        By ``(label, cluster)``, the :class:`ExReOutcome`.

    Raises:
        ValueError: When ``retrain_and_predict`` returns probabilities of the wrong shape.
    """
    groups = {
        (label, int(cluster)): (label, clustering.positions[clustering.clusters == cluster])
        for label, (clustering, clusters) in candidates.items() for cluster in clusters}
    return exclusionary_reclassification_groups(groups, n_samples, retrain_and_predict)


def retrain_mask(groups: Mapping[tuple[int, int], tuple[int, np.ndarray]], n_samples: int,
                 leave_out: np.ndarray | None = None) -> np.ndarray:
    """The training mask of the one retrain: every row but the groups' and ``leave_out``.

    Shared by :func:`exclusionary_reclassification_groups` and any later call that must reach
    the same retrained model (a retrain callable caches its model by this mask).
    """
    train_mask = np.ones(n_samples, dtype=bool)
    for _, positions in groups.values():
        train_mask[positions] = False
    if leave_out is not None:
        train_mask[np.asarray(leave_out, dtype=np.int64)] = False
    return train_mask


def exclusionary_reclassification_groups(
    groups: Mapping[tuple[int, int], tuple[int, np.ndarray]],
    n_samples: int,
    retrain_and_predict: RetrainAndPredict,
    *,
    leave_out: np.ndarray | None = None,
) -> dict[tuple[int, int], ExReOutcome]:
    """Retrain once without every group, then classify each group's rows.

    Groups may overlap (a sub-cluster inside a candidate cluster): the retrain leaves out their
    union and each group is judged over its own rows.

    Args:
        groups: By key ``(label, group id)``: the group's label and its row positions.
        n_samples: Rows in the full arrays (for the training mask).
        retrain_and_predict: See :data:`RetrainAndPredict`.
        leave_out: Further row positions kept out of the retrain (the candidates' margins:
            poison left in training re-teaches the trigger).

    Returns:
        By key, the :class:`ExReOutcome` (``cluster`` is the group id).

    Raises:
        ValueError: When ``retrain_and_predict`` returns probabilities of the wrong shape.
    """
    if not groups:
        return {}
    query = np.flatnonzero(~retrain_mask(groups, n_samples))  # the margins are not judged
    train_mask = retrain_mask(groups, n_samples, leave_out)
    probabilities = np.asarray(retrain_and_predict(train_mask, query), dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(query):
        raise ValueError(
            f"retrain_and_predict returned shape {probabilities.shape}; expected "
            f"({len(query)}, n_classes)"
        )
    row_of = np.full(n_samples, -1, dtype=np.int64)
    row_of[query] = np.arange(len(query))
    outcomes: dict[tuple[int, int], ExReOutcome] = {}
    for (label, group), (_, positions) in groups.items():
        rows = probabilities[row_of[positions]]
        predicted = rows.argmax(axis=1)
        own_probability = rows[:, label] if label < rows.shape[1] else np.zeros(len(rows))
        n_own = int((predicted == label).sum())
        others = np.bincount(predicted[predicted != label], minlength=rows.shape[1])
        source = int(others.argmax()) if others.sum() else None
        n_other = int(others.max()) if others.sum() else 0
        outcomes[(label, group)] = ExReOutcome(
            label=label, cluster=group, n_own=n_own, n_other=n_other, source=source,
            score=n_own / max(n_other, 1), own_probability=own_probability,
            predicted=predicted, max_probability=rows.max(axis=1),
        )
    return outcomes


def one_source_verdict(score: float, source_share: float, confusion: float | None,
                       thresholds: Thresholds, *, nested: bool = False,
                       label: int | None = None, source: int | None = None
                       ) -> tuple[bool, str]:
    """Exclusionary reclassification's one-source rule on a candidate's measured numbers.

    Poison when ``l/p`` is below ``thresholds.exre``, at least the source share (nested: the
    nested source share) of the left-out candidate went to one other class, and the proxy does
    not itself confuse the two classes at ``thresholds.confusion`` or more. The scan judges
    every candidate with this function, and the promotion gate replays it on the numbers a scan
    run recorded, so the two can never disagree.

    Args:
        score: ``l/p`` of the candidate.
        source_share: Share of the left-out candidate classified as its suspected source.
        confusion: The natural confusion of the class and the source (``None``: not measured).
        thresholds: The thresholds the class is judged with.
        nested: The candidate is a sub-cluster inside a larger candidate.
        label: The candidate's class (for the explanation).
        source: The suspected source class (for the explanation).

    Returns:
        ``(poisoned, why)``.
    """
    needed = thresholds.nested_source_share if nested else thresholds.source_share
    if score >= thresholds.exre:
        return False, f"l/p = {score:.2f} (>= {thresholds.exre:g})"
    poisoned = source_share >= needed
    why = (f"l/p = {score:.2f} (< {thresholds.exre:g}), {source_share:.0%} of it in class "
           f"{source} ({'>=' if poisoned else '<'} {needed:.0%})")
    if poisoned and confusion is not None:
        natural = confusion >= thresholds.confusion
        why += (f"; the proxy confuses classes {label} and {source} at {confusion:.3f} "
                f"({'>=' if natural else '<'} {thresholds.confusion:g}"
                f"{': a natural overlap' if natural else ''})")
        poisoned = not natural
    return poisoned, why


def natural_confusion(predictions: np.ndarray, labels: np.ndarray, label: int, source: int,
                      exclude: np.ndarray | None = None) -> float:
    """How much the proxy itself mixes up two classes, in [0, 2].

    The share of ``label``'s samples the proxy predicts as ``source`` plus the share of
    ``source``'s samples it predicts as ``label``, over the samples not in ``exclude`` (the
    candidate clusters: poison the proxy has not fully learnt must not count as confusion).

    Args:
        predictions: The proxy's prediction per sample.
        labels: Label per sample.
        label: The judged class.
        source: The suspected source class.
        exclude: Boolean mask of samples to leave out of the count.
    """
    keep = np.ones(len(labels), dtype=bool) if exclude is None else ~np.asarray(exclude)
    total = 0.0
    for a, b in ((label, source), (source, label)):
        rows = keep & (labels == a)
        if rows.any():
            total += float(np.mean(predictions[rows] == b))
    return total
