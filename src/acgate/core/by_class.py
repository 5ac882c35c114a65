"""The analysis one class at a time, for activations too large to hold at once.

:func:`acgate.core.detect.analyze` holds every row's activations. A dataset of tens of millions
of rows is judged instead by :func:`analyze_by_class`: the classes' clusterings arrive one at a
time (a generator may cluster or read each when asked), each is judged and its flags written
into the per-row arrays, and only the class's report is kept. What a class's judgement needs
beyond its clustering comes from the caller, for that class alone:

* the analysis must judge from the clustering only (:func:`by_class_analyses`: the per-class
  analyses whose registry entry needs no evidence: size, silhouette, their combination and the
  robust covariance of the reduced rows; ``"auto"`` is ``"size-silhouette"`` here, as it is
  without a retrain). Exclusionary reclassification retrains on every row; the distance and
  spectral analyses read the class's activations and every class's centroid;
* a poisoned class's rows are redrawn and filled (:mod:`acgate.core.redraw`) from what
  ``class_rows(clustering)`` returns: the class's activations when it is held whole (the very
  rows :func:`~acgate.core.detect.analyze` would redraw, so the flags are the same), or, for a
  class too large to hold, its top principal coordinates from two streamed passes
  (:func:`principal_coordinates`): the redraw's whitened space of those coordinates is the one
  of the class's activations (the coordinates' own principal directions are the axes), up to
  rounding and signs, which no distance sees.

Memory: the per-row arrays of the result (~30 bytes a row) plus one class's clustering and what
``class_rows`` returns for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from acgate.core import validation
from acgate.core.analyses import ANALYZERS, ClassContext, PerClassJudge
from acgate.core.clustering import ClassClustering
from acgate.core.detect import (
    _analysis_seed,
    _class_report,
    _recorded_params,
    _redraw_setting,
    _SampleArrays,
    _skipped_report,
    _versions,
    resolve_analysis,
)
from acgate.core.evidence import Thresholds
from acgate.core.redraw import REDRAW_COMPONENTS, redraw_judgement
from acgate.core.result import DetectionResult, RunInfo

__all__ = ["analyze_by_class", "by_class_analyses", "principal_coordinates"]

logger = logging.getLogger(__name__)

#: ``class_rows(clustering)``: the class's activations (rows aligned with its positions), or its
#: top principal coordinates (:func:`principal_coordinates`) when it is too large to hold.
ClassRows = Callable[[ClassClustering], np.ndarray]


def by_class_analyses() -> tuple[str, ...]:
    """The analyses :func:`analyze_by_class` runs: per-class ones that need no evidence."""
    return tuple(name for name, analyzer in ANALYZERS.items()
                 if isinstance(analyzer.judge, PerClassJudge) and not analyzer.needs)


def principal_coordinates(batches: Callable[[], Iterable[np.ndarray]],
                          n_components: int) -> np.ndarray:
    """A class's rows in its top principal directions, from two streamed passes.

    The first pass accumulates the rows' mean and covariance (float64, shifted by the first
    row against cancellation), the second projects each batch on the covariance's top
    eigenvectors: the directions :func:`acgate.core.reducers.reduce_pca` finds on the whole
    class with its covariance solver, up to rounding and signs.

    Args:
        batches: Called once per pass; yields the class's rows (``m x d`` arrays) in the same
            order both times.
        n_components: Directions kept at most (capped by ``d`` and the rows less one).

    Returns:
        ``n x k`` float64 coordinates (one column of zeros when the rows do not vary).

    Raises:
        ValueError: Fewer than two rows, batches of another width, or a second pass that
            yields another number of rows.
    """
    validation.check_positive_int(n_components, name="n_components")
    shift: np.ndarray | None = None
    total = gram = None
    n_rows = 0
    for batch in batches():
        x = _checked_batch(batch, shift)
        if not len(x):
            continue
        if shift is None:
            shift = x[0].copy()
            total = np.zeros_like(shift)
            gram = np.zeros((len(shift), len(shift)))
        x = x - shift
        total += x.sum(axis=0)
        gram += x.T @ x
        n_rows += len(x)
    if shift is None or n_rows < 2:
        raise ValueError(f"principal coordinates need at least 2 rows, got {n_rows}")
    mean = total / n_rows
    covariance = (gram - n_rows * np.outer(mean, mean)) / (n_rows - 1)
    values, vectors = np.linalg.eigh(covariance)
    keep = np.argsort(values)[::-1][:max(1, min(n_components, n_rows - 1, len(shift)))]
    values, vectors = np.clip(values[keep], 0.0, None), vectors[:, keep]
    if values.max() <= 0.0:
        return np.zeros((n_rows, 1))  # nothing varies: no redraw can speak
    centre = shift + mean
    coordinates = np.empty((n_rows, len(keep)))
    filled = stop = 0
    for batch in batches():
        x = _checked_batch(batch, shift)
        stop = filled + len(x)
        if stop > n_rows:
            break
        coordinates[filled:stop] = (x - centre) @ vectors
        filled = stop
    if filled != n_rows or stop != n_rows:
        raise ValueError(f"the second pass yielded another number of rows than the first's "
                         f"{n_rows}")
    return coordinates


def analyze_by_class(
    clusterings: Iterable[ClassClustering],
    labels: np.ndarray,
    *,
    sample_ids: np.ndarray,
    segments: np.ndarray,
    class_rows: ClassRows,
    analysis: str = "auto",
    thresholds: Thresholds | None = None,
    class_thresholds: Mapping[int, Thresholds] | None = None,
    random_state: int | None = None,
    redraw_components: int = REDRAW_COMPONENTS,
    params: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
) -> DetectionResult:
    """Judge the classes one clustering at a time and assemble the :class:`DetectionResult`.

    On the same clusterings and the classes' own activations from ``class_rows``, the result is
    :func:`acgate.core.detect.analyze`'s with the same arguments (a test keeps it so).

    Args:
        clusterings: One :class:`ClassClustering` per segment, in ascending label order (an
            iterator: each is dropped once judged).
        labels: Validated label per row.
        sample_ids: Sample id per row.
        segments: Segment (label or prediction) per row.
        class_rows: See :data:`ClassRows`; called only for a class judged poisoned.
        analysis: One of :func:`by_class_analyses`, or ``"auto"``.
        thresholds: Global thresholds (default: paper values).
        class_thresholds: Per-class thresholds overriding the global ones.
        random_state: Seed of the analyzers' random steps (see
            :func:`~acgate.core.detect.analyze`).
        redraw_components: See :func:`~acgate.core.detect.analyze` (0: no redraw).
        params: Parameters to record in the run info.
        timings: Timings measured before this call.

    Returns:
        The detection result.

    Raises:
        ValueError: An analysis this function cannot run, clusterings out of order, twice, or
            not matching the segments, or a missing seed.
    """
    start = time.perf_counter()
    resolved = resolve_analysis(analysis, None)
    if resolved not in by_class_analyses():
        raise ValueError(f"analysis={resolved!r} cannot be judged one class at a time (it needs "
                         f"every row's activations or a retrain); choose one of "
                         f"{list(by_class_analyses())}")
    judge = ANALYZERS[resolved].judge
    seed = _analysis_seed(random_state, params)
    redraw_components = _redraw_setting(redraw_components, params)
    thresholds = thresholds or Thresholds()
    class_thresholds = dict(class_thresholds or {})
    expected = np.bincount(segments) if len(segments) else np.zeros(0, dtype=np.int64)
    samples = _SampleArrays.empty(len(labels))
    reports, notes, skipped, previous = [], [], [], -1
    for clustering in clusterings:
        label = _checked_class(clustering, previous, segments, expected)
        previous = label
        used = class_thresholds.get(label, thresholds)
        notes.extend(f"class {label}: {w}" for w in clustering.warnings)
        if clustering.skipped:
            skipped.append(clustering.skipped_reason or f"class {label} skipped")
            logger.warning("%s", clustering.skipped_reason)
            reports.append(_skipped_report(clustering, used))
            continue
        # The analyses run here judge from the clustering only: they get no activations.
        judgement = judge.analysis(clustering, used, ClassContext(
            centroids={}, activations=np.empty((0, 0)), random_state=seed))
        if judgement.is_poisoned and redraw_components > 0:
            judgement = redraw_judgement(judgement, class_rows(clustering),
                                         n_components=redraw_components, max_share=used.size)
        samples.fill(clustering, judgement)
        reports.append(_class_report(clustering, judgement, used))
        del clustering, judgement  # not held while the next class is clustered
    missing = sorted(set(np.flatnonzero(expected).tolist())
                     - {report.label for report in reports})
    if missing:
        raise ValueError(f"no clustering of segments {missing}")
    recorded = _recorded_params(params, resolved, thresholds, seed)
    recorded["redraw_components"] = redraw_components
    all_timings = {**dict(timings or {}), "analyze": time.perf_counter() - start}
    return DetectionResult(
        sample_ids=sample_ids, labels=labels, segments=segments, clusters=samples.clusters,
        is_poison=samples.is_poison, poison_score=samples.poison_score,
        suspected_source=samples.suspected_source, classes=tuple(reports),
        info=RunInfo(params=recorded, versions=_versions(), timings=all_timings,
                     warnings=(*notes, *skipped)))  # in analyze()'s order


def _checked_batch(batch: np.ndarray, first_row: np.ndarray | None) -> np.ndarray:
    """A batch of rows as float64, ``m x d`` and as wide as the first row seen."""
    x = np.asarray(batch, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"a batch of rows must be m x d, got shape {x.shape}")
    if first_row is not None and x.shape[1] != len(first_row):
        raise ValueError(f"a batch of width {x.shape[1]} among batches of width "
                         f"{len(first_row)}")
    return x


def _checked_class(clustering: ClassClustering, previous: int, segments: np.ndarray,
                   expected: np.ndarray) -> int:
    """The clustering's label, checked: after ``previous``, and exactly its segment's rows."""
    label = int(clustering.label)
    if label <= previous:
        raise ValueError(f"clusterings must come in ascending label order, once each: class "
                         f"{label} after class {previous}")
    positions = np.asarray(clustering.positions)
    rows = int(expected[label]) if 0 <= label < len(expected) else 0
    if (len(positions) != rows or (len(positions) and (positions.min() < 0
                                   or positions.max() >= len(segments)))
            or not (segments[positions] == label).all()):
        raise ValueError(f"the clustering of class {label} holds {len(positions)} positions, "
                         f"not the {rows} rows of segment {label}")
    return label
