"""Analyzers that decide whether a class holds a poison cluster: one registry of equals.

Every analyzer is an :class:`Analyzer` entry of :data:`ANALYZERS`: a name, a *judge* (every
class's clustering and one :class:`~acgate.core.evidence.Evidence` object in, a
:class:`~acgate.core.evidence.ClassJudgement` per class out), a one-line summary, the kinds of
evidence it needs (and those it uses when given), and its default size cut and clustering. The
registry drives the list of choices (:data:`ANALYSES`), the resolution of ``"auto"``
(:data:`AUTO_ORDER`), the check that the evidence an analysis needs is there, the dispatch in
:func:`acgate.core.detect.analyze` and the text below (:func:`describe_analyses`).

Most analyzers look at one class at a time (:class:`PerClassJudge` wraps a function of one
class's clustering); exclusionary reclassification (:mod:`acgate.core.exre`) judges every class
with one shared retrain. See the README's "How it decides".

Analyses:

"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from acgate.core.clustering import ClassClustering, ClusterMode
from acgate.core.evidence import (  # re-exported: imported from here by the adapters
    CONFUSION_THRESHOLD,
    EVIDENCE_KINDS,
    EXRE_THRESHOLD,
    NESTED_SOURCE_SHARE_THRESHOLD,
    SIZE_THRESHOLD,
    SOURCE_SHARE_THRESHOLD,
    ClassJudgement,
    Evidence,
    Judge,
    RetrainAndPredict,
    Thresholds,
    membership_scores,
    smallest_cluster,
)
from acgate.core.exre import (  # re-exported: imported from here by the adapters
    EXRE_SIZE_THRESHOLD,
    ExReOutcome,
    exclusionary_reclassification_groups,
    judge_exre,
    natural_confusion,
    one_source_verdict,
    retrain_mask,
)

#: The registry's names, spelled out for type checkers (a test keeps the two equal).
AnalysisName = Literal[
    "exre", "size-silhouette", "size", "silhouette", "distance", "spectral", "robust"
]


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
    random_state: int


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


@dataclass(frozen=True)
class PerClassJudge:
    """A judge that applies a per-class analysis to every class that was not skipped.

    Attributes:
        analysis: ``(clustering, thresholds, context) -> ClassJudgement`` for one class.
    """

    analysis: PerClassAnalysis

    def __call__(self, clusterings: Sequence[ClassClustering],
                 evidence: Evidence) -> dict[int, ClassJudgement]:
        """Judge each class with its own thresholds and a :class:`ClassContext`."""
        centroids = {c.label: evidence.activations[c.positions].mean(axis=0)
                     for c in clusterings if len(c.positions)}
        judgements = {}
        for clustering in clusterings:
            if clustering.skipped:
                continue
            context = ClassContext(centroids=centroids,
                                   activations=evidence.activations[clustering.positions],
                                   random_state=evidence.random_state)
            judgements[clustering.label] = self.analysis(
                clustering, evidence.thresholds_for(clustering.label), context)
        return judgements


@dataclass(frozen=True)
class Analyzer:
    """One analysis: how it judges, what evidence it needs, its defaults.

    Attributes:
        name: The choice's name (``analysis=...``).
        judge: Every class's clustering and the :class:`Evidence` in, a judgement per judged
            class out (see :data:`acgate.core.evidence.Judge`).
        summary: One line for help texts.
        needs: Kinds of evidence (:data:`~acgate.core.evidence.EVIDENCE_KINDS`) the analysis
            cannot run without.
        uses: Kinds it uses when given (and does without otherwise).
        size_threshold: Default largest share of a class a poison cluster (or candidate) may
            hold.
        n_clusters: Default clustering (``n_clusters`` of :func:`acgate.core.detect.detect`).
    """

    name: str
    judge: Judge
    summary: str
    needs: frozenset[str] = field(default_factory=frozenset)
    uses: frozenset[str] = field(default_factory=frozenset)
    size_threshold: float = SIZE_THRESHOLD
    n_clusters: ClusterMode = 2

    def missing(self, available: frozenset[str]) -> frozenset[str]:
        """The needed kinds of evidence that ``available`` lacks."""
        return self.needs - available


def _registry(*analyzers: Analyzer) -> Mapping[str, Analyzer]:
    return {analyzer.name: analyzer for analyzer in analyzers}


#: Every analysis, by name, in the order choices are listed.
ANALYZERS: Mapping[str, Analyzer] = _registry(
    Analyzer(
        "exre", judge_exre,
        "exclusionary reclassification (the paper's recommended analysis): the candidate "
        "clusters of every class are left out of one retrain; a candidate the retrained model "
        "then classifies mostly as one other class (l/p < exre threshold, at least the source "
        "share in that class) is poison and that class its suspected source, unless the proxy "
        "itself confuses the two classes; a candidate sent confidently to several classes as "
        "typical members there is multi-source poison",
        needs=frozenset({"retrain"}), uses=frozenset({"predictions"}),
        size_threshold=EXRE_SIZE_THRESHOLD, n_clusters="stable"),
    Analyzer(
        "size-silhouette", PerClassJudge(analyze_size_silhouette),
        "the paper's plain recipe: the smallest cluster holds at most the size threshold and "
        "the 2-clustering's silhouette is at least the silhouette threshold"),
    Analyzer(
        "size", PerClassJudge(analyze_size),
        "relative size (ART's relative-size): the smallest cluster holds at most the size "
        "threshold; alone it flags natural sub-populations"),
    Analyzer(
        "silhouette", PerClassJudge(analyze_silhouette),
        "the 2-clustering fits well (silhouette at least the threshold); the smaller cluster "
        "is flagged"),
    Analyzer(
        "distance", PerClassJudge(analyze_distance),
        "ART's distance: the small cluster's centroid is nearer another class's centroid than "
        "its own class's main cluster; that class is the suspected source",
        needs=frozenset({"activations"})),
    Analyzer(
        "spectral", PerClassJudge(analyze_spectral),
        "spectral signature (Tran et al. 2018): the top singular direction of the class's "
        f"activations splits off at most the size threshold with separation D >= "
        f"{SEPARATION_THRESHOLD:g}",
        needs=frozenset({"activations"})),
    Analyzer(
        "robust", PerClassJudge(analyze_robust),
        "robust covariance in the spirit of SPECTRE (Hayase et al. 2021): seeded Minimum "
        "Covariance Determinant outliers beyond the chi-square 99.9% radius of the reduced "
        f"activations, poison when they hold between {ROBUST_MIN_SHARE:.0%} and the size "
        "threshold of the class"),
)
#: The analysis names (the choices of ``analysis``, besides ``"auto"``).
ANALYSES: tuple[str, ...] = tuple(ANALYZERS)
#: ``analysis="auto"`` is the first of these whose needed evidence is given: exclusionary
#: reclassification when a retrain is available (the only analysis that told natural
#: sub-populations from poison in our measurements), else size + silhouette.
AUTO_ORDER: tuple[str, ...] = ("exre", "size-silhouette")


def auto_analysis(available: frozenset[str]) -> str:
    """The analysis ``"auto"`` stands for when the ``available`` kinds of evidence are given."""
    return next(name for name in AUTO_ORDER if not ANALYZERS[name].missing(available))


def describe_analyses() -> str:
    """A bullet list of the analyses: summary, needed evidence, defaults (from the registry)."""
    lines = [f"* ``auto`` — the first of {', '.join(AUTO_ORDER)} whose needed evidence is "
             "given."]
    for analyzer in ANALYZERS.values():
        needs = (", ".join(EVIDENCE_KINDS[kind] for kind in sorted(analyzer.needs))
                 or "nothing beyond the clusterings")
        uses = ", ".join(EVIDENCE_KINDS[kind] for kind in sorted(analyzer.uses))
        lines.append(
            f"* ``{analyzer.name}`` — {analyzer.summary}. Needs: {needs}"
            f"{f'; uses when given: {uses}' if uses else ''}. Defaults: size threshold "
            f"{analyzer.size_threshold:g}, n_clusters {analyzer.n_clusters!r}.")
    return "\n".join(lines)


__doc__ = (__doc__ or "") + describe_analyses() + "\n"
__all__ = [
    "ANALYSES", "ANALYZERS", "AUTO_ORDER", "CONFUSION_THRESHOLD", "EXRE_SIZE_THRESHOLD",
    "EXRE_THRESHOLD", "NESTED_SOURCE_SHARE_THRESHOLD", "ROBUST_MIN_SHARE", "ROBUST_QUANTILE",
    "SEPARATION_THRESHOLD", "SIZE_THRESHOLD", "SOURCE_SHARE_THRESHOLD", "AnalysisName",
    "Analyzer", "ClassContext", "ClassJudgement", "Evidence", "ExReOutcome", "PerClassJudge",
    "RetrainAndPredict", "Thresholds", "analyze_distance", "analyze_robust", "analyze_silhouette",
    "analyze_size", "analyze_size_silhouette", "analyze_spectral", "auto_analysis",
    "describe_analyses", "exclusionary_reclassification_groups", "membership_scores",
    "natural_confusion", "one_source_verdict", "retrain_mask", "smallest_cluster",
]
