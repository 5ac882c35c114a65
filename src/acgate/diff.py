"""What changed between two scan folders: the verdicts, each class, the flagged rows (issue 20).

:func:`diff_scans` reads two folders written by ``acgate scan`` or ``acgate detect`` (the files of
:func:`acgate.io.results.write_result`, plus ``scan.json`` for a scan) and returns a
:class:`ScanDiff`: both overall verdicts, per class the verdict, flagged count and suspected
source before and after, and the flagged rows that only one of the scans flagged.

A row is identified by the ``index`` column of ``samples.parquet`` (the dataset's row number, as
the scan recorded it). When the two scans looked at different data (``dataset_sha256`` of
``scan.json`` differs) rows are still compared by that index, and a note says so; rows present in
only one of the scans (datasets of different lengths) are counted apart, never compared. A folder
without ``scan.json`` (``acgate detect``) records no dataset identity: the diff says that it is
unknown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acgate.io.results import (
    CLASSES_FILE,
    FLAGGED_FILE,
    REPORT_FILE,
    SAMPLES_FILE,
    read_classes,
    read_flagged,
    read_json_object,
    read_report,
    read_samples,
)

__all__ = ["SCAN_FILE", "ClassDiff", "ScanDiff", "ScanSide", "diff_scans"]

PathLike = str | os.PathLike[str]

#: The scan's own record (dataset, ``dataset_sha256``, fingerprint, verdict, config), written by
#: :func:`acgate.stages.analyze_stage`; ``acgate detect`` does not write it.
SCAN_FILE = "scan.json"
#: The files every scan folder holds (``acgate scan`` and ``acgate detect`` alike).
_RESULT_FILES = (SAMPLES_FILE, CLASSES_FILE, FLAGGED_FILE, REPORT_FILE)
_VERDICTS = ("clean", "poisoned", "incomplete")


@dataclass(frozen=True)
class ScanSide:
    """One of the two scans compared.

    Attributes:
        folder: The scan folder, as given.
        verdict: The overall verdict of its ``report.json``: ``"clean"``, ``"poisoned"`` or
            ``"incomplete"``.
        n_samples: Rows of its ``samples.parquet``.
        n_flagged: Rows it flagged.
        dataset_sha256: SHA-256 of the scanned dataset file (``scan.json``); ``None`` when the
            folder records none (``acgate detect``).
        has_scan_json: Whether the folder holds ``scan.json`` (written by ``acgate scan``).
    """

    folder: Path
    verdict: str
    n_samples: int
    n_flagged: int
    dataset_sha256: str | None
    has_scan_json: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"folder": str(self.folder), "verdict": self.verdict,
                "n_samples": self.n_samples, "n_flagged": self.n_flagged,
                "dataset_sha256": self.dataset_sha256, "has_scan_json": self.has_scan_json}


@dataclass(frozen=True)
class ClassDiff:
    """One class in both scans (``None`` on the side where the class does not appear).

    Attributes:
        label: The class (the segment it was analysed in).
        verdict_a: Its verdict in scan A (``None``: not in A).
        verdict_b: Its verdict in scan B (``None``: not in B).
        n_flagged_a: Rows of the class flagged in A.
        n_flagged_b: Rows of the class flagged in B.
        suspected_source_a: The class A suspected the poison came from (``None``: none).
        suspected_source_b: The same in B.
        n_added: Rows of the class flagged in B that A did not flag (rows in both scans).
        n_removed: Rows of the class flagged in A that B did not flag (rows in both scans).
        n_unmatched: Rows of the class flagged in one scan that the other scan does not have
            (datasets of different lengths): counted here, in neither ``n_added`` nor
            ``n_removed``.
    """

    label: int
    verdict_a: str | None
    verdict_b: str | None
    n_flagged_a: int
    n_flagged_b: int
    suspected_source_a: int | None
    suspected_source_b: int | None
    n_added: int
    n_removed: int
    n_unmatched: int = 0

    @property
    def changed(self) -> bool:
        """Whether the verdict, the flagged rows or the suspected source differ."""
        return (self.verdict_a != self.verdict_b or self.n_flagged_a != self.n_flagged_b
                or self.suspected_source_a != self.suspected_source_b
                or self.n_added > 0 or self.n_removed > 0 or self.n_unmatched > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``changed``."""
        return {"label": self.label, "changed": self.changed,
                "verdict_a": self.verdict_a, "verdict_b": self.verdict_b,
                "n_flagged_a": self.n_flagged_a, "n_flagged_b": self.n_flagged_b,
                "suspected_source_a": self.suspected_source_a,
                "suspected_source_b": self.suspected_source_b,
                "n_added": self.n_added, "n_removed": self.n_removed,
                "n_unmatched": self.n_unmatched}


@dataclass(frozen=True)
class ScanDiff:
    """What changed from scan A to scan B (:func:`diff_scans`).

    Row ids are the ``index`` column of ``samples.parquet``, ascending.

    Attributes:
        a: Scan A.
        b: Scan B.
        same_dataset: Whether both scans looked at the same dataset file (equal
            ``dataset_sha256``); ``None`` when a folder records none.
        classes: One entry per class of either scan, by label.
        flagged_only_a: Rows in both scans flagged by A only (``-removed``).
        flagged_only_b: Rows in both scans flagged by B only (``+added``).
        flagged_both: Rows flagged by both.
        n_rows_only_a: Rows of A that B does not have (not compared).
        n_rows_only_b: Rows of B that A does not have (not compared).
        flagged_unmatched_a: Rows A flagged that B does not have.
        flagged_unmatched_b: Rows B flagged that A does not have.
        notes: What the reader must know to trust the comparison (different or unknown
            datasets, rows in only one scan).
    """

    a: ScanSide
    b: ScanSide
    same_dataset: bool | None
    classes: tuple[ClassDiff, ...]
    flagged_only_a: tuple[int, ...]
    flagged_only_b: tuple[int, ...]
    flagged_both: tuple[int, ...]
    n_rows_only_a: int
    n_rows_only_b: int
    flagged_unmatched_a: tuple[int, ...]
    flagged_unmatched_b: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def verdict_changed(self) -> bool:
        """Whether the overall verdicts differ."""
        return self.a.verdict != self.b.verdict

    @property
    def changed_classes(self) -> tuple[ClassDiff, ...]:
        """The classes whose verdict, flags or suspected source differ."""
        return tuple(c for c in self.classes if c.changed)

    @property
    def changed(self) -> bool:
        """Whether the verdict or the flags changed (a class, a flagged row)."""
        return (self.verdict_changed or bool(self.changed_classes)
                or bool(self.flagged_only_a) or bool(self.flagged_only_b)
                or bool(self.flagged_unmatched_a) or bool(self.flagged_unmatched_b))

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable diff (``acgate diff --json``): plain JSON values."""
        return {
            "changed": self.changed, "verdict_changed": self.verdict_changed,
            "a": self.a.to_dict(), "b": self.b.to_dict(), "same_dataset": self.same_dataset,
            "classes": [c.to_dict() for c in self.classes],
            "changed_classes": [c.label for c in self.changed_classes],
            "rows": {"flagged_only_a": list(self.flagged_only_a),
                     "flagged_only_b": list(self.flagged_only_b),
                     "flagged_both": list(self.flagged_both),
                     "n_rows_only_a": self.n_rows_only_a,
                     "n_rows_only_b": self.n_rows_only_b,
                     "flagged_unmatched_a": list(self.flagged_unmatched_a),
                     "flagged_unmatched_b": list(self.flagged_unmatched_b)},
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Scan:
    side: ScanSide
    ids: np.ndarray
    flags: np.ndarray
    segments: np.ndarray
    classes: dict[int, tuple[str, int | None]]


def _scan_folder(folder: PathLike, name: str) -> Path:
    path = Path(folder)
    if not path.exists():
        raise ValueError(f"{name} {str(folder)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"{name} {str(folder)!r} is not a folder; give the folder `acgate scan` "
                         "or `acgate detect` wrote (--out)")
    missing = [file for file in _RESULT_FILES if not (path / file).is_file()]
    if missing:
        raise ValueError(f"{name} {str(folder)!r} is not an acgate scan folder: it has no "
                         f"{', '.join(missing)} (written by `acgate scan` and `acgate detect`)")
    return path


def _dataset_sha256(path: Path) -> tuple[str | None, bool]:
    """``scan.json``'s ``dataset_sha256`` (``None`` when absent) and whether the file exists."""
    file = path / SCAN_FILE
    if not file.exists():
        return None, False
    info = read_json_object(file)
    value = info.get("dataset_sha256")
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{file}: 'dataset_sha256' must be a hex string, got {value!r}")
    return value, True


def _optional_int(value: Any) -> int | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


def _read_scan(folder: PathLike, name: str) -> _Scan:
    path = _scan_folder(folder, name)
    report = read_report(path / REPORT_FILE)
    verdict = report["verdict"]
    if verdict not in _VERDICTS:
        raise ValueError(f"{path / REPORT_FILE}: verdict must be one of {list(_VERDICTS)}, got "
                         f"{verdict!r}")
    samples = read_samples(path / SAMPLES_FILE)
    ids = samples["index"].to_numpy(dtype=np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        raise ValueError(f"{path / SAMPLES_FILE}: column 'index' repeats row ids "
                         f"{repeated[:5].tolist()}{' ...' if len(repeated) > 5 else ''}; a "
                         "row id must name one row")
    flags = samples["is_poison"].to_numpy(dtype=bool)
    listed = np.sort(read_flagged(path / FLAGGED_FILE)["index"].to_numpy(dtype=np.int64))
    if not np.array_equal(listed, np.sort(ids[flags])):
        raise ValueError(f"{path / FLAGGED_FILE} lists {len(listed)} rows but "
                         f"{path / SAMPLES_FILE} flags {int(flags.sum())} others: the folder "
                         "mixes files of different scans")
    classes = {}
    frame = read_classes(path / CLASSES_FILE)
    sources = frame["suspected_source"] if "suspected_source" in frame else [None] * len(frame)
    for label, class_verdict, source in zip(frame["label"], frame["verdict"], sources):
        classes[int(label)] = (str(class_verdict), _optional_int(source))
    sha256, has_scan_json = _dataset_sha256(path)
    side = ScanSide(folder=Path(folder), verdict=verdict, n_samples=len(ids),
                    n_flagged=int(flags.sum()), dataset_sha256=sha256,
                    has_scan_json=has_scan_json)
    return _Scan(side=side, ids=ids, flags=flags,
                 segments=samples["segment"].to_numpy(dtype=np.int64), classes=classes)


def _identity_notes(a: ScanSide, b: ScanSide) -> tuple[bool | None, list[str]]:
    notes = []
    for name, side in (("A", a), ("B", b)):
        if side.dataset_sha256 is None:
            why = ("has no scan.json (written by `acgate detect`?)" if not side.has_scan_json
                   else "records no dataset_sha256 in scan.json")
            notes.append(f"scan {name} ({side.folder}) {why}: the dataset it looked at is "
                         "unknown; rows are compared by their index")
    if a.dataset_sha256 is None or b.dataset_sha256 is None:
        return None, notes
    if a.dataset_sha256 == b.dataset_sha256:
        return True, notes
    notes.append(f"the data changed: scan A looked at dataset_sha256 {a.dataset_sha256[:12]}..., "
                 f"scan B at {b.dataset_sha256[:12]}...; rows are compared by their index, "
                 "which may now name other data")
    return False, notes


def _per_class(rows: np.ndarray, ids: np.ndarray, segments: np.ndarray) -> dict[int, int]:
    """How many of ``rows`` (row ids) lie in each class, by ``segments`` of ``ids``."""
    if len(rows) == 0:
        return {}
    classes, counts = np.unique(segments[np.isin(ids, rows)], return_counts=True)
    return dict(zip(classes.tolist(), counts.tolist()))


def diff_scans(folder_a: PathLike, folder_b: PathLike) -> ScanDiff:
    """Compare two scan folders: verdicts, classes and flagged rows, from A to B.

    Args:
        folder_a: The earlier scan: a folder written by ``acgate scan`` or ``acgate detect``
            (``samples.parquet``, ``classes.parquet``, ``flagged.parquet``, ``report.json``;
            ``scan.json`` when a scan).
        folder_b: The later scan, the same kind of folder.

    Returns:
        The :class:`ScanDiff`. ``diff.changed`` is ``False`` when the verdicts, every class and
        the flagged rows are the same (the datasets may still differ: see ``same_dataset`` and
        ``notes``).

    Raises:
        ValueError: A folder that does not exist, is not a scan folder, or holds unreadable or
            inconsistent files (the message names the path).
        TypeError: A column of the wrong type in one of the Parquet files.
    """
    a, b = _read_scan(folder_a, "scan A"), _read_scan(folder_b, "scan B")
    same_dataset, notes = _identity_notes(a.side, b.side)
    flagged_a, flagged_b = np.sort(a.ids[a.flags]), np.sort(b.ids[b.flags])
    only_a = np.setdiff1d(flagged_a, flagged_b)
    only_b = np.setdiff1d(flagged_b, flagged_a)
    unmatched_a = only_a[~np.isin(only_a, b.ids)]
    unmatched_b = only_b[~np.isin(only_b, a.ids)]
    removed = only_a[np.isin(only_a, b.ids)]
    added = only_b[np.isin(only_b, a.ids)]
    n_rows_only_a = int((~np.isin(a.ids, b.ids)).sum())
    n_rows_only_b = int((~np.isin(b.ids, a.ids)).sum())
    if n_rows_only_a or n_rows_only_b:
        notes.append(f"scan A has {a.side.n_samples} rows and scan B {b.side.n_samples}: "
                     f"{n_rows_only_a} rows only in A ({len(unmatched_a)} flagged) and "
                     f"{n_rows_only_b} only in B ({len(unmatched_b)} flagged) are not compared")
    flagged_per_class_a = _per_class(flagged_a, a.ids, a.segments)
    flagged_per_class_b = _per_class(flagged_b, b.ids, b.segments)
    removed_per_class = _per_class(removed, a.ids, a.segments)
    added_per_class = _per_class(added, b.ids, b.segments)
    unmatched_per_class = _per_class(unmatched_a, a.ids, a.segments)
    for label, count in _per_class(unmatched_b, b.ids, b.segments).items():
        unmatched_per_class[label] = unmatched_per_class.get(label, 0) + count
    classes = []
    for label in sorted(set(a.classes) | set(b.classes)):
        verdict_a, source_a = a.classes.get(label, (None, None))
        verdict_b, source_b = b.classes.get(label, (None, None))
        classes.append(ClassDiff(
            label=label, verdict_a=verdict_a, verdict_b=verdict_b,
            n_flagged_a=flagged_per_class_a.get(label, 0),
            n_flagged_b=flagged_per_class_b.get(label, 0),
            suspected_source_a=source_a, suspected_source_b=source_b,
            n_added=added_per_class.get(label, 0), n_removed=removed_per_class.get(label, 0),
            n_unmatched=unmatched_per_class.get(label, 0)))
    return ScanDiff(
        a=a.side, b=b.side, same_dataset=same_dataset, classes=tuple(classes),
        flagged_only_a=tuple(removed.tolist()), flagged_only_b=tuple(added.tolist()),
        flagged_both=tuple(np.intersect1d(flagged_a, flagged_b).tolist()),
        n_rows_only_a=n_rows_only_a, n_rows_only_b=n_rows_only_b,
        flagged_unmatched_a=tuple(unmatched_a.tolist()),
        flagged_unmatched_b=tuple(unmatched_b.tolist()), notes=tuple(notes))
