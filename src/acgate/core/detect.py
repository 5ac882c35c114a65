"""Activation Clustering: ``detect`` (one honest function) and the sklearn-style estimator.

Pipeline (Chen et al. 2018, with the changes measured in ``bench/RESULTS.md``):

1. segment the activations by label (or by the model's prediction);
2. per class, reduce (PCA 10 by default) and split with seeded k-means: under exclusionary
   reclassification the stable small clusters at the smallest k that has any
   (``n_clusters="stable"``, see :mod:`acgate.core.clustering`), else k = 2;
3. decide per class with the chosen analysis (exclusionary reclassification when a
   ``retrain_and_predict`` callable is supplied, else the size + silhouette recipe);
4. flag samples, name the suspected source class.

:func:`cluster_classes` and :func:`analyze` are the two halves, exposed separately so the
Kubeflow pipeline can fan the clustering out per class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sklearn

from acgate.core import validation
from acgate.core.analyses import (  # the ExRe defaults are re-exported for the adapters
    ANALYSES,
    ANALYSIS_REGISTRY,
    CONFUSION_THRESHOLD,
    NESTED_SOURCE_SHARE_THRESHOLD,
    SOURCE_SHARE_THRESHOLD,
    AnalysisName,
    ClassContext,
    ClassJudgement,
    ExReOutcome,
    RetrainAndPredict,
    Thresholds,
    exclusionary_reclassification_groups,
    membership_scores,
    natural_confusion,
    one_source_verdict,
    retrain_mask,
    smallest_cluster,
)
from acgate.core.clustering import MIN_CLASS_SIZE, ClassClustering, ClusterMode, cluster_class
from acgate.core.reducers import REDUCERS, ReducerName
from acgate.core.result import NO_VALUE, ClassReport, DetectionResult, RunInfo

logger = logging.getLogger(__name__)

SegmentBy = Literal["label", "prediction"]
SEGMENTS: tuple[str, ...] = ("label", "prediction")
AnalysisChoice = AnalysisName | Literal["auto"]
#: Default size cut of the per-class analyses (ART's relative-size default; the paper's 35%).
SIZE_THRESHOLD = 0.35
#: Default candidate cut under exclusionary reclassification (measured: bench/RESULTS.md).
EXRE_SIZE_THRESHOLD = 0.45
CLUSTER_MODES: tuple[str, ...] = ("auto", "stable")
#: Exclusionary reclassification also keeps each candidate's *margin* out of the retrain: the
#: rows of its class beyond the top ``share + HALO_MARGIN`` along the direction from the rest of
#: the class to the candidate (at most ``HALO_MAX_SHARE`` of the class). Poison left in the
#: training data re-teaches the trigger: MNIST 20k, BadNets all-to-one at 1%, a candidate with
#: 173 of the 200 poisoned rows: with the other 27 still in training, 73% of the left-out poison
#: was classified as the target again; with a margin that left 3 in training, none was.
HALO_MARGIN = 0.15
HALO_MAX_SHARE = 0.6
#: Only candidates of at most this share get a margin: a larger one holds nearly all of its
#: class's poison already, and margins around many large candidates starve the retrain
#: (digits, BadNets 33% all-to-all: F1 0.94 -> 0.78 with margins on every candidate).
HALO_MAX_CANDIDATE_SHARE = 0.25
#: ... and only in classes of at least this many rows: in a small class the margin takes away
#: much of what the retrain knows of the class's natural variety (digits, ~180 images a class:
#: margins added clean-run false alarms and cost F1 at 33%, bench/RESULTS.md "attack matrix").
HALO_MIN_CLASS_ROWS = 1000
#: Multi-source poison: left out, at most this share of a candidate is classified as its own
#: label ...
MULTI_SOURCE_OWN_SHARE = 0.2
#: ... the rest goes to at least two other classes with at least this mean confidence (the
#: poisoned rows are genuine samples of their source classes; a natural mode of the class that
#: has no other home scatters with low confidence) ...
MULTI_SOURCE_CONFIDENCE = 0.85
#: ... and no single other class takes the source share (that is the one-source rule's case) ...
MULTI_SOURCE_MIN_CLASSES = 2
#: ... and, when the retrain can give its activations, the rows it sends elsewhere are typical
#: members of those classes: the median, over those rows, of the share of the class's own
#: training rows lying at least as far from the class centre (in the retrained model's last
#: hidden layer) is at least this. Poison rows are genuine source samples (typical); a natural
#: mode of a class with no other home lies between classes, far from every centre, however
#: confidently a model assigns it.
MULTI_SOURCE_TYPICALITY = 0.05
#: Reference rows per class for that typicality (seeded sample of the retrain's training rows).
TYPICALITY_REFERENCE_ROWS = 300


def _versions() -> dict[str, str]:
    from acgate import __version__

    return {"acgate": __version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def resolve_analysis(analysis: str, retrain_and_predict: RetrainAndPredict | None) -> str:
    """Resolve ``"auto"`` and check that ``"exre"`` has its retrain callable.

    ``"auto"`` is exclusionary reclassification when a retrain is available (the only analysis
    that told natural sub-populations from poison in our measurements), else size + silhouette.
    """
    validation.check_choice(analysis, (*ANALYSES, "auto"), name="analysis")
    if analysis == "auto":
        return "exre" if retrain_and_predict is not None else "size-silhouette"
    if analysis == "exre" and retrain_and_predict is None:
        raise ValueError(
            "analysis='exre' needs retrain_and_predict (a callable that retrains the proxy "
            "without the candidate clusters); pass one, or choose another analysis from "
            f"{[a for a in ANALYSES if a != 'exre']}"
        )
    return analysis


def resolve_n_clusters(n_clusters: ClusterMode | None, analysis: str,
                       n_classes: int | None = None) -> ClusterMode:
    """Validate ``n_clusters`` and resolve its default.

    ``None`` is ``"stable"`` under exclusionary reclassification with more than two classes,
    else 2 (the paper's 2-means, which the other analyses are defined on). With two classes the
    source-share test cannot clear a natural cluster (whatever leaves its class goes to the one
    other class), so the stable search's extra candidates only add false alarms (measured on
    Rotten Tomatoes: F1 0.51 vs 0.998, ``bench/RESULTS.md`` "text").
    """
    if n_clusters is None:
        many = n_classes is None or n_classes > 2
        return "stable" if analysis == "exre" and many else 2
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
) -> tuple[str, Thresholds]:
    """Resolve ``"auto"`` and the default size cut, and validate the thresholds.

    Returns:
        The analysis name and the :class:`Thresholds` that :func:`detect` would use.
    """
    resolved = resolve_analysis(analysis, retrain_and_predict)
    if size_threshold is None:
        size_threshold = EXRE_SIZE_THRESHOLD if resolved == "exre" else SIZE_THRESHOLD
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
    )
    return resolved, thresholds


def detector_params(analysis: str, thresholds: Thresholds, *, reducer: str, n_components: int,
                    n_clusters: ClusterMode, segment_by: str, min_class_size: int,
                    random_state: int) -> dict[str, Any]:
    """The parameters a detection run records (run info, MLflow params)."""
    return {
        "reducer": reducer, "n_components": n_components, "n_clusters": n_clusters,
        "analysis": analysis, "size_threshold": thresholds.size,
        "silhouette_threshold": thresholds.silhouette, "exre_threshold": thresholds.exre,
        "source_share_threshold": thresholds.source_share,
        "nested_source_share_threshold": thresholds.nested_source_share,
        "confusion_threshold": thresholds.confusion,
        "segment_by": segment_by, "min_class_size": min_class_size,
        "random_state": random_state,
    }


def segment_rows(sample_ids: np.ndarray, segments: np.ndarray) -> dict[int, np.ndarray]:
    """Row positions of each segment, in canonical (sample-id) order."""
    order = np.argsort(sample_ids, kind="stable")
    ordered_segments = segments[order]
    return {int(s): order[ordered_segments == s] for s in np.unique(segments)}


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
) -> list[ClassClustering]:
    """Cluster every segment (validated arrays in; see :func:`detect`)."""
    clusterings = []
    for label, positions in segment_rows(sample_ids, segments).items():
        clusterings.append(cluster_class(
            activations[positions], label=label, positions=positions, reducer=reducer,
            n_components=n_components, n_clusters=n_clusters, random_state=random_state,
            min_class_size=min_class_size, size_threshold=size_threshold,
        ))
    return clusterings


def _candidate_clusters(clustering: ClassClustering, size: float) -> list[int]:
    """Every cluster but the largest (id 0) holding at most ``size`` of the class."""
    sizes = np.asarray(clustering.cluster_sizes, dtype=np.float64)
    shares = sizes / sizes.sum()
    return [c for c in range(1, clustering.n_clusters) if shares[c] <= size]


def _candidate_groups(clustering: ClassClustering, size: float
                      ) -> dict[int, tuple[np.ndarray, bool, str]]:
    """The class's candidates: ``group id -> (member indices, nested, description)``.

    Stable mode: the clustering's :class:`~acgate.core.clustering.CandidateCluster` list;
    otherwise every non-largest cluster within the size cut (group id = cluster id).
    """
    if clustering.candidates is not None:
        return {i: (c.members, c.nested, _describe_candidate(c))
                for i, c in enumerate(clustering.candidates)}
    return {c: (np.flatnonzero(clustering.clusters == c), False, f"cluster {c}")
            for c in _candidate_clusters(clustering, size)}


def _describe_candidate(candidate: Any) -> str:
    if candidate.direction is not None:
        return (f"mode of principal direction {candidate.direction + 1} (separation "
                f"{candidate.separation:.1f} SD)")
    return (f"{'sub-cluster' if candidate.nested else 'cluster'} of k = {candidate.k} "
            f"(stability {candidate.stability:.2f})")


def candidate_margin(reduced: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Class-local indices of a candidate and its margin (see :data:`HALO_MARGIN`).

    Along the direction from the mean of the rest of the class to the candidate's mean, the
    top ``share + HALO_MARGIN`` of the class (at most :data:`HALO_MAX_SHARE`), plus the
    candidate itself.
    """
    n = len(reduced)
    inside = np.zeros(n, dtype=bool)
    inside[members] = True
    if (inside.all() or not inside.any() or inside.mean() > HALO_MAX_CANDIDATE_SHARE
            or n < HALO_MIN_CLASS_ROWS):
        return np.flatnonzero(inside)
    direction = reduced[inside].mean(axis=0) - reduced[~inside].mean(axis=0)
    projection = reduced @ direction
    share = min(inside.mean() + HALO_MARGIN, HALO_MAX_SHARE)
    inside |= projection >= np.quantile(projection, 1.0 - share)
    return np.flatnonzero(inside)


@dataclass(frozen=True)
class _GroupVerdict:
    """Exclusionary reclassification's verdict on one candidate group of a class."""

    group: int
    members: np.ndarray
    outcome: ExReOutcome
    poisoned: bool
    source_share: float
    confusion: float | None
    text: str


def _judge_group(group: int, members: np.ndarray, nested: bool, description: str,
                 outcome: ExReOutcome, used: Thresholds, n_class: int,
                 confusion_of: Callable[[int, int], float] | None,
                 typicality: np.ndarray | None = None) -> _GroupVerdict:
    """l/p, then the source share, then (when predictions are known) the natural confusion."""
    label = outcome.label
    source_share = outcome.n_other / max(len(members), 1)
    needed = used.nested_source_share if nested else used.source_share
    confusion = None
    multi = _multi_source(outcome, len(members), needed, typicality)
    if multi is not None:
        poisoned = True
        why = multi
    else:
        if (outcome.score < used.exre and source_share >= needed and confusion_of is not None
                and outcome.source is not None):
            confusion = confusion_of(label, outcome.source)
        poisoned, why = one_source_verdict(outcome.score, source_share, confusion, used,
                                           nested=nested, label=label,
                                           source=outcome.source)
    elsewhere = (f"{outcome.n_other} as class {outcome.source}" if outcome.source is not None
                 else "none as another class")
    text = (f"{description}, {len(members) / n_class:.1%} of the class, left out of a retrain: "
            f"{outcome.n_own} classified as {label}, {elsewhere}; {why} -> "
            f"{'poison' if poisoned else 'legitimate'}")
    return _GroupVerdict(group, members, outcome, poisoned, source_share, confusion, text)


def _multi_source(outcome: ExReOutcome, n_members: int, needed: float,
                  typicality: np.ndarray | None) -> str | None:
    """Why a candidate is multi-source poison (see :data:`MULTI_SOURCE_OWN_SHARE`), or None.

    Without ``typicality`` (a retrain that cannot give its activations) the rule is off: the
    retrain's confidence alone does not tell a between-classes mode from source samples.
    """
    if outcome.max_probability is None or typicality is None or n_members == 0:
        return None
    elsewhere = outcome.predicted != outcome.label
    own_share = 1.0 - elsewhere.mean()
    classes = np.unique(outcome.predicted[elsewhere])
    if (own_share > MULTI_SOURCE_OWN_SHARE or len(classes) < MULTI_SOURCE_MIN_CLASSES
            or outcome.n_other / n_members >= needed):
        return None
    confidence = float(outcome.max_probability[elsewhere].mean())
    typical = float(np.median(typicality[elsewhere]))
    logger.debug("class %s candidate of %d: own %.2f, %d other classes, confidence %.2f, "
                 "typicality %.2f", outcome.label, n_members, own_share, len(classes),
                 confidence, typical)
    if confidence < MULTI_SOURCE_CONFIDENCE or typical < MULTI_SOURCE_TYPICALITY:
        return None
    return (f"{own_share:.0%} classified as {outcome.label} (<= {MULTI_SOURCE_OWN_SHARE:.0%}), "
            f"the rest as {len(classes)} other classes with mean confidence {confidence:.2f} "
            f"(>= {MULTI_SOURCE_CONFIDENCE:g}) and median typicality {typical:.2f} (>= "
            f"{MULTI_SOURCE_TYPICALITY:g}): samples of several source classes")


def _no_candidate_judgement(clustering: ClassClustering, used: Thresholds) -> ClassJudgement:
    smallest, share = smallest_cluster(clustering)
    why = (f"no stable cluster of at most {used.size:.0%} of the class"
           if clustering.candidates is not None else
           f"smallest cluster holds {share:.1%} of the class (> size threshold {used.size:.0%})")
    silhouette = clustering.silhouette if clustering.silhouette is not None else float("nan")
    return ClassJudgement(
        suspicious_cluster=None, size_ratio=share, is_poisoned=False,
        reason=f"no candidate: {why}", flagged=np.zeros(len(clustering.positions), dtype=bool),
        sample_scores=membership_scores(clustering, smallest),
        scores={"size_ratio": share, "silhouette": silhouette},
    )


def _class_judgement(clustering: ClassClustering, verdicts: Sequence[_GroupVerdict]
                     ) -> ClassJudgement:
    """Combine the verdicts on a class's candidate groups into its judgement."""
    label = clustering.label
    n_class = len(clustering.positions)
    flagged = np.zeros(n_class, dtype=bool)
    sample_sources = np.full(n_class, NO_VALUE, dtype=np.int64)
    for verdict in verdicts:
        sample_sources[verdict.members] = verdict.outcome.predicted
        if verdict.poisoned:
            # Per-sample refinement: a member still classified as its own label is kept.
            flagged[verdict.members[verdict.outcome.predicted != label]] = True
    is_poisoned = any(v.poisoned for v in verdicts)
    # The class is reported through its most poison-like candidate (lowest l/p); when it is
    # poisoned, through the most poison-like of the candidates judged poison.
    worst = min([v for v in verdicts if v.poisoned] or verdicts,
                key=lambda v: (v.outcome.score, -v.outcome.n_other))
    suspicious = int(np.bincount(clustering.clusters[worst.members]).argmax())
    scores = membership_scores(clustering, suspicious)
    for verdict in verdicts:
        # Inside a candidate, the retrained model's own-label probability is the score (one
        # retrain: a row in two overlapping candidates has one probability).
        scores[verdict.members] = 1.0 - verdict.outcome.own_probability
    share = len(worst.members) / n_class
    silhouette = clustering.silhouette if clustering.silhouette is not None else float("nan")
    named = {"size_ratio": share, "silhouette": silhouette, "exre": worst.outcome.score,
             "source_share": worst.source_share}
    if worst.confusion is not None:
        named["confusion"] = worst.confusion
    if clustering.candidates is not None:
        named["candidate_k"] = float(clustering.candidates[worst.group].k)
        named["stability"] = clustering.candidates[worst.group].stability
    return ClassJudgement(
        suspicious_cluster=suspicious, size_ratio=share, is_poisoned=is_poisoned,
        reason="; ".join(v.text for v in verdicts), flagged=flagged, sample_scores=scores,
        suspected_source=worst.outcome.source if is_poisoned else None,
        exre_score=worst.outcome.score, scores=named, sample_sources=sample_sources,
    )


def _typicality(groups: Mapping[tuple[int, int], tuple[int, np.ndarray]],
                outcomes: Mapping[tuple[int, int], ExReOutcome], labels: np.ndarray,
                retrain_and_predict: RetrainAndPredict, leave_out: np.ndarray | None,
                random_state: int) -> dict[tuple[int, int], np.ndarray]:
    """Per group, how typical each row is of the class the retrain sent it to (NaN: own label).

    Needs ``retrain_and_predict.activations(train_mask, positions)`` (the retrained model's
    last-hidden-layer activations; :func:`acgate.torch.exre.make_retrain_and_predict` has it).
    A row's typicality is the share of its predicted class's reference training rows (a seeded
    sample of :data:`TYPICALITY_REFERENCE_ROWS`) lying at least as far from that class's centre
    as the row: about uniform for genuine members of the class, near 0 for rows between classes.
    """
    embed = getattr(retrain_and_predict, "activations", None)
    if embed is None or not groups:
        return {}
    train_mask = retrain_mask(groups, len(labels), leave_out)  # the retrain just made
    queries = {key: positions[outcomes[key].predicted != label]
               for key, (label, positions) in groups.items()}
    targets = {key: outcomes[key].predicted[outcomes[key].predicted != groups[key][0]]
               for key in groups}
    wanted = np.unique(np.concatenate([t for t in targets.values()] or [np.zeros(0, int)]))
    if not len(wanted):
        return {}
    rng = np.random.default_rng(random_state)
    references = {}
    for target in wanted:
        rows = np.flatnonzero(train_mask & (labels == target))
        if len(rows) > TYPICALITY_REFERENCE_ROWS:
            rows = np.sort(rng.choice(rows, TYPICALITY_REFERENCE_ROWS, replace=False))
        references[int(target)] = rows
    asked = np.concatenate([*queries.values(), *references.values()])
    embedded = np.asarray(embed(train_mask, asked), dtype=np.float64)
    row_of = {int(p): i for i, p in enumerate(asked)}
    centres, spreads = {}, {}
    for target, rows in references.items():
        points = embedded[[row_of[int(r)] for r in rows]]
        centres[target] = points.mean(axis=0)
        spreads[target] = np.sort(np.linalg.norm(points - centres[target], axis=1))
    result = {}
    for key, (label, positions) in groups.items():
        values = np.full(len(positions), np.nan)
        elsewhere = np.flatnonzero(outcomes[key].predicted != label)
        for index, target in zip(elsewhere, targets[key], strict=True):
            reference = spreads.get(int(target))
            if reference is None or not len(reference):
                continue
            point = embedded[row_of[int(positions[index])]]
            distance = np.linalg.norm(point - centres[int(target)])
            farther = len(reference) - np.searchsorted(reference, distance, side="left")
            values[index] = (1 + farther) / (1 + len(reference))
        result[key] = values
    return result


def _exre_judgements(
    clusterings: Sequence[ClassClustering],
    thresholds: Thresholds,
    class_thresholds: Mapping[int, Thresholds],
    labels: np.ndarray,
    predictions: np.ndarray | None,
    retrain_and_predict: RetrainAndPredict,
    random_state: int = 0,
) -> dict[int, ClassJudgement]:
    judged = [c for c in clusterings if not c.skipped]
    candidates = {c.label: _candidate_groups(c, class_thresholds.get(c.label, thresholds).size)
                  for c in judged}
    groups = {(c.label, group): (c.label, c.positions[members])
              for c in judged for group, (members, _, _) in candidates[c.label].items()}
    margins = [c.positions[candidate_margin(c.reduced, members)]
               for c in judged if c.reduced is not None
               for members, _, _ in candidates[c.label].values()]
    leave_out = np.concatenate(margins) if margins else None
    outcomes = exclusionary_reclassification_groups(
        groups, len(labels), retrain_and_predict, leave_out=leave_out)
    typicality = _typicality(groups, outcomes, labels, retrain_and_predict, leave_out,
                             random_state)
    left_out = np.zeros(len(labels), dtype=bool)
    for _, positions in groups.values():
        left_out[positions] = True
    confusion_of = None if predictions is None else (
        lambda label, source: natural_confusion(predictions, labels, label, source,
                                                exclude=left_out))
    judgements: dict[int, ClassJudgement] = {}
    for clustering in judged:
        used = class_thresholds.get(clustering.label, thresholds)
        if not candidates[clustering.label]:
            judgements[clustering.label] = _no_candidate_judgement(clustering, used)
            continue
        verdicts = [
            _judge_group(group, members, nested, description,
                         outcomes[(clustering.label, group)], used, len(clustering.positions),
                         confusion_of, typicality.get((clustering.label, group)))
            for group, (members, nested, description) in candidates[clustering.label].items()]
        judgements[clustering.label] = _class_judgement(clustering, verdicts)
    return judgements


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
        retrain_and_predict: Needed by ``"exre"``.
        predictions: The proxy's prediction per sample (validated); exclusionary
            reclassification uses them for the natural-confusion test.
        params: Parameters to record in the run info.
        timings: Timings measured before this call (recorded in the run info).

    Returns:
        The detection result.
    """
    start = time.perf_counter()
    thresholds = thresholds or Thresholds()
    class_thresholds = dict(class_thresholds or {})
    analysis = resolve_analysis(analysis, retrain_and_predict)
    n = len(labels)
    validation.check_informative(activations, segments)
    notes: list[str] = []
    for clustering in clusterings:
        notes.extend(f"class {clustering.label}: {w}" for w in clustering.warnings)

    if analysis == "exre":
        judgements = _exre_judgements(clusterings, thresholds, class_thresholds, labels,
                                      predictions, retrain_and_predict,
                                      int(dict(params or {}).get("random_state", 0)))
    else:
        function = ANALYSIS_REGISTRY[analysis]
        centroids = {c.label: activations[c.positions].mean(axis=0) for c in clusterings
                     if len(c.positions)}
        judgements = {}
        for clustering in clusterings:
            if clustering.skipped:
                continue
            context = ClassContext(centroids=centroids,
                                   activations=activations[clustering.positions],
                                   random_state=int(dict(params or {}).get("random_state", 0)))
            judgements[clustering.label] = function(
                clustering, class_thresholds.get(clustering.label, thresholds), context)

    clusters = np.full(n, NO_VALUE, dtype=np.int64)
    is_poison = np.zeros(n, dtype=bool)
    poison_score = np.zeros(n, dtype=np.float64)
    suspected_source = np.full(n, NO_VALUE, dtype=np.int64)
    reports = []
    for clustering in clusterings:
        label = clustering.label
        positions = clustering.positions
        used = class_thresholds.get(label, thresholds)
        if clustering.skipped:
            notes.append(clustering.skipped_reason or f"class {label} skipped")
            logger.warning("%s", clustering.skipped_reason)
            reports.append(ClassReport(
                label=label, n_samples=len(positions), n_clusters=0, cluster_sizes=(),
                suspicious_cluster=None, size_ratio=None, silhouette=None, exre_score=None,
                suspected_source=None, verdict="skipped",
                reason=clustering.skipped_reason or "skipped", thresholds=used.as_dict(),
            ))
            continue
        judgement = judgements[label]
        clusters[positions] = clustering.clusters
        is_poison[positions] = judgement.flagged
        poison_score[positions] = np.clip(judgement.sample_scores, 0.0, 1.0)
        if judgement.is_poisoned:
            if judgement.sample_sources is not None:
                flagged = judgement.flagged
                suspected_source[positions[flagged]] = judgement.sample_sources[flagged]
            elif judgement.suspected_source is not None:
                suspected_source[positions[judgement.flagged]] = judgement.suspected_source
        reports.append(ClassReport(
            label=label, n_samples=len(positions), n_clusters=clustering.n_clusters,
            cluster_sizes=clustering.cluster_sizes,
            suspicious_cluster=judgement.suspicious_cluster,
            size_ratio=judgement.size_ratio, silhouette=clustering.silhouette,
            exre_score=judgement.exre_score, suspected_source=judgement.suspected_source,
            verdict="poisoned" if judgement.is_poisoned else "clean", reason=judgement.reason,
            scores=judgement.scores, thresholds=used.as_dict(),
        ))

    all_timings = dict(timings or {})
    all_timings["analyze"] = time.perf_counter() - start
    recorded = dict(params or {})
    recorded["analysis"] = analysis
    recorded.setdefault("size_threshold", thresholds.size)
    recorded.setdefault("silhouette_threshold", thresholds.silhouette)
    recorded.setdefault("exre_threshold", thresholds.exre)
    recorded.setdefault("source_share_threshold", thresholds.source_share)
    recorded.setdefault("nested_source_share_threshold", thresholds.nested_source_share)
    recorded.setdefault("confusion_threshold", thresholds.confusion)
    return DetectionResult(
        sample_ids=sample_ids, labels=labels, segments=segments, clusters=clusters,
        is_poison=is_poison, poison_score=poison_score, suspected_source=suspected_source,
        classes=tuple(reports),
        info=RunInfo(params=recorded, versions=_versions(), timings=all_timings,
                     warnings=tuple(notes)),
    )


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
    exre_threshold: float = 1.0,
    source_share_threshold: float = SOURCE_SHARE_THRESHOLD,
    nested_source_share_threshold: float = NESTED_SOURCE_SHARE_THRESHOLD,
    confusion_threshold: float = CONFUSION_THRESHOLD,
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
            :mod:`acgate.core.clustering`). ``None``: ``"stable"`` under exclusionary
            reclassification with more than two classes (measured: ``bench/RESULTS.md``,
            "candidates" and "text"), else 2.
        analysis: ``"auto"`` (exclusionary reclassification when ``retrain_and_predict`` is
            given, else ``"size-silhouette"``), or one of ``"exre"``, ``"size-silhouette"``,
            ``"size"``, ``"silhouette"``, ``"distance"``.
        size_threshold: Largest share of a class a poison cluster may hold. ``None``: 0.45 for
            ``"exre"`` (a candidate cut: the retrain is the arbiter, and 33% poison plus a few
            clean neighbours form clusters of ~0.39), else 0.35 (ART's cut); see
            ``bench/RESULTS.md``.
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
    resolved, thresholds = resolve_settings(
        analysis, retrain_and_predict, size_threshold=size_threshold,
        silhouette_threshold=silhouette_threshold, exre_threshold=exre_threshold,
        source_share_threshold=source_share_threshold,
        nested_source_share_threshold=nested_source_share_threshold,
        confusion_threshold=confusion_threshold)
    n_clusters = resolve_n_clusters(n_clusters, resolved, len(np.unique(y)))
    if predictions is not None:
        predictions = validation.check_labels(predictions, x.shape[0], name="predictions")
    if segment_by == "prediction":
        if predictions is None:
            raise ValueError("segment_by='prediction' needs predictions (one per sample)")
        segments = predictions
    else:
        segments = y
    params = detector_params(
        resolved, thresholds, reducer=reducer, n_components=n_components,
        n_clusters=n_clusters, segment_by=segment_by, min_class_size=min_class_size,
        random_state=seed)
    validated = time.perf_counter()
    clusterings = cluster_classes(
        x, segments, ids, reducer=reducer, n_components=n_components, n_clusters=n_clusters,
        random_state=seed, min_class_size=min_class_size, size_threshold=thresholds.size,
    )
    clustered = time.perf_counter()
    return analyze(
        x, y, clusterings, sample_ids=ids, segments=segments, analysis=resolved,
        thresholds=thresholds, class_thresholds=class_thresholds,
        retrain_and_predict=retrain_and_predict, predictions=predictions, params=params,
        timings={"validate": validated - start, "cluster": clustered - validated},
    )


class ActivationClustering:
    """Scikit-learn-style estimator around :func:`detect`.

    ``__init__`` only stores parameters; :meth:`fit` validates and learns. Learned attributes:
    ``result_`` (the :class:`DetectionResult`), ``labels_`` (cluster per sample), ``is_poison_``,
    ``poison_score_``, ``suspected_source_``.

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
        exre_threshold: float = 1.0,
        source_share_threshold: float = SOURCE_SHARE_THRESHOLD,
        nested_source_share_threshold: float = NESTED_SOURCE_SHARE_THRESHOLD,
        confusion_threshold: float = CONFUSION_THRESHOLD,
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
        self.segment_by = segment_by
        self.min_class_size = min_class_size
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator (scikit-learn convention)."""
        del deep
        return {name: getattr(self, name) for name in (
            "reducer", "n_components", "n_clusters", "analysis", "size_threshold",
            "silhouette_threshold", "exre_threshold", "source_share_threshold",
            "nested_source_share_threshold", "confusion_threshold", "segment_by",
            "min_class_size", "random_state")}

    def set_params(self, **params: Any) -> ActivationClustering:
        """Set parameters; unknown names are an error (never silently ignored)."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"unknown parameter {name!r}; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def fit(self, X: Any, y: Any, *, predictions: Any = None, sample_ids: Any = None,
            retrain_and_predict: RetrainAndPredict | None = None) -> ActivationClustering:
        """Run the detection on activations ``X`` with labels ``y``."""
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
