"""Incremental scans: a new partition judged against the last accepted scan, without retraining.

A nightly job that appends a partition to accepted data need not retrain the proxy on
everything. The baseline scan's proxy (trained on the accepted data) gives the new rows'
activations; the baseline's own activations of its kept rows are the *reference*. A new row is
**foreign** when the rows nearest to it in the reference (:data:`NEIGHBOURS`, in the reference's
standardised activation space) are at least :data:`PURITY` one other class and the proxy
predicts that class too: the baseline proxy never saw the new partition's trigger, so poison
rows look like what they are, samples of their source class wearing another label. A clean row
that the proxy gets wrong is usually a hard case between classes (a mixed neighbourhood).

Some classes overlap by nature (Fashion-MNIST's shirts, coats and pullovers): the reference
measures each class's *natural* foreign share on itself (leave-one-out, the same test). A class
of the partition is **poisoned** when it holds at least :data:`MIN_FOREIGN_ROWS` foreign rows
and its foreign share exceeds its natural share by at least :data:`FOREIGN_SHARE`. In a
poisoned class, the flagged rows are the foreign ones and every other row the proxy predicts as
another class while its neighbours' majority is not its label (a blended trigger leaves a
planted row between classes, but the proxy, which never saw the trigger, still predicts its
source); the suspected source is the neighbours' class of a foreign row, else the prediction.
Chosen on ``bench/RESULTS.md`` "incremental" (mean F1 over 3 seeds, patch / blend, foreign rows
only -> this rule): Fashion-MNIST 0.845 / 0.783 -> 0.908 / 0.901; MNIST (seeds 1, 2; seed 0's
baseline raised a false alarm and is refused) 0.962 / 0.961 -> 0.981 / 0.986; the class
decision, and so every clean partition's verdict, is unchanged.

The partition has **shifted** (and only a full scan can judge it) when more than
:data:`SHIFT_SHARE` of its rows lie farther from the reference than
:data:`DISTANCE_QUANTILE` of the reference's own nearest-neighbour distances, or when more than
:data:`SHIFT_FOREIGN_SHARE` of every class's rows are foreign: a new distribution or a new
labelling, not a few planted rows.

What this mode cannot see: poison whose trigger the baseline proxy already learned (the baseline
then held undetected poison) looks like its label. A full scan on a schedule covers that case.
Measured in ``bench/RESULTS.md`` ("incremental").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from acgate.core.detect import _versions as core_versions  # the versions every result records
from acgate.core.result import NO_VALUE, ClassReport, DetectionResult, RunInfo
from acgate.core.validation import (
    check_activations,
    check_labels,
    check_positive_int,
    check_sample_ids,
)

#: Reference rows per class (a seeded sample of the baseline's kept rows): memory and time stay
#: bounded however large the accepted data grows.
REFERENCE_ROWS_PER_CLASS = 2000
#: Nearest reference rows that judge a new row.
NEIGHBOURS = 10
#: Smallest share of those neighbours in one other class for a row to be foreign. Chosen on
#: ``bench/RESULTS.md`` "incremental" (all-to-one at 5% of the partition, 3 seeds; mean F1
#: patch / blend): 0.8: MNIST 0.951 / 0.958, Fashion-MNIST 0.793 / 0.667; 0.6: 0.965 / 0.961,
#: 0.838 / 0.754; 0.5: 0.968 / 0.964, 0.845 / 0.782; no clean partition flagged at any of them.
PURITY = 0.5
#: A poisoned class holds at least this many foreign rows ...
MIN_FOREIGN_ROWS = 3
#: ... and its foreign share exceeds the baseline's own (natural) share by at least this.
FOREIGN_SHARE = 0.05
#: A row is far from the reference beyond this quantile of the reference's own distances ...
DISTANCE_QUANTILE = 0.99
#: ... and the partition has shifted when more than this share of its rows are far ...
SHIFT_SHARE = 0.2
#: ... or when more than this share of the rows of every class are foreign.
SHIFT_FOREIGN_SHARE = 0.2
#: Standardisation divides by each unit's spread, at least this share of the median spread.
SCALE_FLOOR = 0.1


@dataclass(frozen=True)
class Reference:
    """The baseline's kept rows, as the incremental judge compares against them.

    Attributes:
        activations: Standardised activations of a seeded sample of the kept rows.
        labels: Their labels.
        mean: Per-feature mean used to standardise (of the sampled rows).
        scale: Per-feature standard deviation used to standardise (floored).
        far: Nearest-neighbour distance beyond which a new row is far from the reference.
        natural: Per class, the share of its reference rows that are foreign among the rest
            of the reference (leave-one-out): the overlap the class has by nature.
    """

    activations: np.ndarray
    labels: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    far: float
    natural: dict[int, float] = field(default_factory=dict)

    def standardise(self, activations: np.ndarray) -> np.ndarray:
        """Activations in the reference's standardised space."""
        return (activations - self.mean) / self.scale


def reference_rows(labels: Any, *, keep: Any = None,
                   rows_per_class: int = REFERENCE_ROWS_PER_CLASS,
                   random_state: int = 0) -> np.ndarray:
    """The rows of a baseline that its reference holds: a seeded sample of each class's kept rows.

    Only labels are needed, so a caller holding a large baseline in parts can read just these
    rows' activations (the pipeline's baseline artifact), and :func:`build_reference` on them
    gives the very reference it gives on the whole baseline.

    Args:
        labels: The baseline's labels, one per row.
        keep: Rows that may be chosen (the baseline's unflagged rows); default every row.
        rows_per_class: Largest sample per class.
        random_state: Seed of the sample.

    Returns:
        Row positions, grouped by class (ascending labels), ascending within a class.
    """
    check_positive_int(rows_per_class, name="rows_per_class")
    labels = check_labels(labels, len(np.asarray(labels)), name="reference labels")
    kept = np.ones(len(labels), bool) if keep is None else np.asarray(keep, bool)
    if kept.shape != labels.shape:
        raise ValueError(f"keep has shape {kept.shape}, expected {labels.shape}")
    rng = np.random.default_rng(random_state)
    chosen = []
    for label in np.unique(labels[kept]):
        rows = np.flatnonzero(kept & (labels == label))
        if len(rows) > rows_per_class:
            rows = np.sort(rng.choice(rows, rows_per_class, replace=False))
        chosen.append(rows)
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def build_reference(activations: Any, labels: Any, *, keep: Any = None,
                    predictions: Any = None, rows_per_class: int = REFERENCE_ROWS_PER_CLASS,
                    random_state: int = 0) -> Reference:
    """The reference of a baseline scan: a seeded per-class sample of its kept rows.

    Args:
        activations: ``n x d`` activations of the baseline's rows, from its proxy.
        labels: Their labels.
        keep: Rows to use (the baseline's unflagged rows); default every row.
        predictions: The baseline proxy's predictions of those rows (for the natural shares,
            as :func:`judge_partition` uses them); ``None``: neighbours only.
        rows_per_class: Largest sample per class.
        random_state: Seed of the sample.

    Returns:
        The :class:`Reference`.
    """
    activations = check_activations(activations, name="reference activations")
    labels = check_labels(labels, len(activations), name="reference labels")
    rows = reference_rows(labels, keep=keep, rows_per_class=rows_per_class,
                          random_state=random_state)
    if len(rows) <= NEIGHBOURS:
        raise ValueError(f"the baseline has {len(rows)} kept rows; an incremental scan needs "
                         f"more than {NEIGHBOURS}")
    sample = activations[rows]
    mean = sample.mean(axis=0)
    std = sample.std(axis=0)
    # A unit nearly dead in the baseline must not turn a tiny new activation into a shift.
    floor = SCALE_FLOOR * max(float(np.median(std)), 1e-12)
    scale = np.maximum(std, floor)
    space = (sample - mean) / scale
    # Leave-one-out on the reference itself: what "near" means here, and each class's overlap.
    k = min(NEIGHBOURS, len(rows) - 1)
    distances, index = NearestNeighbors(n_neighbors=k + 1).fit(space).kneighbors(space)
    far = float(np.quantile(distances[:, 1], DISTANCE_QUANTILE))
    kept_labels = labels[rows]
    predicted = None if predictions is None else check_labels(
        predictions, len(labels), name="reference predictions")[rows]
    foreign = _foreign(kept_labels[index[:, 1:]], kept_labels, predicted)[0]
    natural = {int(c): float(foreign[kept_labels == c].mean()) for c in np.unique(kept_labels)}
    return Reference(activations=space, labels=kept_labels, mean=mean, scale=scale, far=far,
                     natural=natural)


def _foreign(neighbour_labels: np.ndarray, labels: np.ndarray, predictions: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: foreign or not, the neighbours' majority class and its share."""
    n, k = neighbour_labels.shape
    classes, codes = np.unique(neighbour_labels, return_inverse=True)
    codes = codes.reshape(n, k)  # counted per row without an n x k x C array
    counts = np.bincount(np.repeat(np.arange(n), k) * len(classes) + codes.ravel(),
                         minlength=n * len(classes)).reshape(n, len(classes))
    top = counts.argmax(axis=1)
    majority = classes[top]
    purity = counts[np.arange(n), top] / k
    foreign = (majority != labels) & (purity >= PURITY)
    if predictions is not None:
        foreign &= predictions == majority
    return foreign, majority, purity


@dataclass(frozen=True)
class _RowEvidence:
    neighbour_class: np.ndarray  # majority class of each row's reference neighbours
    purity: np.ndarray  # share of the neighbours in that class
    distance: np.ndarray  # distance to the nearest reference row
    foreign: np.ndarray  # the row looks like another class (see the module docstring)
    elsewhere: np.ndarray  # flagged in a poisoned class (see the module docstring)
    source: np.ndarray  # the class such a row belongs to (neighbours', else the prediction)


def _row_evidence(reference: Reference, activations: np.ndarray, labels: np.ndarray,
                  predictions: np.ndarray | None) -> _RowEvidence:
    space = reference.standardise(activations)
    k = min(NEIGHBOURS, len(reference.labels))
    distances, index = NearestNeighbors(n_neighbors=k).fit(
        reference.activations).kneighbors(space)
    foreign, neighbour_class, purity = _foreign(reference.labels[index], labels, predictions)
    elsewhere, source = foreign.copy(), neighbour_class.copy()
    if predictions is not None:
        # The baseline proxy never saw the partition's trigger: a planted row is predicted as
        # its source class even where its neighbourhood is mixed (a blended trigger moves it
        # between classes).
        assigned = (predictions != labels) & (neighbour_class != labels) & ~foreign
        elsewhere |= assigned
        source = np.where(assigned, predictions, neighbour_class)
    return _RowEvidence(neighbour_class, purity, distances[:, 0], foreign, elsewhere, source)


def _class_report(label: int, rows: np.ndarray, evidence: _RowEvidence,
                  reference: Reference) -> ClassReport:
    foreign = evidence.foreign[rows]
    n, n_foreign = len(rows), int(foreign.sum())
    share = n_foreign / n if n else 0.0
    natural = reference.natural.get(label, 0.0)
    poisoned = n_foreign >= MIN_FOREIGN_ROWS and share - natural >= FOREIGN_SHARE
    n_flagged = int(evidence.elsewhere[rows].sum()) if poisoned else 0
    source = None
    if n_foreign:
        looks, counts = np.unique(evidence.neighbour_class[rows][foreign], return_counts=True)
        source = int(looks[counts.argmax()])
        where = ", ".join(f"{c} as class {int(v)}" for v, c in
                          sorted(zip(looks, counts, strict=True), key=lambda p: -p[1])[:4])
        seen = f"{n_foreign} of {n} new rows ({share:.1%}) look like another class ({where})"
    else:
        seen = f"none of {n} new rows looks like another class"
    cut = (f"the baseline's own share {natural:.1%}; poison at >= {MIN_FOREIGN_ROWS} rows and "
           f">= {FOREIGN_SHARE:.0%} above it")
    reason = (f"against the baseline's reference: {seen}; {cut} -> "
              f"{'poison' if poisoned else 'legitimate'}")
    if poisoned:
        reason += (f"; flagged: the {n_flagged} foreign rows and those the baseline's proxy puts "
                   f"in another class while their nearest baseline rows' majority is not class "
                   f"{label}")
    return ClassReport(
        label=label, n_samples=n, n_clusters=0, cluster_sizes=(), suspicious_cluster=None,
        size_ratio=share, silhouette=None, exre_score=None,
        suspected_source=source if poisoned else None,
        verdict="poisoned" if poisoned else "clean", reason=reason,
        scores={"foreign_rows": float(n_foreign), "foreign_share": share,
                "natural_share": natural,
                "far_share": float(np.mean(evidence.distance[rows] > reference.far))},
        thresholds={"foreign_share": FOREIGN_SHARE, "min_foreign_rows": float(MIN_FOREIGN_ROWS),
                    "purity": PURITY})


def judge_partition(reference: Reference, activations: Any, labels: Any, *,
                    predictions: Any = None, sample_ids: Any = None) -> DetectionResult:
    """Judge a new partition's rows against a baseline's :class:`Reference`.

    Args:
        reference: From :func:`build_reference` on the baseline scan.
        activations: ``n x d`` activations of the new rows, from the baseline's proxy.
        labels: Their labels.
        predictions: The baseline proxy's predictions of the new rows (a foreign row must be
            predicted as the class it looks like); ``None``: neighbours only.
        sample_ids: Row ids (default ``0..n-1``).

    Returns:
        A :class:`DetectionResult` (``info.params["analysis"] == "incremental"``);
        ``info.extra["shifted"]`` says whether the partition has moved too far from the
        baseline for this mode (the caller then runs a full scan), with the reason in
        ``info.extra["shift_reason"]``.
    """
    started = time.perf_counter()
    activations = check_activations(activations)
    labels = check_labels(labels, len(activations))
    if activations.shape[1] != reference.activations.shape[1]:
        raise ValueError(f"the new rows have {activations.shape[1]} activation dimensions, the "
                         f"baseline's reference {reference.activations.shape[1]}: not the "
                         f"baseline's proxy")
    if predictions is not None:
        predictions = check_labels(predictions, len(activations), name="predictions")
    ids = (np.arange(len(labels)) if sample_ids is None
           else check_sample_ids(sample_ids, len(labels)))
    evidence = _row_evidence(reference, activations, labels, predictions)
    known = set(np.unique(reference.labels).tolist())
    reports = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if int(label) not in known:
            reports.append(ClassReport(
                label=int(label), n_samples=len(rows), n_clusters=0, cluster_sizes=(),
                suspicious_cluster=None, size_ratio=None, silhouette=None, exre_score=None,
                suspected_source=None, verdict="skipped",
                reason=f"class {int(label)} is not in the baseline: a full scan must judge it"))
            continue
        reports.append(_class_report(int(label), rows, evidence, reference))
    poisoned = {r.label: r.suspected_source for r in reports if r.verdict == "poisoned"}
    flagged = evidence.elsewhere & np.isin(labels, list(poisoned))
    source = np.where(flagged, evidence.source, NO_VALUE)
    judged = np.isin(labels, list(known))
    score = np.where(judged & (evidence.neighbour_class != labels), evidence.purity, 0.0)
    unknown = sorted({r.label for r in reports if r.verdict == "skipped"})
    far_share = float(np.mean(evidence.distance > reference.far)) if len(labels) else 0.0
    shares = [r.scores.get("foreign_share", 0.0) for r in reports if r.verdict != "skipped"]
    shift_reason = None
    if unknown:
        shift_reason = f"classes {unknown} are not in the baseline"
    elif far_share > SHIFT_SHARE:
        shift_reason = (f"{far_share:.0%} of the new rows lie farther from the baseline than "
                        f"{DISTANCE_QUANTILE:.0%} of its own rows (> {SHIFT_SHARE:.0%})")
    elif shares and min(shares) > SHIFT_FOREIGN_SHARE:
        shift_reason = (f"every class has more than {SHIFT_FOREIGN_SHARE:.0%} foreign rows "
                        f"(least {min(shares):.0%}): a new labelling or distribution")
    params = {"analysis": "incremental", "neighbours": NEIGHBOURS, "purity": PURITY,
              "min_foreign_rows": MIN_FOREIGN_ROWS, "foreign_share": FOREIGN_SHARE,
              "reference_rows": int(len(reference.labels))}
    info = RunInfo(params=params, versions=core_versions(),
                   timings={"incremental": time.perf_counter() - started},
                   extra={"shifted": shift_reason is not None, "shift_reason": shift_reason,
                          "far_share": far_share})
    return DetectionResult(sample_ids=ids, labels=labels, segments=labels,
                           clusters=np.where(judged & evidence.foreign, 1, 0),
                           is_poison=flagged,
                           poison_score=score, suspected_source=source,
                           classes=tuple(reports), info=info)
