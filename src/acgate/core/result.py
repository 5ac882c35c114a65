"""Typed, frozen results of a detection run.

One result type serves the library, the CLI, the components and the MLflow adapter:

* :class:`ClassReport` — one row per class: cluster shares, silhouette, exclusionary
  reclassification score, verdict, suspected source class, the reason when skipped.
* :class:`DetectionResult` — per-sample arrays (``is_poison``, ``poison_score``, ``cluster``,
  ``suspected_source``), the class reports and the run info.

``to_frame()`` / ``classes_frame()`` build pandas frames (pandas is imported lazily: the core
itself depends on numpy and scikit-learn only). Parquet round-trips live in :mod:`acgate.io`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

Verdict = Literal["clean", "poisoned", "skipped"]

#: Value used in integer per-sample arrays where there is no cluster / no source.
NO_VALUE = -1


def _frozen_array(values: Any, dtype: Any) -> np.ndarray:
    array = np.array(values, dtype=dtype, copy=True)
    array.setflags(write=False)
    return array


def _frozen_mapping(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class ClassReport:
    """What the analysis found in one class (one label, or one predicted class).

    Attributes:
        label: The class.
        n_samples: Samples in the class.
        n_clusters: Clusters the class was split into (0 when skipped).
        cluster_sizes: Samples per cluster, indexed by cluster id.
        suspicious_cluster: Cluster judged the poison candidate (the one the scores below
            describe), or ``None`` when no cluster was a candidate.
        size_ratio: Share of the class held by the suspicious cluster (or by the smallest
            cluster when none is suspicious); ``None`` when skipped.
        silhouette: Silhouette score of the clustering (on a seeded sample for large classes).
        exre_score: Exclusionary-reclassification score of the suspicious cluster: ``l / p``
            (``l`` = samples classified as their own label by a model trained without the
            cluster, ``p`` = samples classified as the most common other class). ``None`` when
            exclusionary reclassification did not run for this class.
        suspected_source: Most common other class of the suspicious cluster under exclusionary
            reclassification (or from the nearest other class when it did not run).
        verdict: ``"clean"``, ``"poisoned"`` or ``"skipped"``.
        reason: Plain-words explanation of the verdict (always set).
        scores: Every analyzer's score for this class, e.g. ``{"silhouette": 0.21}``.
        thresholds: The thresholds this class was judged with (global or calibrated).
    """

    label: int
    n_samples: int
    n_clusters: int
    cluster_sizes: tuple[int, ...]
    suspicious_cluster: int | None
    size_ratio: float | None
    silhouette: float | None
    exre_score: float | None
    suspected_source: int | None
    verdict: Verdict
    reason: str
    scores: Mapping[str, float] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:  # noqa: D105
        object.__setattr__(self, "cluster_sizes", tuple(int(s) for s in self.cluster_sizes))
        object.__setattr__(self, "scores", _frozen_mapping(self.scores))
        object.__setattr__(self, "thresholds", _frozen_mapping(self.thresholds))

    @property
    def cluster_shares(self) -> tuple[float, ...]:
        """Share of the class in each cluster (sums to 1)."""
        total = sum(self.cluster_sizes)
        return tuple(size / total for size in self.cluster_sizes) if total else ()

    @property
    def is_poisoned(self) -> bool:
        """Whether this class was judged poisoned."""
        return self.verdict == "poisoned"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-serialisable) of the report."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["scores"] = dict(self.scores)
        data["thresholds"] = dict(self.thresholds)
        data["cluster_sizes"] = list(self.cluster_sizes)
        data["cluster_shares"] = list(self.cluster_shares)
        return data


@dataclass(frozen=True)
class RunInfo:
    """Parameters, versions, timings and warnings of one detection run.

    Attributes:
        params: The detector settings, as passed (JSON-serialisable values).
        versions: Versions of acgate, numpy and scikit-learn.
        timings: Wall seconds per stage (``reduce``, ``cluster``, ``analyze``, ...).
        warnings: Statistical caveats (non-converged ICA, tiny classes, ...).
        extra: Free-form additional information (e.g. dataset fingerprint added by callers).
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # noqa: D105
        object.__setattr__(self, "params", _frozen_mapping(self.params))
        object.__setattr__(self, "versions", _frozen_mapping(self.versions))
        object.__setattr__(self, "timings", _frozen_mapping(self.timings))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "extra", _frozen_mapping(self.extra))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-serialisable) of the run info."""
        return {
            "params": dict(self.params),
            "versions": dict(self.versions),
            "timings": dict(self.timings),
            "warnings": list(self.warnings),
            "extra": dict(self.extra),
        }


@dataclass(frozen=True)
class DetectionResult:
    """Result of :func:`acgate.core.detect`: per sample, per class, and for the run.

    Per-sample arrays all have length ``n_samples`` and are read-only. Integer arrays use
    ``-1`` (:data:`NO_VALUE`) where there is no cluster (skipped class) or no suspected source.

    Attributes:
        sample_ids: Sample id of each row (the dataset row number unless given otherwise).
        labels: Label of each sample.
        segments: Class each sample was analysed in (its label, or its prediction when
            segmenting by prediction).
        clusters: Cluster id of each sample within its segment (``-1`` when skipped).
        is_poison: Whether the sample is flagged as poison.
        poison_score: Suspicion score in ``[0, 1]``; higher is more suspicious (in a class whose
            flagged rows were redrawn, :mod:`acgate.core.redraw`, the redraw's score: above 0.5
            is nearer the poison's centre).
        suspected_source: Suspected true (source) class of flagged samples, else ``-1`` (also
            for a flagged row the redraw added: the analysis sent it nowhere).
        classes: One :class:`ClassReport` per segment, sorted by class.
        info: Parameters, versions, timings and warnings.
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    segments: np.ndarray
    clusters: np.ndarray
    is_poison: np.ndarray
    poison_score: np.ndarray
    suspected_source: np.ndarray
    classes: tuple[ClassReport, ...]
    info: RunInfo = field(default_factory=RunInfo)

    def __post_init__(self) -> None:  # noqa: D105
        object.__setattr__(self, "sample_ids", _frozen_array(self.sample_ids, np.int64))
        object.__setattr__(self, "labels", _frozen_array(self.labels, np.int64))
        object.__setattr__(self, "segments", _frozen_array(self.segments, np.int64))
        object.__setattr__(self, "clusters", _frozen_array(self.clusters, np.int64))
        object.__setattr__(self, "is_poison", _frozen_array(self.is_poison, bool))
        object.__setattr__(self, "poison_score", _frozen_array(self.poison_score, np.float64))
        object.__setattr__(
            self, "suspected_source", _frozen_array(self.suspected_source, np.int64)
        )
        object.__setattr__(self, "classes", tuple(sorted(self.classes, key=lambda c: c.label)))
        n = len(self.sample_ids)
        for name in ("labels", "segments", "clusters", "is_poison", "poison_score",
                     "suspected_source"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"DetectionResult.{name} has length {len(getattr(self, name))}, "
                    f"expected {n} (the length of sample_ids)"
                )

    @property
    def n_samples(self) -> int:
        """Number of samples analysed."""
        return int(len(self.sample_ids))

    @property
    def verdict(self) -> Literal["clean", "poisoned", "incomplete"]:
        """``"poisoned"``, ``"incomplete"`` or ``"clean"``.

        ``"poisoned"`` when any class is poisoned; else ``"incomplete"`` when a class was skipped
        (it could not be judged, so the data is not known to be clean); else ``"clean"``.
        """
        if any(c.is_poisoned for c in self.classes):
            return "poisoned"
        return "incomplete" if self.skipped_classes else "clean"

    @property
    def flagged_indices(self) -> np.ndarray:
        """Sample ids of the flagged samples, ascending."""
        return np.sort(self.sample_ids[self.is_poison])

    @property
    def poisoned_classes(self) -> tuple[int, ...]:
        """Classes judged poisoned."""
        return tuple(c.label for c in self.classes if c.is_poisoned)

    @property
    def skipped_classes(self) -> tuple[int, ...]:
        """Classes that could not be analysed (reason in their report)."""
        return tuple(c.label for c in self.classes if c.verdict == "skipped")

    def class_report(self, label: int) -> ClassReport:
        """The report of one class.

        Raises:
            KeyError: When ``label`` was not analysed.
        """
        for report in self.classes:
            if report.label == label:
                return report
        raise KeyError(f"class {label!r} is not in this result; classes: "
                       f"{[c.label for c in self.classes]}")

    def to_frame(self) -> Any:
        """Per-sample table (pandas DataFrame).

        Columns: ``index`` (sample id), ``label``, ``segment``, ``cluster``, ``is_poison``,
        ``poison_score``, ``suspected_source`` (nullable integer; missing when not flagged, or
        flagged without a source named).
        """
        import pandas as pd

        source = pd.array(
            np.where(self.suspected_source >= 0, self.suspected_source, 0), dtype="Int64"
        )
        source[self.suspected_source < 0] = pd.NA
        return pd.DataFrame(
            {
                "index": self.sample_ids,
                "label": self.labels,
                "segment": self.segments,
                "cluster": self.clusters,
                "is_poison": self.is_poison,
                "poison_score": self.poison_score,
                "suspected_source": source,
            }
        )

    def classes_frame(self) -> Any:
        """Per-class summary table (pandas DataFrame), one row per class."""
        import pandas as pd

        rows = []
        for report in self.classes:
            row = report.to_dict()
            row.pop("scores")
            row.pop("thresholds")
            for name, value in report.scores.items():
                row[f"score_{name}"] = value
            for name, value in report.thresholds.items():
                row[f"threshold_{name}"] = value
            rows.append(row)
        frame = pd.DataFrame(rows)
        for column in ("suspicious_cluster", "suspected_source"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no per-sample arrays except the flagged ids)."""
        return {
            "verdict": self.verdict,
            "n_samples": self.n_samples,
            "n_flagged": int(self.is_poison.sum()),
            "poisoned_classes": list(self.poisoned_classes),
            "skipped_classes": list(self.skipped_classes),
            "flagged_indices": self.flagged_indices.tolist(),
            "classes": [c.to_dict() for c in self.classes],
            "info": self.info.to_dict(),
        }
