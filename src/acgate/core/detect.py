"""Activation Clustering: ``detect`` (one honest function) and the sklearn-style estimator.

Pipeline (Chen et al. 2018, with the changes measured in ``bench/RESULTS.md``):

1. segment the activations by label (or by the model's prediction);
2. per class, reduce (PCA 10 by default) and split with seeded k-means: under exclusionary
   reclassification the stable small clusters at the smallest k that has any
   (``n_clusters="stable"``, see :mod:`acgate.core.clustering`), else k = 2;
3. judge the classes with the chosen analyzer (:data:`acgate.core.analyses.ANALYZERS`;
   ``"auto"``: exclusionary reclassification when a ``retrain_and_predict`` callable is
   supplied, else the size + silhouette recipe);
4. flag samples, name the suspected source class.

:func:`cluster_classes` and :func:`analyze` are the two halves, exposed separately so the
Kubeflow pipeline can fan the clustering out per class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sklearn
from sklearn.base import BaseEstimator

from acgate.core import validation
from acgate.core.analyses import ANALYSES, ANALYZERS, AnalysisName, auto_analysis
from acgate.core.clustering import (
    MIN_CLASS_SIZE,
    STABILITY_DEPTH,
    ClassClustering,
    ClusterMode,
    cluster_class,
)
from acgate.core.evidence import (
    CONFUSION_THRESHOLD,
    EVIDENCE_KINDS,
    EXRE_THRESHOLD,
    NESTED_SOURCE_SHARE_THRESHOLD,
    SIZE_THRESHOLD,
    SOURCE_SHARE_THRESHOLD,
    ClassJudgement,
    Evidence,
    RetrainAndPredict,
    Thresholds,
    available_evidence,
)
from acgate.core.exre import (  # re-exported: the adapters and the bench import them from here
    EXRE_SIZE_THRESHOLD,
    HALO_MARGIN,
    HALO_MAX_CANDIDATE_SHARE,
    HALO_MAX_SHARE,
    HALO_MIN_CLASS_ROWS,
    MULTI_SOURCE_BAND_CLASSES,
    MULTI_SOURCE_BAND_TYPICALITY,
    MULTI_SOURCE_CONFIDENCE,
    MULTI_SOURCE_MIN_CLASSES,
    MULTI_SOURCE_OWN_SHARE,
    MULTI_SOURCE_TYPICALITY,
    MULTI_SOURCE_WIDE_CLASSES,
    MULTI_SOURCE_WIDE_CONFIDENCE,
    MULTI_SOURCE_WIDE_TYPICALITY,
    TYPICALITY_REFERENCE_ROWS,
    ExReOutcome,
    candidate_margin,
    one_source_verdict,
    retrain_mask,
)
from acgate.core.redraw import REDRAW_COMPONENTS, redraw_judgement
from acgate.core.reducers import REDUCERS, ReducerName
from acgate.core.result import NO_VALUE, ClassReport, DetectionResult, RunInfo
from acgate.core.tail import HELD_OUT_OVERLAP

__all__ = [
    "ANALYSES", "CLUSTER_MODES", "CONFUSION_THRESHOLD", "EXRE_SIZE_THRESHOLD", "HALO_MARGIN",
    "HALO_MAX_CANDIDATE_SHARE", "HALO_MAX_SHARE", "HALO_MIN_CLASS_ROWS",
    "MULTI_SOURCE_BAND_CLASSES", "MULTI_SOURCE_BAND_TYPICALITY", "MULTI_SOURCE_CONFIDENCE",
    "MULTI_SOURCE_MIN_CLASSES", "MULTI_SOURCE_OWN_SHARE", "MULTI_SOURCE_TYPICALITY",
    "MULTI_SOURCE_WIDE_CLASSES", "MULTI_SOURCE_WIDE_CONFIDENCE", "MULTI_SOURCE_WIDE_TYPICALITY",
    "NESTED_SOURCE_SHARE_THRESHOLD", "REDUCERS", "SEGMENTS", "SIZE_THRESHOLD",
    "SOURCE_SHARE_THRESHOLD", "TYPICALITY_REFERENCE_ROWS", "ActivationClustering",
    "ClassJudgement", "ExReOutcome", "RetrainAndPredict", "Thresholds", "analyze",
    "candidate_margin", "cluster_classes", "detect", "detector_params", "one_source_verdict",
    "resolve_analysis", "resolve_n_clusters", "resolve_settings", "retrain_mask", "segment_rows",
]

logger = logging.getLogger(__name__)

SegmentBy = Literal["label", "prediction"]
SEGMENTS: tuple[str, ...] = ("label", "prediction")
AnalysisChoice = AnalysisName | Literal["auto"]
CLUSTER_MODES: tuple[str, ...] = ("auto", "stable")


def _versions() -> dict[str, str]:
    from acgate import __version__

    return {"acgate": __version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def resolve_analysis(analysis: str, retrain_and_predict: RetrainAndPredict | None,
                     predictions: Any = None) -> str:
    """Resolve ``"auto"`` and check that the analysis has the evidence it needs.

    ``"auto"`` is the first analysis of :data:`acgate.core.analyses.AUTO_ORDER` whose needed
    evidence is given. What each analysis needs is its registry entry's ``needs``.

    Args:
        analysis: A name from :data:`ANALYSES` (the registry's names), or ``"auto"``.
        retrain_and_predict: The retrain (evidence ``"retrain"``), or ``None``.
        predictions: The proxy's predictions (evidence ``"predictions"``), or ``None``.

    Returns:
        The analysis name.

    Raises:
        ValueError: For an unknown name, or when evidence the analysis needs is missing.
    """
    validation.check_choice(analysis, (*ANALYZERS, "auto"), name="analysis")
    available = available_evidence(retrain_and_predict, predictions)
    if analysis == "auto":
        return auto_analysis(available)
    missing = ANALYZERS[analysis].missing(available)
    if missing:
        possible = [name for name, entry in ANALYZERS.items() if not entry.missing(available)]
        raise ValueError(
            f"analysis={analysis!r} needs "
            f"{' and '.join(EVIDENCE_KINDS[kind] for kind in sorted(missing))}; pass "
            f"{'it' if len(missing) == 1 else 'them'}, or choose another analysis from "
            f"{possible}"
        )
    return analysis


def resolve_n_clusters(n_clusters: ClusterMode | None, analysis: str,
                       n_classes: int | None = None) -> ClusterMode:
    """Validate ``n_clusters`` and resolve its default.

    ``None`` is the analysis's declared default clustering (its registry entry's
    ``n_clusters``: ``"stable"`` under exclusionary reclassification, else the paper's 2-means,
    which the other analyses are defined on). A ``"stable"`` default falls back to 2 with two
    classes: there the source-share test cannot clear a natural cluster (whatever leaves its
    class goes to the one other class), so the stable search's extra candidates only add false
    alarms (measured on Rotten Tomatoes: F1 0.51 vs 0.998, ``bench/RESULTS.md`` "text").

    Raises:
        ValueError: For an unknown ``n_clusters`` mode, a k below 2, or (when ``n_clusters`` is
            ``None``) an analysis name not in :data:`ANALYSES` (resolve ``"auto"`` first).
        TypeError: For an ``n_clusters`` that is neither a mode nor an integer.
    """
    if n_clusters is None:
        default = ANALYZERS[validation.check_choice(analysis, ANALYZERS, name="analysis")]
        if default.n_clusters == "stable" and n_classes is not None and n_classes <= 2:
            return 2
        return default.n_clusters
    if isinstance(n_clusters, str):
        return validation.check_choice(n_clusters, CLUSTER_MODES, name="n_clusters")
    return validation.check_positive_int(n_clusters, name="n_clusters", minimum=2)


def resolve_settings(
    analysis: str,
    retrain_and_predict: RetrainAndPredict | None,
    *,
    size_threshold: float | None,
    silhouette_threshold: float,
    exre_threshold: float,
    source_share_threshold: float = SOURCE_SHARE_THRESHOLD,
    nested_source_share_threshold: float = NESTED_SOURCE_SHARE_THRESHOLD,
    confusion_threshold: float = CONFUSION_THRESHOLD,
    overlap_threshold: float = HELD_OUT_OVERLAP,
    predictions: Any = None,
) -> tuple[str, Thresholds]:
    """Resolve ``"auto"`` and the default size cut, and validate the thresholds.

    ``size_threshold=None`` is the analysis's declared default (its registry entry's
    ``size_threshold``); ``retrain_and_predict`` and ``predictions`` (either may be ``None``)
    tell :func:`resolve_analysis` which evidence is given.

    Returns:
        The analysis name and the :class:`Thresholds` that :func:`detect` would use.
    """
    resolved = resolve_analysis(analysis, retrain_and_predict, predictions)
    if size_threshold is None:
        size_threshold = ANALYZERS[resolved].size_threshold
    thresholds = Thresholds(
        size=validation.check_fraction(size_threshold, name="size_threshold"),
        silhouette=validation.check_fraction(silhouette_threshold, name="silhouette_threshold",
                                             low=-1.0),
        exre=validation.check_fraction(exre_threshold, name="exre_threshold", high=np.inf),
        source_share=validation.check_fraction(source_share_threshold,
                                               name="source_share_threshold"),
        nested_source_share=validation.check_fraction(nested_source_share_threshold,
                                                      name="nested_source_share_threshold"),
        confusion=validation.check_fraction(confusion_threshold, name="confusion_threshold",
                                            high=2.0),
        overlap=validation.check_fraction(overlap_threshold, name="overlap_threshold",
                                          high=2.0),
    )
    return resolved, thresholds


def detector_params(analysis: str, thresholds: Thresholds, *, reducer: str, n_components: int,
                    n_clusters: ClusterMode, segment_by: str, min_class_size: int,
                    random_state: int, redraw_components: int) -> dict[str, Any]:
    """The parameters a detection run records (run info, MLflow params)."""
    return {
        "reducer": reducer, "n_components": n_components, "n_clusters": n_clusters,
        "analysis": analysis, "size_threshold": thresholds.size,
        "silhouette_threshold": thresholds.silhouette, "exre_threshold": thresholds.exre,
        "source_share_threshold": thresholds.source_share,
        "nested_source_share_threshold": thresholds.nested_source_share,
        "confusion_threshold": thresholds.confusion,
        "overlap_threshold": thresholds.overlap, "redraw_components": redraw_components,
        "segment_by": segment_by, "min_class_size": min_class_size,
        "random_state": random_state,
    }


def segment_rows(sample_ids: np.ndarray, segments: np.ndarray) -> dict[int, np.ndarray]:
    """Row positions of each segment, in canonical (sample-id) order.

    One stable sort by (segment, sample id) and a split, not a pass over every row per segment.
    """
    order = np.lexsort((sample_ids, segments))
    if not len(order):
        return {}
    ordered = segments[order]
    starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    return {int(segment): part for segment, part in
            zip(ordered[np.r_[0, starts]], np.split(order, starts), strict=True)}


def cluster_classes(
    activations: np.ndarray,
    segments: np.ndarray,
    sample_ids: np.ndarray,
    *,
    reducer: ReducerName = "pca",
    n_components: int = 10,
    n_clusters: ClusterMode = 2,
    random_state: int = 0,
    min_class_size: int = MIN_CLASS_SIZE,
    size_threshold: float = EXRE_SIZE_THRESHOLD,
    stability_depth: int = STABILITY_DEPTH,
) -> list[ClassClustering]:
    """Cluster every segment (validated arrays in; see :func:`detect`).

    ``stability_depth`` is passed to :func:`acgate.core.clustering.cluster_class` (how many
    finer levels a stable candidate must keep its boundary at; an experiment's knob, not a
    user setting of :func:`detect`).
    """
    clusterings = []
    for label, positions in segment_rows(sample_ids, segments).items():
        clusterings.append(cluster_class(
            activations[positions], label=label, positions=positions, reducer=reducer,
            n_components=n_components, n_clusters=n_clusters, random_state=random_state,
            min_class_size=min_class_size, size_threshold=size_threshold,
            stability_depth=stability_depth,
        ))
    return clusterings


# ------------------------------------------------------------------------------- analyze


def analyze(
    activations: np.ndarray,
    labels: np.ndarray,
    clusterings: Sequence[ClassClustering],
    *,
    sample_ids: np.ndarray,
    segments: np.ndarray,
    analysis: str = "auto",
    thresholds: Thresholds | None = None,
    class_thresholds: Mapping[int, Thresholds] | None = None,
    retrain_and_predict: RetrainAndPredict | None = None,
    predictions: np.ndarray | None = None,
    random_state: int | None = None,
    redraw_components: int = REDRAW_COMPONENTS,
    params: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
) -> DetectionResult:
    """Judge every class from its clustering and assemble the :class:`DetectionResult`.

    Args:
        activations: Validated activations (n_samples x n_features).
        labels: Validated labels.
        clusterings: One :class:`ClassClustering` per segment (from :func:`cluster_classes`).
        sample_ids: Sample id per row.
        segments: Segment (label or prediction) per row.
        analysis: An analysis name from :data:`ANALYSES`, or ``"auto"``.
        thresholds: Global thresholds (default: paper values 0.35 / 0.10 / 1.0).
        class_thresholds: Per-class thresholds (e.g. calibrated on trusted data) that override
            the global ones for those classes.
        retrain_and_predict: The retrain, for the analyses that need one (``"exre"``).
        predictions: The proxy's prediction per sample (validated); exclusionary
            reclassification uses them for the natural-confusion test.
        random_state: Seed of the analyzers' random steps (the robust analysis, the
            typicality sample of exclusionary reclassification). ``None`` takes
            ``params["random_state"]`` (the seed a caller that records its parameters already
            names there); without either it is an error, never a silent 0.
        redraw_components: The flagged rows of every poisoned class are redrawn around their
            centre in the class's whitened principal space of this many directions, then
            filled with the rows whose nearest neighbours there are mostly flagged
            (:mod:`acgate.core.redraw`); 0 keeps the analysis's rows.
        params: Parameters to record in the run info (the seed used is added when absent).
        timings: Timings measured before this call (recorded in the run info).

    Returns:
        The detection result.

    Raises:
        ValueError: For an unknown analysis, missing evidence the analysis needs, activations
            that carry no information, or a missing (or contradicting) seed.
    """
    start = time.perf_counter()
    analyzer = ANALYZERS[resolve_analysis(analysis, retrain_and_predict, predictions)]
    seed = _analysis_seed(random_state, params)
    validation.check_informative(activations, segments)
    evidence = Evidence(
        activations=activations, labels=labels, thresholds=thresholds or Thresholds(),
        random_state=seed, class_thresholds=dict(class_thresholds or {}),
        retrain_and_predict=retrain_and_predict, predictions=predictions)
    redraw_components = _redraw_setting(redraw_components, params)
    judgements = _redrawn(clusterings, analyzer.judge(clusterings, evidence), evidence,
                          redraw_components)
    recorded = _recorded_params(params, analyzer.name, evidence.thresholds, seed)
    recorded["redraw_components"] = redraw_components
    return _assemble_result(
        clusterings, judgements, evidence, sample_ids=sample_ids, segments=segments,
        params=recorded, timings=timings, start=start)


def _redrawn(clusterings: Sequence[ClassClustering], judgements: Mapping[int, ClassJudgement],
             evidence: Evidence, n_components: int) -> dict[int, ClassJudgement]:
    """The judgements with every poisoned class's rows redrawn (:mod:`acgate.core.redraw`)."""
    redrawn = dict(judgements)
    for clustering in clusterings:
        label = clustering.label
        if clustering.skipped or label not in redrawn:
            continue
        redrawn[label] = redraw_judgement(
            redrawn[label], evidence.activations[clustering.positions],
            n_components=n_components, max_share=evidence.thresholds_for(label).size)
    return redrawn


def _redraw_setting(redraw_components: Any, params: Mapping[str, Any] | None) -> int:
    """:func:`analyze`'s ``redraw_components``, checked, and agreeing with the recorded one."""
    value = validation.check_positive_int(redraw_components, name="redraw_components",
                                          minimum=0)
    recorded = dict(params or {}).get("redraw_components")
    if recorded is not None and recorded != value:
        raise ValueError(f"redraw_components={value!r} contradicts the recorded "
                         f"params['redraw_components']={recorded!r}")
    return value


def _analysis_seed(random_state: int | None, params: Mapping[str, Any] | None) -> int:
    """The seed :func:`analyze` uses: ``random_state``, else the recorded one (see there)."""
    recorded = dict(params or {}).get("random_state")
    if random_state is None:
        if recorded is None:
            raise ValueError("analyze needs random_state (the seed of the analyzers' random "
                             "steps): pass random_state=..., as detect does")
        random_state = recorded
    elif recorded is not None and recorded != random_state:
        raise ValueError(f"random_state={random_state!r} contradicts the recorded "
                         f"params['random_state']={recorded!r}")
    return validation.check_random_state(random_state)


def _recorded_params(params: Mapping[str, Any] | None, analysis: str, thresholds: Thresholds,
                     seed: int) -> dict[str, Any]:
    """The run's parameters: as given, with the analysis, thresholds and seed used filled in."""
    recorded = dict(params or {})
    recorded["analysis"] = analysis
    recorded.setdefault("size_threshold", thresholds.size)
    recorded.setdefault("silhouette_threshold", thresholds.silhouette)
    recorded.setdefault("exre_threshold", thresholds.exre)
    recorded.setdefault("source_share_threshold", thresholds.source_share)
    recorded.setdefault("nested_source_share_threshold", thresholds.nested_source_share)
    recorded.setdefault("confusion_threshold", thresholds.confusion)
    recorded.setdefault("overlap_threshold", thresholds.overlap)
    recorded.setdefault("random_state", seed)
    return recorded


@dataclass(frozen=True)
class _SampleArrays:
    """The per-sample arrays of a result, filled class by class."""

    clusters: np.ndarray
    is_poison: np.ndarray
    poison_score: np.ndarray
    suspected_source: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _SampleArrays:
        """Arrays for ``n`` samples: no cluster, no flag, score 0, no source."""
        return cls(clusters=np.full(n, NO_VALUE, dtype=np.int64),
                   is_poison=np.zeros(n, dtype=bool), poison_score=np.zeros(n, dtype=np.float64),
                   suspected_source=np.full(n, NO_VALUE, dtype=np.int64))

    def fill(self, clustering: ClassClustering, judgement: ClassJudgement) -> None:
        """Write one judged class's clusters, flags, scores and suspected sources."""
        positions = clustering.positions
        self.clusters[positions] = clustering.clusters
        self.is_poison[positions] = judgement.flagged
        self.poison_score[positions] = np.clip(judgement.sample_scores, 0.0, 1.0)
        if not judgement.is_poisoned:
            return
        if judgement.sample_sources is not None:
            flagged = judgement.flagged
            self.suspected_source[positions[flagged]] = judgement.sample_sources[flagged]
        elif judgement.suspected_source is not None:
            self.suspected_source[positions[judgement.flagged]] = judgement.suspected_source


def _assemble_result(clusterings: Sequence[ClassClustering],
                     judgements: Mapping[int, ClassJudgement], evidence: Evidence, *,
                     sample_ids: np.ndarray, segments: np.ndarray, params: Mapping[str, Any],
                     timings: Mapping[str, float] | None, start: float) -> DetectionResult:
    """The per-sample arrays, class reports and run info of the judged classes."""
    notes = [f"class {c.label}: {w}" for c in clusterings for w in c.warnings]
    samples = _SampleArrays.empty(len(evidence.labels))
    reports = []
    for clustering in clusterings:
        used = evidence.thresholds_for(clustering.label)
        if clustering.skipped:
            notes.append(clustering.skipped_reason or f"class {clustering.label} skipped")
            logger.warning("%s", clustering.skipped_reason)
            reports.append(_skipped_report(clustering, used))
            continue
        judgement = judgements[clustering.label]
        samples.fill(clustering, judgement)
        reports.append(_class_report(clustering, judgement, used))
    all_timings = dict(timings or {})
    all_timings["analyze"] = time.perf_counter() - start
    return DetectionResult(
        sample_ids=sample_ids, labels=evidence.labels, segments=segments,
        clusters=samples.clusters, is_poison=samples.is_poison,
        poison_score=samples.poison_score, suspected_source=samples.suspected_source,
        classes=tuple(reports),
        info=RunInfo(params=params, versions=_versions(), timings=all_timings,
                     warnings=tuple(notes)),
    )


def _skipped_report(clustering: ClassClustering, used: Thresholds) -> ClassReport:
    return ClassReport(
        label=clustering.label, n_samples=len(clustering.positions), n_clusters=0,
        cluster_sizes=(), suspicious_cluster=None, size_ratio=None, silhouette=None,
        exre_score=None, suspected_source=None, verdict="skipped",
        reason=clustering.skipped_reason or "skipped", thresholds=used.as_dict(),
    )


def _class_report(clustering: ClassClustering, judgement: ClassJudgement,
                  used: Thresholds) -> ClassReport:
    return ClassReport(
        label=clustering.label, n_samples=len(clustering.positions),
        n_clusters=clustering.n_clusters, cluster_sizes=clustering.cluster_sizes,
        suspicious_cluster=judgement.suspicious_cluster, size_ratio=judgement.size_ratio,
        silhouette=clustering.silhouette, exre_score=judgement.exre_score,
        suspected_source=judgement.suspected_source,
        verdict="poisoned" if judgement.is_poisoned else "clean", reason=judgement.reason,
        scores=judgement.scores, thresholds=used.as_dict(),
    )


# -------------------------------------------------------------------------------- detect


def detect(
    activations: Any,
    labels: Any,
    *,
    reducer: ReducerName = "pca",
    n_components: int = 10,
    n_clusters: ClusterMode | None = None,
    analysis: AnalysisChoice = "auto",
    size_threshold: float | None = None,
    silhouette_threshold: float = 0.10,
    exre_threshold: float = EXRE_THRESHOLD,
    source_share_threshold: float = SOURCE_SHARE_THRESHOLD,
    nested_source_share_threshold: float = NESTED_SOURCE_SHARE_THRESHOLD,
    confusion_threshold: float = CONFUSION_THRESHOLD,
    overlap_threshold: float = HELD_OUT_OVERLAP,
    redraw_components: int = REDRAW_COMPONENTS,
    segment_by: SegmentBy = "label",
    predictions: Any = None,
    sample_ids: Any = None,
    retrain_and_predict: RetrainAndPredict | None = None,
    class_thresholds: Mapping[int, Thresholds] | None = None,
    min_class_size: int = MIN_CLASS_SIZE,
    random_state: int = 0,
) -> DetectionResult:
    """Find poison clusters in last-hidden-layer activations (Activation Clustering).

    Args:
        activations: Array (n_samples x n_features) of last-hidden-layer activations.
        labels: Training label per sample (non-negative integers).
        reducer: ``"pca"`` (default; measured better than whitened ICA), ``"ica"``, ``"none"``.
        n_components: Dimensions after reduction (paper: 10).
        n_clusters: k of k-means (paper: 2); ``"auto"``: per class, k = 2 .. 4 by the best
            silhouette, every cluster but the largest that is within the size threshold is
            then a candidate; or ``"stable"``: the candidates are the stable small clusters
            at the smallest k that has any, plus stable sub-clusters inside them (see
            :mod:`acgate.core.clustering`). ``None``: the analysis's default
            (:func:`resolve_n_clusters`: ``"stable"`` under exclusionary reclassification with
            more than two classes, measured in ``bench/RESULTS.md``, "candidates" and "text";
            else 2).
        analysis: A name from :data:`acgate.core.analyses.ANALYSES` (each described, with the
            evidence it needs, in :mod:`acgate.core.analyses`), or ``"auto"`` (exclusionary
            reclassification when ``retrain_and_predict`` is given, else
            ``"size-silhouette"``).
        size_threshold: Largest share of a class a poison cluster may hold. ``None``: the
            analysis's default: 0.45 for ``"exre"`` (a candidate cut: the retrain is the
            arbiter, and 33% poison plus a few clean neighbours form clusters of ~0.39), else
            0.35 (ART's cut); see ``bench/RESULTS.md``.
        silhouette_threshold: Smallest silhouette that counts as two clusters (paper: .10-.15).
        exre_threshold: ``l/p`` below this is poison under exclusionary reclassification.
        source_share_threshold: ... and at least this share of the cluster must go to the
            suspected source once it is left out (poison is another class's samples; a
            natural mode with no other home scatters).
        nested_source_share_threshold: The same for a stable sub-cluster found inside a
            candidate at a larger k (purer natural groups go to a look-alike class more often).
        confusion_threshold: A candidate is legitimate when the proxy's own predictions mix
            up its class and the suspected source at least this much (share of either class
            predicted as the other, summed; a natural overlap such as shirt and T-shirt). Needs
            ``predictions``; 2 disables it.
        overlap_threshold: A one-source candidate is legitimate (and a tail's clump counts only
            its rows sent to other classes) when a second retrain, without every class's tail
            and every candidate, sends at least this share of the suspected source's own tail
            to the class and at least 6.5x the median share of the other classes' tails (a
            natural overlap such as a cluster of 7s and the 9s). Asked in classes of at least
            1,000 rows with a retrain that gives its activations; 2 disables it.
        redraw_components: The flagged rows of a poisoned class are redrawn by two-centroid
            k-means started from them, in the class's whitened principal space of this many
            directions (:mod:`acgate.core.redraw`: the poison a candidate missed joins, the
            clean rows it swept in go back), then filled there with the rows whose nearest
            neighbours are mostly flagged; 0 keeps the analysis's rows.
        segment_by: ``"label"`` (default) or ``"prediction"`` (needs ``predictions``).
        predictions: The model's prediction per sample: for ``segment_by="prediction"``, and
            for the natural-confusion test of exclusionary reclassification.
        sample_ids: Id per sample (default: row number); flags are reported by id.
        retrain_and_predict: ``(train_mask, query_positions) -> probabilities``; see
            :data:`acgate.core.analyses.RetrainAndPredict`.
        class_thresholds: Per-class :class:`Thresholds` overriding the global ones.
        min_class_size: Smaller classes are skipped with the reason recorded.
        random_state: Seed for every random step.

    Returns:
        A :class:`~acgate.core.result.DetectionResult`.

    Raises:
        ValueError: Bad shapes, NaN/inf, length mismatches, unknown choices, empty input.
        TypeError: Non-numeric activations, non-integer labels, wrong parameter types.
    """
    start = time.perf_counter()
    inputs = _validated_inputs(
        activations, labels, sample_ids=sample_ids, reducer=reducer, segment_by=segment_by,
        n_components=n_components, min_class_size=min_class_size, random_state=random_state,
        retrain_and_predict=retrain_and_predict)
    resolved, thresholds = resolve_settings(
        analysis, retrain_and_predict, size_threshold=size_threshold,
        silhouette_threshold=silhouette_threshold, exre_threshold=exre_threshold,
        source_share_threshold=source_share_threshold,
        nested_source_share_threshold=nested_source_share_threshold,
        confusion_threshold=confusion_threshold, overlap_threshold=overlap_threshold,
        predictions=predictions)
    redraw_components = validation.check_positive_int(
        redraw_components, name="redraw_components", minimum=0)
    n_clusters = resolve_n_clusters(n_clusters, resolved, len(np.unique(inputs.labels)))
    predictions, segments = _segments(inputs, predictions, segment_by)
    params = detector_params(
        resolved, thresholds, reducer=reducer, n_components=inputs.n_components,
        n_clusters=n_clusters, segment_by=segment_by, min_class_size=inputs.min_class_size,
        random_state=inputs.random_state, redraw_components=redraw_components)
    validated = time.perf_counter()
    clusterings = cluster_classes(
        inputs.activations, segments, inputs.sample_ids, reducer=reducer,
        n_components=inputs.n_components, n_clusters=n_clusters,
        random_state=inputs.random_state, min_class_size=inputs.min_class_size,
        size_threshold=thresholds.size,
    )
    clustered = time.perf_counter()
    return analyze(
        inputs.activations, inputs.labels, clusterings, sample_ids=inputs.sample_ids,
        segments=segments, analysis=resolved, thresholds=thresholds,
        class_thresholds=class_thresholds, retrain_and_predict=retrain_and_predict,
        predictions=predictions, random_state=inputs.random_state,
        redraw_components=redraw_components, params=params,
        timings={"validate": validated - start, "cluster": clustered - validated},
    )


@dataclass(frozen=True)
class _Inputs:
    """:func:`detect`'s validated arrays and integer settings."""

    activations: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray
    n_components: int
    min_class_size: int
    random_state: int


def _validated_inputs(activations: Any, labels: Any, *, sample_ids: Any, reducer: str,
                      segment_by: str, n_components: Any, min_class_size: Any,
                      random_state: Any, retrain_and_predict: Any) -> _Inputs:
    """Validate the arrays and the settings that do not depend on the analysis."""
    x = validation.check_activations(activations)
    y = validation.check_labels(labels, x.shape[0])
    validation.check_class_count(y)
    ids = validation.check_sample_ids(sample_ids, x.shape[0])
    validation.check_choice(reducer, REDUCERS, name="reducer")
    validation.check_choice(segment_by, SEGMENTS, name="segment_by")
    n_components = validation.check_positive_int(n_components, name="n_components")
    min_class_size = validation.check_positive_int(min_class_size, name="min_class_size")
    seed = validation.check_random_state(random_state)
    if retrain_and_predict is not None and not callable(retrain_and_predict):
        raise TypeError(f"retrain_and_predict must be callable; got {type(retrain_and_predict)}")
    return _Inputs(activations=x, labels=y, sample_ids=ids, n_components=n_components,
                   min_class_size=min_class_size, random_state=seed)


def _segments(inputs: _Inputs, predictions: Any,
              segment_by: str) -> tuple[np.ndarray | None, np.ndarray]:
    """The validated predictions (or ``None``) and the segment of every row."""
    if predictions is not None:
        predictions = validation.check_labels(predictions, len(inputs.labels),
                                              name="predictions")
    if segment_by == "prediction":
        if predictions is None:
            raise ValueError("segment_by='prediction' needs predictions (one per sample)")
        return predictions, predictions
    return predictions, inputs.labels


# ----------------------------------------------------------------------------- estimator


class ActivationClustering(BaseEstimator):
    """Scikit-learn estimator around :func:`detect`.

    ``__init__`` only stores parameters; :meth:`fit` validates and learns. ``get_params`` /
    ``set_params`` / :func:`sklearn.base.clone` come from :class:`sklearn.base.BaseEstimator`
    (the parameters are those of ``__init__``; an unknown name is an error). Learned
    attributes: ``result_`` (the :class:`DetectionResult`), ``labels_`` (cluster per sample),
    ``is_poison_``, ``poison_score_``, ``suspected_source_``.

    No clusterer or outlier mixin: :meth:`fit_predict` returns the boolean poison flags (not
    cluster ids, not scikit-learn's +1/-1 outlier labels).

    Example:
        >>> est = ActivationClustering(analysis="size-silhouette").fit(acts, labels)
        >>> est.result_.flagged_indices
    """

    def __init__(
        self,
        *,
        reducer: ReducerName = "pca",
        n_components: int = 10,
        n_clusters: ClusterMode | None = None,
        analysis: AnalysisChoice = "auto",
        size_threshold: float | None = None,
        silhouette_threshold: float = 0.10,
        exre_threshold: float = EXRE_THRESHOLD,
        source_share_threshold: float = SOURCE_SHARE_THRESHOLD,
        nested_source_share_threshold: float = NESTED_SOURCE_SHARE_THRESHOLD,
        confusion_threshold: float = CONFUSION_THRESHOLD,
        overlap_threshold: float = HELD_OUT_OVERLAP,
        redraw_components: int = REDRAW_COMPONENTS,
        segment_by: SegmentBy = "label",
        min_class_size: int = MIN_CLASS_SIZE,
        random_state: int = 0,
    ) -> None:
        """Store the parameters (see :func:`detect`)."""
        self.reducer = reducer
        self.n_components = n_components
        self.n_clusters = n_clusters
        self.analysis = analysis
        self.size_threshold = size_threshold
        self.silhouette_threshold = silhouette_threshold
        self.exre_threshold = exre_threshold
        self.source_share_threshold = source_share_threshold
        self.nested_source_share_threshold = nested_source_share_threshold
        self.confusion_threshold = confusion_threshold
        self.overlap_threshold = overlap_threshold
        self.redraw_components = redraw_components
        self.segment_by = segment_by
        self.min_class_size = min_class_size
        self.random_state = random_state

    def fit(self, X: Any, y: Any, *, predictions: Any = None, sample_ids: Any = None,
            retrain_and_predict: RetrainAndPredict | None = None) -> ActivationClustering:
        """Run the detection on activations ``X`` with labels ``y`` (every parameter, seed too)."""
        self.result_ = detect(X, y, predictions=predictions, sample_ids=sample_ids,
                              retrain_and_predict=retrain_and_predict, **self.get_params())
        self.labels_ = np.asarray(self.result_.clusters)
        self.is_poison_ = np.asarray(self.result_.is_poison)
        self.poison_score_ = np.asarray(self.result_.poison_score)
        self.suspected_source_ = np.asarray(self.result_.suspected_source)
        return self

    def fit_predict(self, X: Any, y: Any, **kwargs: Any) -> np.ndarray:
        """Fit, then return the per-sample poison flags."""
        return self.fit(X, y, **kwargs).is_poison_

    def score_samples(self, X: Any = None) -> np.ndarray:
        """Negated poison score of the fitted samples: lower is more abnormal (IsolationForest).

        Raises:
            ValueError: When called before :meth:`fit`, or with a different ``X``.
        """
        if not hasattr(self, "result_"):
            raise ValueError("ActivationClustering is not fitted; call fit(X, y) first")
        if X is not None and len(X) != self.result_.n_samples:
            raise ValueError(f"score_samples scores the fitted samples only: X has {len(X)} "
                             f"rows, the fit had {self.result_.n_samples}")
        return -np.asarray(self.result_.poison_score)
