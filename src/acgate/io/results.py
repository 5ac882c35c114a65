"""Detection results on disk: per-sample, per-class and flagged tables plus a JSON report.

:func:`write_result` writes four files into a folder, each atomically (``report.json`` last,
so its presence means the other three are complete):

* ``samples.parquet`` (schema ``samples/1``) — :meth:`DetectionResult.to_frame`: ``index``,
  ``label``, ``segment``, ``cluster``, ``is_poison``, ``poison_score``, ``suspected_source``;
* ``classes.parquet`` (schema ``classes/1``) — :meth:`DetectionResult.classes_frame`;
* ``flagged.parquet`` (schema ``flagged/1``) — the flagged rows only: ``index``, ``label``,
  ``suspected_source``, ``poison_score``;
* ``report.json`` — :meth:`DetectionResult.to_dict` (NaN and infinity written as ``null``).

With the dataset's id column (``--id-column``), ``samples.parquet`` and ``flagged.parquet`` carry
it under its own name right after ``index``; with labels that were mapped to classes (strings,
...), ``samples.parquet`` gains ``label_name``, ``flagged.parquet`` ``label_name`` and
``suspected_source_name``, and ``classes.parquet`` ``class_name`` and
``suspected_source_name``: the original label of each class. Integer labels without an id
column write exactly the columns above.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from acgate.core.result import DetectionResult
from acgate.io.atomic import atomic_write_path
from acgate.io.schema import read_parquet, write_parquet

__all__ = [
    "CLASSES_FILE",
    "FLAGGED_FILE",
    "REPORT_FILE",
    "RESERVED_ROW_COLUMNS",
    "SAMPLES_FILE",
    "check_id_column_name",
    "read_classes",
    "read_flagged",
    "read_json_object",
    "read_report",
    "read_samples",
    "proxy_metrics",
    "result_metrics",
    "write_result",
]

PathLike = str | os.PathLike[str]

SAMPLES_FILE = "samples.parquet"
CLASSES_FILE = "classes.parquet"
FLAGGED_FILE = "flagged.parquet"
REPORT_FILE = "report.json"

_SAMPLE_COLUMNS = ("index", "label", "segment", "cluster", "is_poison", "poison_score",
                   "suspected_source")
_CLASS_COLUMNS = ("label", "n_samples", "verdict", "reason")
_FLAGGED_COLUMNS = ("index", "label", "suspected_source", "poison_score")
#: Names an id column may not have: the per-row outputs' own columns.
RESERVED_ROW_COLUMNS = (*_SAMPLE_COLUMNS, "label_name", "suspected_source_name", "prediction")
_EMPTY_CLASS_COLUMNS = ("label", "n_samples", "n_clusters", "cluster_sizes",
                        "suspicious_cluster", "size_ratio", "silhouette", "exre_score",
                        "suspected_source", "verdict", "reason", "cluster_shares")


def _json_ready(value: Any) -> Any:
    """Convert numpy values and non-finite floats into plain, strict-JSON values."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_json_ready(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _frame_table(frame: Any) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def check_id_column_name(name: str) -> str:
    """Refuse an id column named like a column of the per-row outputs (``index``, ...).

    Raises:
        ValueError: Quoting the name and the reserved names.
    """
    if name in RESERVED_ROW_COLUMNS:
        raise ValueError(f"id_column {name!r} (--id-column) is the name of a column acgate "
                         f"writes to samples.parquet; rename it (reserved: "
                         f"{list(RESERVED_ROW_COLUMNS)})")
    return name


def _names_of(classes: list[Any], label_names: tuple[Any, ...]) -> list[Any]:
    """The original label of each class (``None`` where there is no class)."""
    import pandas as pd

    return [None if pd.isna(c) or int(c) < 0 else label_names[int(c)] for c in classes]


def _with_names(frame: Any, label_names: tuple[Any, ...] | None,
                columns: tuple[tuple[str, str], ...]) -> Any:
    """``frame`` with ``<name>`` columns of original labels after the class columns."""
    if label_names is None:
        return frame
    for source, name in columns:
        if source in frame:
            frame.insert(frame.columns.get_loc(source) + 1, name,
                         _names_of(frame[source].tolist(), label_names))
    return frame


def write_result(result: DetectionResult, out_dir: PathLike, *,
                 samples_metadata: Mapping[str, Any] | None = None,
                 ids: Any = None, id_column: str | None = None,
                 label_names: tuple[Any, ...] | None = None) -> dict[str, Path]:
    """Write a detection result as four files in ``out_dir`` (created when missing).

    Args:
        result: The result.
        out_dir: The output folder; existing files of the same names are replaced, other
            files are left alone.
        samples_metadata: Entries for ``samples.parquet``'s metadata (e.g. the dataset's
            fingerprint, which ``acgate repair`` checks the scan against).
        ids: The dataset's id of each row (indexed by the result's sample ids, the row
            numbers), written as ``id_column`` in ``samples.parquet`` and ``flagged.parquet``;
            ``None``: no id column.
        id_column: The id column's name (with ``ids``).
        label_names: The original label of each class when the labels were mapped
            (``label_name``, ``class_name`` and ``suspected_source_name`` columns); ``None``:
            integer labels, no name columns.

    Returns:
        The written paths by name: ``samples``, ``classes``, ``flagged``, ``report``.

    Raises:
        ValueError: ``ids`` without ``id_column`` (or the reverse), a reserved id column name,
            or ids that do not cover the result's rows.
    """
    import pandas as pd

    if (ids is None) != (id_column is None):
        raise ValueError("write_result takes ids and id_column together")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    samples = result.to_frame()
    flagged_columns = list(_FLAGGED_COLUMNS)
    if ids is not None:
        check_id_column_name(str(id_column))
        ids = np.asarray(ids)
        rows = samples["index"].to_numpy(dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(ids)):
            raise ValueError(f"ids has {len(ids)} values, but the result has sample id "
                             f"{int(rows.max())}")
        samples.insert(1, str(id_column), ids[rows])
        flagged_columns.insert(1, str(id_column))
    samples = _with_names(samples, label_names, (("label", "label_name"),))
    classes = result.classes_frame()
    if len(classes.columns) == 0:
        classes = pd.DataFrame({name: pd.Series([], dtype=object) for name in
                                _EMPTY_CLASS_COLUMNS})
    classes = _with_names(classes, label_names, (("label", "class_name"),
                                                 ("suspected_source", "suspected_source_name")))
    flagged = samples.loc[samples["is_poison"].to_numpy(dtype=bool), flagged_columns]
    flagged = _with_names(flagged.reset_index(drop=True), label_names,
                          (("label", "label_name"),
                           ("suspected_source", "suspected_source_name")))
    paths = {
        "samples": write_parquet(_frame_table(samples), folder / SAMPLES_FILE, "samples",
                                 metadata=samples_metadata),
        "classes": write_parquet(_frame_table(classes), folder / CLASSES_FILE, "classes"),
        "flagged": write_parquet(_frame_table(flagged), folder / FLAGGED_FILE, "flagged"),
    }
    report = json.dumps(_json_ready(result.to_dict()), indent=2, allow_nan=False)
    with atomic_write_path(folder / REPORT_FILE) as temp:
        temp.write_text(report + "\n", encoding="utf-8")
    paths["report"] = folder / REPORT_FILE
    return paths


def _read_frame(path: PathLike, kind: str, required: tuple[str, ...]) -> Any:
    table, _ = read_parquet(path, kind, required=required)
    return table.to_pandas()


def _check_dtypes(path: PathLike, frame: Any, integers: tuple[str, ...],
                  floats: tuple[str, ...] = (), booleans: tuple[str, ...] = ()) -> None:
    import pandas as pd

    checks = (
        (integers, pd.api.types.is_integer_dtype, "integer"),
        (floats, pd.api.types.is_float_dtype, "float"),
        (booleans, pd.api.types.is_bool_dtype, "boolean"),
    )
    for names, predicate, kind in checks:
        for name in names:
            if name in frame and not predicate(frame[name].dtype):
                raise TypeError(
                    f"{path}: column {name!r} must be {kind}, got {frame[name].dtype}"
                )


def read_samples(path: PathLike) -> Any:
    """Read ``samples.parquet`` as a pandas DataFrame (columns as in :func:`write_result`).

    Raises:
        ValueError: Not Parquet, wrong kind or newer schema, or a missing column.
        TypeError: A column of the wrong type.
    """
    frame = _read_frame(path, "samples", _SAMPLE_COLUMNS)
    _check_dtypes(path, frame, ("index", "label", "segment", "cluster", "suspected_source"),
                  ("poison_score",), ("is_poison",))
    return frame


def read_classes(path: PathLike) -> Any:
    """Read ``classes.parquet`` as a pandas DataFrame, one row per class.

    Raises:
        ValueError: Not Parquet, wrong kind or newer schema, or a missing column.
    """
    frame = _read_frame(path, "classes", _CLASS_COLUMNS)
    if len(frame):
        _check_dtypes(path, frame, ("label", "n_samples"))
    return frame


def read_flagged(path: PathLike) -> Any:
    """Read ``flagged.parquet`` as a pandas DataFrame of the flagged rows.

    Raises:
        ValueError: Not Parquet, wrong kind or newer schema, or a missing column.
        TypeError: A column of the wrong type.
    """
    frame = _read_frame(path, "flagged", _FLAGGED_COLUMNS)
    _check_dtypes(path, frame, ("index", "label", "suspected_source"), ("poison_score",))
    return frame


def read_json_object(path: PathLike, what: str = "valid JSON") -> dict[str, Any]:
    """Read a JSON file that must hold one object (``report.json``, ``scan.json``).

    Raises:
        ValueError: Not UTF-8 JSON (the message says the file is not ``what``), or not an object.
    """
    file = Path(path)
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not {what}: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(value).__name__}")
    return value


def read_report(path: PathLike) -> dict[str, Any]:
    """Read ``report.json``.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: Invalid JSON, not a JSON object, or missing ``verdict`` / ``classes``.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    report = read_json_object(file, "a valid JSON report")
    for key in ("verdict", "classes"):
        if key not in report:
            raise ValueError(f"{file} has no {key!r} entry; is it an acgate report?")
    return report


def result_metrics(result: DetectionResult) -> dict[str, float]:
    """The scan's numbers under their one set of names (MLflow metrics, KFP ``Metrics``).

    Per class ``c``: ``silhouette/<c>``, ``size_ratio/<c>``, ``exre/<c>``, ``source_share/<c>``,
    ``confusion/<c>``, ``confidence/<c>`` and ``typicality/<c>`` (how surely the judged
    candidate went to its source, in classes of at least
    :data:`acgate.core.exre.ONE_SOURCE_SURE_MIN_CLASS_ROWS` rows), ``overlap/<c>`` and
    ``overlap_median/<c>`` (the held-out overlap of the class and that source, and its
    baseline: :func:`acgate.core.tail.held_out_overlap`), ``tail_flips/<c>``,
    ``tail_cohesive/<c>`` and ``tail_clump/<c>`` (the class's tail, see
    :mod:`acgate.core.tail`; each only when measured and finite), ``flagged/<c>`` (count),
    ``poisoned/<c>`` and ``skipped/<c>`` (1 or 0). Totals: ``n_samples``, ``n_flagged``,
    ``n_poisoned_classes``, ``n_skipped_classes``, ``n_classes``.
    """
    metrics: dict[str, float] = {}
    for report in result.classes:
        c = report.label
        for prefix, value in (
            ("silhouette", report.silhouette),
            ("size_ratio", report.size_ratio),
            ("exre", report.exre_score),
            ("source_share", report.scores.get("source_share")),
            ("confusion", report.scores.get("confusion")),
            ("confidence", report.scores.get("confidence")),
            ("typicality", report.scores.get("typicality")),
            ("overlap", report.scores.get("overlap")),
            ("overlap_median", report.scores.get("overlap_median")),
            ("tail_flips", report.scores.get("tail_flips")),
            ("tail_cohesive", report.scores.get("tail_cohesive")),
            ("tail_clump", report.scores.get("tail_clump")),
        ):
            if value is not None and np.isfinite(value):
                metrics[f"{prefix}/{c}"] = float(value)
        in_class = result.segments == c
        metrics[f"flagged/{c}"] = float(np.count_nonzero(result.is_poison & in_class))
        metrics[f"poisoned/{c}"] = 1.0 if report.verdict == "poisoned" else 0.0
        metrics[f"skipped/{c}"] = 1.0 if report.verdict == "skipped" else 0.0
    metrics["n_samples"] = float(result.n_samples)
    metrics["n_flagged"] = float(np.count_nonzero(result.is_poison))
    metrics["n_poisoned_classes"] = float(len(result.poisoned_classes))
    metrics["n_skipped_classes"] = float(len(result.skipped_classes))
    metrics["n_classes"] = float(len(result.classes))
    return metrics


#: Run metrics of the proxy's training record, by the record's field.
_PROXY_METRICS = (("train_accuracy", "proxy_train_accuracy"),
                  ("attack_success", "proxy_attack_success"))


def proxy_metrics(proxy: Mapping[str, Any] | None) -> dict[str, float]:
    """The proxy's numbers under their run-metric names (MLflow metrics, KFP ``Metrics``).

    ``proxy_train_accuracy`` and, when the dataset records its attack, ``proxy_attack_success``
    (:func:`acgate.scan.proxy_attack_success`); each only when present and finite.

    Args:
        proxy: ``scan.json``'s ``"proxy"`` record; ``None`` (the user's own model): no metrics.
    """
    metrics: dict[str, float] = {}
    for field, name in _PROXY_METRICS:
        value = (proxy or {}).get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            metrics[name] = float(value)
    return metrics
