"""The scan's per-class table as a digested artifact, and the checks the gate runs against it.

:func:`acgate.mlflow.tracking.log_scan` logs ``acgate/classes.json`` (:func:`classes_document`,
serialised by :func:`document_bytes`) and its SHA-256 as the run tag ``acgate.classes_sha256``.
The promotion gate downloads the file, checks its digest, re-derives the verdict from it and
refuses a run whose tags or metrics say anything else (:func:`check_run_against_document`).
Nothing here imports :mod:`mlflow`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from acgate.core.result import DetectionResult

__all__ = [
    "CLASSES_ARTIFACT",
    "CLASSES_SCHEMA",
    "MAX_CLASSES_ARTIFACT_BYTES",
    "check_run_against_document",
    "classes_document",
    "derive_verdict",
    "document_bytes",
    "is_sha256",
    "parse_document",
    "sha256_bytes",
]

#: Artifact path of the per-class table in a scan run.
CLASSES_ARTIFACT = "acgate/classes.json"
#: ``schema`` value of the document.
CLASSES_SCHEMA = "acgate.classes/1"
#: The gate refuses to download a larger ``classes.json`` (a scan of 100k classes is ~30 MB).
MAX_CLASSES_ARTIFACT_BYTES = 64 * 1024 * 1024

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Per-class metrics compared with the document: (metric prefix, document field).
_FLOAT_METRICS = (("silhouette", "silhouette"), ("size_ratio", "size_ratio"), ("exre", "exre"))
#: The same for fields a document written before the gate replayed the scan's rule lacks
#: (those scans logged the metrics all the same): compared when the class's entry has the field.
_NEWER_FLOAT_METRICS = (("source_share", "source_share"), ("confusion", "confusion"))
#: Fields that came with their metrics: a scan whose document lacks the field never logged the
#: metric, so the metric must be absent too (else a metric logged later, which the gate's replay
#: reads, would go unchecked).
_PAIRED_FLOAT_METRICS = (("confidence", "confidence"), ("typicality", "typicality"),
                         ("overlap", "overlap"), ("overlap_median", "overlap_median"),
                         ("tail_flips", "tail_flips"), ("tail_cohesive", "tail_cohesive"),
                         ("tail_clump", "tail_clump"))
_COUNT_METRICS = (("poisoned", None), ("skipped", None), ("flagged", "n_flagged"))
_VERDICTS = ("clean", "poisoned", "skipped")


def is_sha256(value: Any) -> bool:
    """Whether ``value`` is a SHA-256 digest written as 64 lowercase hex characters."""
    return isinstance(value, str) and bool(_SHA256.match(value))


def sha256_bytes(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def classes_document(
    result: DetectionResult, *, dataset_sha256: str | None, metrics_timestamp_ms: int
) -> dict[str, Any]:
    """The per-class table of a scan, as logged in ``acgate/classes.json``.

    Args:
        result: The detection result.
        dataset_sha256: SHA-256 of the scanned file's bytes, or ``None`` when unknown.
        metrics_timestamp_ms: The timestamp every scan metric is logged with; the gate refuses
            a metric whose latest value carries another one (it was logged again later).

    Returns:
        A JSON-able dict: ``schema``, ``dataset_sha256``, ``verdict``, ``metrics_timestamp_ms``,
        ``n_samples``, ``n_flagged`` and ``classes`` (one entry per class: ``label``,
        ``verdict``, ``n_samples``, ``n_flagged``, ``skipped``, ``suspected_source``,
        ``reason``, ``silhouette``, ``size_ratio``, ``exre``, ``source_share``, ``confusion``
        ``confidence``, ``typicality``, ``overlap``, ``overlap_median`` (the
        exclusionary-reclassification numbers of the judged candidate), ``tail_flips``,
        ``tail_cohesive``, ``tail_clump`` (the class's tail, :mod:`acgate.core.tail`),
        ``thresholds`` (the thresholds the class was judged with, by
        :class:`acgate.core.analyses.Thresholds` field name: the promotion gate replays the
        scan's rule with them); non-finite numbers are ``null``, as in the metrics, where they
        are not logged).
    """
    import numpy as np

    classes = []
    for report in result.classes:
        in_class = result.segments == report.label
        source = report.suspected_source
        classes.append({
            "label": int(report.label),
            "verdict": str(report.verdict),
            "n_samples": int(report.n_samples),
            "n_flagged": int(np.count_nonzero(result.is_poison & in_class)),
            "skipped": report.verdict == "skipped",
            "suspected_source": None if source is None else int(source),
            "reason": str(report.reason),
            "silhouette": _finite(report.silhouette),
            "size_ratio": _finite(report.size_ratio),
            "exre": _finite(report.exre_score),
            "source_share": _finite(report.scores.get("source_share")),
            "confusion": _finite(report.scores.get("confusion")),
            "confidence": _finite(report.scores.get("confidence")),
            "typicality": _finite(report.scores.get("typicality")),
            "overlap": _finite(report.scores.get("overlap")),
            "overlap_median": _finite(report.scores.get("overlap_median")),
            "tail_flips": _finite(report.scores.get("tail_flips")),
            "tail_cohesive": _finite(report.scores.get("tail_cohesive")),
            "tail_clump": _finite(report.scores.get("tail_clump")),
            "thresholds": _thresholds_entry(report.label, report.thresholds),
        })
    return {
        "schema": CLASSES_SCHEMA,
        "dataset_sha256": dataset_sha256,
        "verdict": derive_verdict(classes),
        "metrics_timestamp_ms": int(metrics_timestamp_ms),
        "n_samples": int(result.n_samples),
        "n_flagged": int(np.count_nonzero(result.is_poison)),
        "classes": classes,
    }


def _thresholds_entry(label: int, thresholds: Mapping[str, Any]) -> dict[str, float | None]:
    """A class's thresholds as the document records them (non-finite ones ``null``).

    Raises:
        ValueError: A threshold is not a number.
    """
    entry = {}
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"class {label}: threshold {name!r} is {value!r}, not a number")
        entry[str(name)] = _finite(value)
    return entry


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """The exact bytes logged (sorted keys, two-space indent, UTF-8, no NaN)."""
    return (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def derive_verdict(classes: Sequence[Mapping[str, Any]]) -> str:
    """``poisoned`` if a class is poisoned, else ``incomplete`` if one was skipped, else ``clean``.

    The rule of :attr:`acgate.core.result.DetectionResult.verdict`.
    """
    verdicts = [entry.get("verdict") for entry in classes]
    if "poisoned" in verdicts:
        return "poisoned"
    return "incomplete" if "skipped" in verdicts else "clean"


def parse_document(data: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse and check the structure of a ``classes.json``.

    Returns:
        ``(document, problems)``: the document (``None`` when unusable) and what is wrong with
        it, in plain words.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, [f"{CLASSES_ARTIFACT} is not valid JSON ({error})"]
    if not isinstance(document, dict) or document.get("schema") != CLASSES_SCHEMA:
        schema = document.get("schema") if isinstance(document, dict) else None
        return None, [f"{CLASSES_ARTIFACT} has schema {schema!r}, not {CLASSES_SCHEMA!r}"]
    problems: list[str] = []
    classes = document.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, dict) for c in classes):
        return None, [f"{CLASSES_ARTIFACT} has no list of classes"]
    labels = []
    for entry in classes:
        label = entry.get("label")
        if isinstance(label, bool) or not isinstance(label, int):
            return None, [f"{CLASSES_ARTIFACT} has a class with label {label!r}, not an integer"]
        labels.append(label)
        if entry.get("verdict") not in _VERDICTS:
            problems.append(f"{CLASSES_ARTIFACT}: class {label} has verdict "
                            f"{entry.get('verdict')!r}, not one of {list(_VERDICTS)}")
        if entry.get("skipped") is not (entry.get("verdict") == "skipped"):
            problems.append(f"{CLASSES_ARTIFACT}: class {label} has skipped="
                            f"{entry.get('skipped')!r} but verdict {entry.get('verdict')!r}")
        for key in ("n_samples", "n_flagged"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{CLASSES_ARTIFACT}: class {label} has {key}={value!r}")
    if len(set(labels)) != len(labels):
        problems.append(f"{CLASSES_ARTIFACT} lists a class twice: {labels}")
    if document.get("verdict") != derive_verdict(classes):
        problems.append(f"{CLASSES_ARTIFACT} says verdict {document.get('verdict')!r} but its "
                        f"classes say {derive_verdict(classes)!r}")
    timestamp = document.get("metrics_timestamp_ms")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        problems.append(f"{CLASSES_ARTIFACT} has metrics_timestamp_ms={timestamp!r}")
    return document, problems


def check_run_against_document(
    document: Mapping[str, Any],
    *,
    tags: Mapping[str, str],
    metrics: Mapping[str, tuple[float, int, int]],
    classes_tag: str,
    verdict_tag: str,
    poisoned_classes_tag: str,
) -> tuple[list[str], set[int]]:
    """Where a run's tags and latest metrics disagree with its ``classes.json``.

    Args:
        document: The parsed document (see :func:`parse_document`).
        tags: The run's tags.
        metrics: The run's latest metrics: key -> ``(value, timestamp_ms, step)``.
        classes_tag: Name of the class-list tag.
        verdict_tag: Name of the verdict tag.
        poisoned_classes_tag: Name of the poisoned-classes tag.

    Returns:
        The disagreements (plain words, naming both values) and the classes they concern.
    """
    classes = document["classes"]
    labels = [entry["label"] for entry in classes]
    problems: list[str] = []
    concerned: set[int] = set()

    def compare_tag(name: str, expected: Any) -> None:
        raw = tags.get(name)
        try:
            value = json.loads(raw) if raw is not None else None
        except json.JSONDecodeError:
            value = raw
        if value != expected:
            problems.append(f"tag {name}={raw!r} disagrees with {CLASSES_ARTIFACT} "
                            f"({json.dumps(expected)})")

    compare_tag(classes_tag, labels)
    poisoned = [entry["label"] for entry in classes if entry["verdict"] == "poisoned"]
    compare_tag(poisoned_classes_tag, poisoned)
    if tags.get(verdict_tag) != document["verdict"]:
        problems.append(f"tag {verdict_tag}={tags.get(verdict_tag)!r} disagrees with "
                        f"{CLASSES_ARTIFACT} (verdict {document['verdict']!r})")

    timestamp = document.get("metrics_timestamp_ms")
    expected: dict[str, float | None] = {}
    for entry in classes:
        label = entry["label"]
        expected[f"poisoned/{label}"] = 1.0 if entry["verdict"] == "poisoned" else 0.0
        expected[f"skipped/{label}"] = 1.0 if entry["verdict"] == "skipped" else 0.0
        expected[f"flagged/{label}"] = float(entry["n_flagged"])
        for prefix, key in _FLOAT_METRICS + _NEWER_FLOAT_METRICS + _PAIRED_FLOAT_METRICS:
            if key not in entry and (prefix, key) in _NEWER_FLOAT_METRICS:
                continue
            value = entry.get(key)
            expected[f"{prefix}/{label}"] = None if value is None else float(value)
    expected["n_classes"] = float(len(classes))
    expected["n_poisoned_classes"] = float(len(poisoned))
    expected["n_skipped_classes"] = float(sum(entry["verdict"] == "skipped" for entry in classes))
    expected["n_flagged"] = float(document.get("n_flagged", math.nan))
    expected["n_samples"] = float(document.get("n_samples", math.nan))

    for key, want in expected.items():
        got = metrics.get(key)
        label = _label_of(key)
        if want is None:
            if got is not None:
                problems.append(f"metric {key}={got[0]:g} is logged but {CLASSES_ARTIFACT} "
                                "has no value for it")
                concerned.update([label] if label is not None else [])
            continue
        if got is None:
            problems.append(f"metric {key} is missing but {CLASSES_ARTIFACT} says {want:g}")
        elif not math.isclose(got[0], want, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"metric {key}={got[0]:g} disagrees with {CLASSES_ARTIFACT} "
                            f"({want:g})")
        elif got[1] != timestamp or got[2] != 0:
            problems.append(f"metric {key} was logged again after the scan (its latest value "
                            f"has timestamp {got[1]} and step {got[2]}, the scan's metrics "
                            f"{timestamp} and 0)")
        else:
            continue
        concerned.update([label] if label is not None else [])
    return problems, concerned


def _label_of(key: str) -> int | None:
    _, _, suffix = key.partition("/")
    try:
        return int(suffix)
    except ValueError:
        return None
