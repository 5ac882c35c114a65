"""Great Expectations suites for what enters and leaves the scan.

Three suites, all defined in this module as plain data (a GX expectation class name and its
keyword arguments), so they can be read and tested without importing Great Expectations:

* **dataset** (:func:`dataset_expectations`), over the user's column names (``--label-column``,
  ...; :class:`acgate.io.datasets.Columns`): the raw label column is present, not null, of an
  integer type (or strings, floats, booleans, which the reader maps to classes) and in the
  declared classes; an id column, when named, is not null and unique; for images
  ``<image>_shape`` (e.g. ``"1x8x8"``, ``None`` when the image did not decode) is not null,
  well-formed and has exactly one distinct value; for text the text column is not null and not
  empty. Ground-truth columns (``is_poison``, ``source_label``) are ignored.
* **activations** (:func:`activations_expectations`): one row per sample (see
  :func:`activations_summary_frame`): ``activation_width`` has one distinct value, every
  activation is finite, ``index`` is unique and in ``[0, n_dataset_rows)``.
* **classes** (:func:`classes_expectations`): the per-class table of a result
  (``DetectionResult.classes_frame()``): ``size_ratio`` in ``[0, 1]`` (null only for skipped
  classes), ``silhouette`` in ``[-1, 1]``, one row per class, known verdicts.

Each ``validate_*`` function runs its suite with an ephemeral GX context and a pandas data source
(offline, ~0.05 s; the GX import itself costs 2–3 s and happens on first use), and returns a
:class:`ValidationReport`; with ``raise_on_failure=True`` (the default) a failed suite raises
:class:`ExpectationFailed`, whose message names the stage, the failing expectation, its column
and the observed value.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from acgate.io.datasets import Columns

logger = logging.getLogger(__name__)

Modality = Literal["image", "text"]
Stage = Literal["dataset", "activations", "classes"]

#: One expectation of a suite: a class name of ``great_expectations.expectations`` and its
#: keyword arguments. A ``row_condition`` is given as ``(column, "==" | "!=", value)`` and
#: turned into a GX ``Column`` condition when the suite runs.
ExpectationSpec = tuple[str, Mapping[str, Any]]

#: dtype / value type names GX accepts as "an integer" for the label and index columns.
INTEGER_TYPES: tuple[str, ...] = (
    "int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
)

#: Value type names a dataset's label column may hold: integers as they are, strings, floats
#: and booleans mapped to classes ``0..k-1`` by the reader
#: (:func:`acgate.io.schema.label_column`).
LABEL_TYPES: tuple[str, ...] = (*INTEGER_TYPES, "str", "float", "float64", "float32", "bool")

#: Shape strings as written by the dataset loaders: dimensions joined by ``x`` (``"1x8x8"``).
IMAGE_SHAPE_REGEX = r"^[1-9][0-9]*(?:x[1-9][0-9]*)+$"

VERDICTS: tuple[str, ...] = ("clean", "poisoned", "skipped")

_ORDER_KEY = "acgate_order"
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one suite.

    Attributes:
        stage: ``"dataset"``, ``"activations"`` or ``"classes"``.
        success: Whether every expectation passed.
        results: One JSON-able dict per expectation, in suite order: ``expectation`` (GX type,
            e.g. ``expect_column_values_to_not_be_null``), ``column``, ``kwargs``, ``success``,
            ``observed`` (plain-words observed value), ``result`` (GX's result details) and
            ``exception`` (message when GX could not evaluate it, else ``None``) and
            ``column_missing``.
        n_rows: Rows validated.
    """

    stage: str
    success: bool
    results: tuple[Mapping[str, Any], ...]
    n_rows: int

    @property
    def failures(self) -> tuple[Mapping[str, Any], ...]:
        """The results that failed, in suite order."""
        return tuple(result for result in self.results if not result["success"])

    def describe_failures(self) -> str:
        """One line per failed expectation: type, column and observed value."""
        return "\n".join(
            f"{r['expectation']} on column {r['column']!r}: {r['observed']}"
            for r in self.failures
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-serialisable) of the report."""
        return {
            "stage": self.stage,
            "success": self.success,
            "n_rows": self.n_rows,
            "n_expectations": len(self.results),
            "n_failed": len(self.failures),
            "results": [dict(result) for result in self.results],
        }


class ExpectationFailed(ValueError):
    """A suite failed: the message names the stage, expectation, column and observed value.

    Attributes:
        report: The full :class:`ValidationReport`.
    """

    def __init__(self, report: ValidationReport) -> None:
        """Build the message from the report's failures (the first one leads)."""
        self.report = report
        # Expectations on a missing column fail too; the column-exists failure says it all.
        failures = [
            r for r in report.failures
            if not r["column_missing"] or r["expectation"] == "expect_column_to_exist"
        ] or list(report.failures)
        lines = [f"{r['expectation']} on column {r['column']!r}: {r['observed']}"
                 for r in failures]
        message = f"{report.stage} validation failed: {lines[0]}"
        if len(lines) > 1:
            message += f" (and {len(lines) - 1} more: " + "; ".join(lines[1:]) + ")"
        super().__init__(message)


# --- suites (plain data) --------------------------------------------------------------------


def dataset_expectations(
    *, declared_classes: Iterable[int] | None = None, modality: Modality = "image",
    columns: Columns | None = None,
) -> list[ExpectationSpec]:
    """The dataset suite, over the user's columns (see :func:`acgate.io.inspect.validation_frame`).

    Args:
        declared_classes: Labels the dataset may use; ``None`` skips the set check.
        modality: ``"image"`` (checks ``<image column>_shape``) or ``"text"`` (checks the text
            column).
        columns: The file's names of the label, image, text and id columns (default: ``label``,
            ``image``, ``text``, no id column). Labels may be integers, or strings, floats or
            booleans (mapped to classes by the reader); an id column must be non-null and
            unique.

    Returns:
        The expectations, in the order failures are reported.

    Raises:
        ValueError: On an unknown modality or non-integer declared classes.
    """
    from acgate.io.datasets import DEFAULT_COLUMNS
    from acgate.io.inspect import shape_column

    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    columns = columns or DEFAULT_COLUMNS
    label = columns.label
    specs: list[ExpectationSpec] = [
        ("ExpectColumnToExist", {"column": label}),
        ("ExpectColumnValuesToNotBeNull", {"column": label}),
        ("ExpectColumnValuesToBeInTypeList", {"column": label,
                                              "type_list": list(LABEL_TYPES)}),
    ]
    if declared_classes is not None:
        classes = _integer_list(declared_classes, "declared_classes")
        specs.append(("ExpectColumnValuesToBeInSet", {"column": label, "value_set": classes}))
    if columns.id is not None:
        specs += [
            ("ExpectColumnToExist", {"column": columns.id}),
            ("ExpectColumnValuesToNotBeNull", {"column": columns.id}),
            ("ExpectColumnValuesToBeUnique", {"column": columns.id}),
        ]
    if modality == "image":
        shapes = shape_column(columns)
        specs += [
            ("ExpectColumnToExist", {"column": shapes}),
            ("ExpectColumnValuesToNotBeNull", {"column": shapes}),
            ("ExpectColumnValuesToMatchRegex", {"column": shapes,
                                                "regex": IMAGE_SHAPE_REGEX}),
            ("ExpectColumnUniqueValueCountToBeBetween", {"column": shapes,
                                                        "min_value": 1, "max_value": 1}),
        ]
    else:
        specs += [
            ("ExpectColumnToExist", {"column": columns.text}),
            ("ExpectColumnValuesToNotBeNull", {"column": columns.text}),
            ("ExpectColumnValueLengthsToBeBetween", {"column": columns.text, "min_value": 1}),
        ]
    return specs


def activations_expectations(*, n_dataset_rows: int | None = None) -> list[ExpectationSpec]:
    """The activations suite (over :func:`activations_summary_frame`'s columns).

    Args:
        n_dataset_rows: Rows of the dataset the activations were extracted from; ``index`` must
            then lie in ``[0, n_dataset_rows)``. ``None``: only ``index >= 0``.

    Returns:
        The expectations, in the order failures are reported.

    Raises:
        ValueError: When ``n_dataset_rows`` is not a positive integer.
    """
    if n_dataset_rows is not None and (
        isinstance(n_dataset_rows, bool)
        or not isinstance(n_dataset_rows, int | np.integer)
        or n_dataset_rows < 1
    ):
        raise ValueError(f"n_dataset_rows must be a positive integer, got {n_dataset_rows!r}")
    max_index = None if n_dataset_rows is None else int(n_dataset_rows) - 1
    specs: list[ExpectationSpec] = [
        ("ExpectColumnToExist", {"column": column})
        for column in ("index", "label", "activation_width", "activation_finite")
    ]
    specs += [
        ("ExpectColumnValuesToNotBeNull", {"column": "activation_width"}),
        ("ExpectColumnUniqueValueCountToBeBetween", {"column": "activation_width",
                                                    "min_value": 1, "max_value": 1}),
        ("ExpectColumnValuesToBeBetween", {"column": "activation_width", "min_value": 1}),
        ("ExpectColumnValuesToNotBeNull", {"column": "activation_finite"}),
        ("ExpectColumnValuesToBeInSet", {"column": "activation_finite", "value_set": [True]}),
        ("ExpectColumnValuesToNotBeNull", {"column": "index"}),
        ("ExpectColumnValuesToBeInTypeList", {"column": "index",
                                              "type_list": list(INTEGER_TYPES)}),
        ("ExpectColumnValuesToBeUnique", {"column": "index"}),
        ("ExpectColumnValuesToBeBetween", {"column": "index", "min_value": 0,
                                           "max_value": max_index}),
        ("ExpectColumnValuesToNotBeNull", {"column": "label"}),
        ("ExpectColumnValuesToBeInTypeList", {"column": "label",
                                              "type_list": list(INTEGER_TYPES)}),
    ]
    return specs


def classes_expectations() -> list[ExpectationSpec]:
    """The per-class table suite (over ``DetectionResult.classes_frame()``)."""
    not_skipped = {"row_condition": ("verdict", "!=", "skipped")}
    return [
        ("ExpectColumnToExist", {"column": column})
        for column in ("label", "verdict", "size_ratio", "silhouette")
    ] + [
        ("ExpectColumnValuesToNotBeNull", {"column": "label"}),
        ("ExpectColumnValuesToBeUnique", {"column": "label"}),
        ("ExpectColumnValuesToBeInSet", {"column": "verdict", "value_set": list(VERDICTS)}),
        ("ExpectColumnValuesToBeBetween", {"column": "size_ratio", "min_value": 0.0,
                                           "max_value": 1.0}),
        ("ExpectColumnValuesToNotBeNull", {"column": "size_ratio", **not_skipped}),
        ("ExpectColumnValuesToBeBetween", {"column": "silhouette", "min_value": -1.0,
                                           "max_value": 1.0}),
    ]


# --- frames ---------------------------------------------------------------------------------


def activations_summary_frame(
    indices: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    activations: np.ndarray | Sequence[np.ndarray],
) -> Any:
    """One row per sample describing its activation vector, for the activations suite.

    Args:
        indices: Dataset row of each sample, shape ``(N,)``.
        labels: Label of each sample, shape ``(N,)``.
        activations: ``N x D`` array, or a sequence of ``N`` arrays (ragged widths allowed:
            that is what the suite catches). Each row's width is its number of elements.

    Returns:
        A pandas DataFrame with columns ``index``, ``label``, ``activation_width`` (int64) and
        ``activation_finite`` (bool).

    Raises:
        ValueError: When the three inputs differ in length or an activation is not numeric.
    """
    import pandas as pd

    indices = np.asarray(indices)
    labels = np.asarray(labels)
    if isinstance(activations, np.ndarray) and activations.dtype != object:
        if activations.ndim < 2:
            raise ValueError(
                f"activations must be N x D (or a list of 1-D arrays), got shape "
                f"{activations.shape}"
            )
        matrix = activations.reshape(len(activations), -1)
        if not np.issubdtype(matrix.dtype, np.number):
            raise ValueError(f"activations must be numeric, got dtype {matrix.dtype}")
        widths = np.full(len(matrix), matrix.shape[1], dtype=np.int64)
        finite = np.isfinite(matrix).all(axis=1)
    else:
        rows = list(activations)
        widths = np.empty(len(rows), dtype=np.int64)
        finite = np.empty(len(rows), dtype=bool)
        for i, row in enumerate(rows):
            try:
                values = np.asarray(row, dtype=np.float64).ravel()
            except (TypeError, ValueError) as error:
                raise ValueError(f"activation of row {i} is not numeric: {error}") from error
            widths[i] = values.size
            finite[i] = bool(np.isfinite(values).all())
    if not len(indices) == len(labels) == len(widths):
        raise ValueError(
            f"indices, labels and activations differ in length: {len(indices)}, {len(labels)}, "
            f"{len(widths)}"
        )
    return pd.DataFrame(
        {"index": indices, "label": labels, "activation_width": widths,
         "activation_finite": finite}
    )


# --- validation -----------------------------------------------------------------------------


def validate_dataset_frame(
    frame: Any,
    *,
    declared_classes: Iterable[int] | None = None,
    modality: Modality = "image",
    raise_on_failure: bool = True,
    columns: Columns | None = None,
) -> ValidationReport:
    """Validate a dataset table before activations are extracted.

    Args:
        frame: pandas DataFrame with the raw label column, the id column (when ``columns``
            names one) and ``<image column>_shape`` (images) or the text column (text), under
            the file's names (:func:`acgate.io.inspect.validation_frame`). Other columns are
            ignored.
        declared_classes: Labels the dataset may use.
        modality: ``"image"`` or ``"text"``.
        raise_on_failure: Raise :class:`ExpectationFailed` when an expectation fails.
        columns: The file's names of the label, image, text and id columns (default: the
            canonical ``label``, ``image``, ``text``, no id column).

    Returns:
        The report.

    Raises:
        ExpectationFailed: When the suite fails and ``raise_on_failure``.
        TypeError: When ``frame`` is not a pandas DataFrame.
    """
    specs = dataset_expectations(declared_classes=declared_classes, modality=modality,
                                 columns=columns)
    return run_suite("dataset", frame, specs, raise_on_failure=raise_on_failure)


def validate_activations_frame(
    frame: Any, *, n_dataset_rows: int | None = None, raise_on_failure: bool = True
) -> ValidationReport:
    """Validate extracted activations (summarised by :func:`activations_summary_frame`).

    Args:
        frame: pandas DataFrame with ``index``, ``label``, ``activation_width`` and
            ``activation_finite``.
        n_dataset_rows: Rows in the source dataset (bounds ``index``).
        raise_on_failure: Raise :class:`ExpectationFailed` when an expectation fails.

    Returns:
        The report.

    Raises:
        ExpectationFailed: When the suite fails and ``raise_on_failure``.
        TypeError: When ``frame`` is not a pandas DataFrame.
    """
    specs = activations_expectations(n_dataset_rows=n_dataset_rows)
    return run_suite("activations", frame, specs, raise_on_failure=raise_on_failure)


def validate_classes_frame(frame: Any, *, raise_on_failure: bool = True) -> ValidationReport:
    """Validate the per-class table of a result (``DetectionResult.classes_frame()``).

    Args:
        frame: pandas DataFrame with ``label``, ``verdict``, ``size_ratio``, ``silhouette``.
        raise_on_failure: Raise :class:`ExpectationFailed` when an expectation fails.

    Returns:
        The report.

    Raises:
        ExpectationFailed: When the suite fails and ``raise_on_failure``.
        TypeError: When ``frame`` is not a pandas DataFrame.
    """
    return run_suite("classes", frame, classes_expectations(), raise_on_failure=raise_on_failure)


def run_suite(
    stage: str,
    frame: Any,
    specs: Sequence[ExpectationSpec],
    *,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Run expectations over a DataFrame with an ephemeral GX context.

    Args:
        stage: Name used in the report and error message.
        frame: pandas DataFrame.
        specs: ``(expectation class name, kwargs)`` pairs.
        raise_on_failure: Raise :class:`ExpectationFailed` when an expectation fails.

    Returns:
        The report, results in ``specs`` order.

    Raises:
        ExpectationFailed: When the suite fails and ``raise_on_failure``.
        TypeError: When ``frame`` is not a pandas DataFrame.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{stage} frame must be a pandas DataFrame, got {type(frame).__name__}")
    gx, expectations_module, progress_bars_config, column_condition = _import_gx()

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = progress_bars_config(
        globally=False, metric_calculations=False
    )
    source = context.data_sources.add_pandas(name=f"acgate_{stage}")
    asset = source.add_dataframe_asset(name=stage)
    batch = asset.add_batch_definition_whole_dataframe(name="whole").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = gx.ExpectationSuite(name=f"acgate.{stage}")
    for order, (name, kwargs) in enumerate(specs):
        expectation_class = getattr(expectations_module, name)
        kwargs = dict(kwargs)
        if "row_condition" in kwargs:
            kwargs["row_condition"] = _row_condition(column_condition, kwargs["row_condition"])
        suite.add_expectation(expectation_class(**kwargs, meta={_ORDER_KEY: order}))
    validation = batch.validate(suite)

    results = sorted(validation.results,
                     key=lambda r: r.expectation_config.meta.get(_ORDER_KEY, len(specs)))
    columns = [str(c) for c in frame.columns]
    plain = tuple(_result_dict(result, frame, columns) for result in results)
    report = ValidationReport(
        stage=stage, success=all(r["success"] for r in plain), results=plain, n_rows=len(frame)
    )
    if report.success:
        logger.info("%s validation passed (%d expectations, %d rows)", stage, len(plain),
                    len(frame))
        return report
    if raise_on_failure:
        raise ExpectationFailed(report)
    logger.warning("%s validation failed:\n%s", stage, report.describe_failures())
    return report


def _import_gx() -> tuple[Any, Any, Any, Any]:
    try:
        import great_expectations as gx
        import great_expectations.expectations as expectations_module
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.row_conditions import Column
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "acgate.gx needs Great Expectations: pip install 'acgate[gx]'"
        ) from error
    return gx, expectations_module, ProgressBarsConfig, Column


def _row_condition(column_condition: Any, spec: tuple[str, str, Any]) -> Any:
    column, operator, value = spec
    if operator == "==":
        return column_condition(name=column) == value
    if operator == "!=":
        return column_condition(name=column) != value
    raise ValueError(f"row condition operator must be '==' or '!=', got {operator!r}")


def _result_dict(result: Any, frame: Any, columns: list[str]) -> dict[str, Any]:
    data = result.to_json_dict()
    config = data["expectation_config"]
    kwargs = _json_safe({k: v for k, v in config["kwargs"].items() if k != "batch_id"})
    column = kwargs.get("column")
    exception = None
    info = data.get("exception_info") or {}
    if info.get("raised_exception"):
        exception = str(info.get("exception_message"))
    details = _json_safe(data.get("result") or {})
    success = bool(data["success"])
    return {
        "expectation": config["type"],
        "column": column,
        "column_missing": column is not None and column not in columns,
        "kwargs": kwargs,
        "success": success,
        "observed": _observed_text(config["type"], column, details, exception, frame, columns),
        "result": {k: v for k, v in details.items() if not k.startswith("partial_unexpected_c")},
        "exception": exception,
    }


def _observed_text(
    expectation: str,
    column: str | None,
    details: Mapping[str, Any],
    exception: str | None,
    frame: Any,
    columns: list[str],
) -> str:
    if column is not None and column not in columns:
        return f"column {column!r} is missing (columns: {columns})"
    if exception is not None:
        return f"could not be evaluated: {exception}"
    if "observed_value" in details:
        text = f"observed {details['observed_value']!r}"
        if expectation == "expect_column_unique_value_count_to_be_between":
            distinct = frame[column].dropna().unique().tolist()
            text += f" (values: {sorted(map(str, distinct))[:_MAX_EXAMPLES]})"
        elif expectation == "expect_column_values_to_be_in_type_list":
            text += f" (dtype {frame[column].dtype})"
        return text
    if expectation == "expect_column_values_to_not_be_null" and "unexpected_count" in details:
        rows = details.get("partial_unexpected_index_list") or []
        text = f"{details['unexpected_count']} of {details.get('element_count')} values are null"
        return text + (f" at rows {rows[:_MAX_EXAMPLES]}" if rows else "")
    if "unexpected_count" in details:
        text = (f"{details['unexpected_count']} of {details.get('element_count')} values "
                f"unexpected")
        examples = details.get("partial_unexpected_list") or []
        rows = details.get("partial_unexpected_index_list") or []
        if examples:
            text += f", e.g. {examples[:_MAX_EXAMPLES]!r}"
        if rows:
            text += f" at rows {rows[:_MAX_EXAMPLES]}"
        return text
    return "no details"


def _json_safe(value: Any) -> Any:
    """Plain JSON values: non-finite floats become ``"nan"`` / ``"inf"``, numpy scalars Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _integer_list(values: Iterable[Any], name: str) -> list[int]:
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must hold integers, got {value!r}")
        out.append(int(value))
    if not out:
        raise ValueError(f"{name} is empty")
    return out

