"""Activation files: one row per sample, streamed in and out with bounded memory.

Schema ``activations/1``:

=============  ==================================  ==========================================
column         type                                meaning
=============  ==================================  ==========================================
``index``      int64, not null, unique, >= 0       sample id (the dataset row number)
``label``      int64, not null, >= 0               the sample's (possibly poisoned) label
``prediction`` int64, nullable                     the model's prediction; all null when absent
``activation`` fixed_size_list<float32>[width]     last-hidden-layer activations, flattened
=============  ==================================  ==========================================

The width is also stored as ``acgate.activation_width``; free-form metadata (layer name,
model and dataset fingerprints) as ``acgate.<key>`` JSON entries.

:class:`ActivationWriter` streams batches to a temporary file in the destination folder and
renames it into place on a clean close; on an error the temporary file is removed. Readers
reject NaN / inf, ragged or wrong-width rows and duplicate indices with a ``ValueError`` that
names the file and the column. They open files through :func:`acgate.io.schema.open_parquet`,
so a named pipe (FIFO), socket or device is refused without being opened, and so is a file
with duplicate column names.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from acgate.core.validation import MAX_LABEL
from acgate.io.atomic import _fsync_path, _remove, _sweep_stale_siblings, _temp_sibling
from acgate.io.schema import (
    METADATA_PREFIX,
    SCHEMA_KEY,
    check_finite,
    check_schema,
    decode_metadata,
    encode_metadata,
    float_matrix,
    integer_column,
    open_parquet,
    raw_metadata,
    require_columns,
    schema_tag,
)

__all__ = [
    "ActivationTable",
    "ActivationWriter",
    "RowColumns",
    "iter_activation_batches",
    "read_row_columns",
    "read_activations",
    "write_activations",
]

PathLike = str | os.PathLike[str]

_WIDTH_KEY = METADATA_PREFIX + "activation_width"
_REQUIRED = ("index", "label", "activation")
#: Default bytes of activations buffered per row group by :class:`ActivationWriter`.
ROW_GROUP_BYTES = 32 * 1024 * 1024


def _duplicate_message(indices: np.ndarray) -> str | None:
    unique, counts = np.unique(indices, return_counts=True)
    repeated = unique[counts > 1]
    if len(repeated) == 0:
        return None
    shown = ", ".join(str(int(v)) for v in repeated[:5])
    more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    return f"{len(repeated)} duplicate value(s): {shown}{more}"


@dataclass(frozen=True, eq=False)
class ActivationTable:
    """Activations of a set of samples, with their ids, labels and (optional) predictions.

    Attributes:
        indices: ``int64`` sample ids, unique, non-negative.
        labels: ``int64`` labels, non-negative.
        predictions: ``int64`` model predictions, or ``None`` when not recorded.
        activations: ``float32`` matrix ``N x D``, finite.
        metadata: JSON-serialisable information (layer name, fingerprints, ...).
    """

    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray | None
    activations: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # noqa: D105
        activations = np.ascontiguousarray(self.activations, dtype=np.float32)
        if activations.ndim != 2:
            raise ValueError(
                f"ActivationTable.activations must be N x D, got shape {activations.shape}"
            )
        n_rows = len(activations)
        arrays = {"indices": self.indices, "labels": self.labels}
        if self.predictions is not None:
            arrays["predictions"] = self.predictions
        checked: dict[str, np.ndarray] = {}
        for name, values in arrays.items():
            array = np.asarray(values)
            if array.ndim != 1 or len(array) != n_rows:
                raise ValueError(
                    f"ActivationTable.{name} has shape {array.shape}, expected ({n_rows},)"
                )
            if n_rows and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer)):
                raise TypeError(f"ActivationTable.{name} must be integers, got {array.dtype}")
            array = np.array(array, dtype=np.int64, copy=True)
            if n_rows and name != "predictions" and array.min() < 0:
                row = int(np.flatnonzero(array < 0)[0])
                raise ValueError(
                    f"ActivationTable.{name} has negative value {array[row]} in row {row}"
                )
            array.setflags(write=False)
            checked[name] = array
        if not np.isfinite(activations).all():
            row = int(np.flatnonzero(~np.isfinite(activations).all(axis=1))[0])
            raise ValueError(f"ActivationTable.activations has NaN or inf values in row {row}")
        duplicates = _duplicate_message(checked["indices"])
        if duplicates:
            raise ValueError(f"ActivationTable.indices has {duplicates}")
        encode_metadata(self.metadata, what="ActivationTable.metadata")
        view = activations.view()
        view.setflags(write=False)
        object.__setattr__(self, "indices", checked["indices"])
        object.__setattr__(self, "labels", checked["labels"])
        object.__setattr__(self, "predictions", checked.get("predictions"))
        object.__setattr__(self, "activations", view)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata or {})))

    def __len__(self) -> int:  # noqa: D105
        return int(len(self.indices))

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return len(self)

    @property
    def width(self) -> int:
        """Activation width ``D``."""
        return int(self.activations.shape[1])


def _arrow_schema(width: int, metadata: Mapping[str, str]) -> pa.Schema:
    return pa.schema(
        [
            pa.field("index", pa.int64(), nullable=False),
            pa.field("label", pa.int64(), nullable=False),
            pa.field("prediction", pa.int64(), nullable=True),
            pa.field("activation", pa.list_(pa.float32(), width), nullable=False),
        ],
        metadata=dict(metadata),
    )


def _batch_integers(values: Any, name: str, n_rows: int, *, non_negative: bool) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != n_rows:
        raise ValueError(f"write_batch: {name} has shape {array.shape}, expected ({n_rows},)")
    if n_rows and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"write_batch: {name} must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if non_negative and n_rows and array.min() < 0:
        row = int(np.flatnonzero(array < 0)[0])
        raise ValueError(f"write_batch: {name} has negative value {array[row]} in row {row}")
    return array


class ActivationWriter:
    """Stream activation batches to a Parquet file that appears only when complete.

    Use as a context manager. Batches are buffered up to ``row_group_bytes`` of activations
    and written as one row group each to a temporary file next to ``path``; leaving the
    ``with`` block normally checks that no index was written twice and renames the file
    into place; leaving it with an exception (or calling :meth:`abort`) removes the
    temporary file.

    Args:
        path: Destination file (its folder is created when missing).
        width: Activation width ``D`` (every batch must be ``n x D``).
        metadata: JSON-serialisable information stored as ``acgate.<key>`` entries.
        row_group_bytes: Activation bytes buffered before a row group is written (bounds
            the writer's memory; default 32 MiB). Besides this buffer the writer keeps only
            the written indices (8 bytes a row) for the uniqueness check on close.

    Example:
        >>> with ActivationWriter("acts.parquet", width=128) as writer:  # doctest: +SKIP
        ...     for ids, labels, preds, acts in batches:
        ...         writer.write_batch(ids, labels, preds, acts)
    """

    def __init__(  # noqa: D107
        self,
        path: PathLike,
        width: int,
        metadata: Mapping[str, Any] | None = None,
        *,
        row_group_bytes: int = ROW_GROUP_BYTES,
    ) -> None:
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if row_group_bytes < 1:
            raise ValueError(f"row_group_bytes must be positive, got {row_group_bytes}")
        self._row_group_bytes = int(row_group_bytes)
        self.path = Path(path)
        self.width = int(width)
        entries = encode_metadata(metadata, what="ActivationWriter metadata")
        entries[_WIDTH_KEY] = str(self.width)
        entries[SCHEMA_KEY] = schema_tag("activations")
        self._schema = _arrow_schema(self.width, entries)
        self._temp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._indices: list[np.ndarray] = []
        self._has_predictions: bool | None = None
        self._rows_written = 0
        self._state = "new"

    @property
    def rows_written(self) -> int:
        """Rows accepted so far."""
        return self._rows_written

    def open(self) -> ActivationWriter:
        """Create the temporary file (called by ``__enter__``)."""
        if self._state != "new":
            raise RuntimeError(f"ActivationWriter for {self.path} is already {self._state}")
        if self.path.is_dir():
            raise IsADirectoryError(f"cannot write activations to {self.path}: it is a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_siblings(self.path)
        self._temp = _temp_sibling(self.path, "tmp")
        self._writer = pq.ParquetWriter(self._temp, self._schema)
        self._state = "open"
        return self

    def __enter__(self) -> ActivationWriter:  # noqa: D105
        return self.open()

    def __exit__(  # noqa: D105
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write_batch(
        self,
        indices: Any,
        labels: Any,
        predictions: Any | None,
        activations: Any,
    ) -> None:
        """Append one batch.

        Args:
            indices: ``n`` non-negative integer sample ids (unique over the whole file).
            labels: ``n`` non-negative integer labels.
            predictions: ``n`` integer predictions, or ``None``; either every batch has
                them or none does.
            activations: ``n x D`` finite floats.

        Raises:
            ValueError: Wrong shapes or width, negative ids / labels, NaN / inf, duplicate
                ids in the batch, or predictions given for some batches only.
            TypeError: Non-integer ids, labels or predictions.
        """
        if self._state != "open":
            raise RuntimeError(f"ActivationWriter for {self.path} is {self._state}, not open")
        matrix = np.asarray(activations)
        if matrix.ndim != 2 or matrix.shape[1] != self.width:
            raise ValueError(
                f"write_batch: activations have shape {matrix.shape}, expected (n, {self.width})"
            )
        n_rows = matrix.shape[0]
        if not np.issubdtype(matrix.dtype, np.number) or matrix.dtype == bool:
            raise TypeError(f"write_batch: activations must be floats, got dtype {matrix.dtype}")
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if not np.isfinite(matrix).all():
            row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
            raise ValueError(f"write_batch: activations have NaN or inf values in row {row}")
        ids = _batch_integers(indices, "indices", n_rows, non_negative=True)
        label_values = _batch_integers(labels, "labels", n_rows, non_negative=True)
        has_predictions = predictions is not None
        if self._has_predictions is None:
            self._has_predictions = has_predictions
        elif has_predictions != self._has_predictions:
            raise ValueError(
                "write_batch: predictions must be given for every batch or for none "
                f"(earlier batches {'had' if self._has_predictions else 'had no'} predictions)"
            )
        duplicates = _duplicate_message(ids)
        if duplicates:
            raise ValueError(f"write_batch: indices have {duplicates}")
        if has_predictions:
            prediction_array = pa.array(
                _batch_integers(predictions, "predictions", n_rows, non_negative=False),
                type=pa.int64(),
            )
        else:
            prediction_array = pa.nulls(n_rows, type=pa.int64())
        activation_array = pa.FixedSizeListArray.from_arrays(
            pa.array(matrix.reshape(-1), type=pa.float32()), self.width
        )
        table = pa.Table.from_arrays(
            [pa.array(ids, type=pa.int64()), pa.array(label_values, type=pa.int64()),
             prediction_array, activation_array],
            schema=self._schema,
        )
        self._buffer.append(table)
        self._buffered_rows += n_rows
        self._indices.append(ids.copy())
        self._rows_written += n_rows
        if self._buffered_rows * self.width * 4 >= self._row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer or self._writer is None:
            return
        table = pa.concat_tables(self._buffer)
        self._writer.write_table(table, row_group_size=max(len(table), 1))
        self._buffer.clear()
        self._buffered_rows = 0

    def close(self) -> Path:
        """Flush, check ids are unique over the file, and rename the file into place.

        Returns:
            The written path.

        Raises:
            ValueError: When an index was written in two batches (nothing is written).
        """
        if self._state == "closed":
            return self.path
        if self._state != "open":
            raise RuntimeError(f"ActivationWriter for {self.path} is {self._state}, not open")
        try:
            all_ids = np.concatenate(self._indices) if self._indices else np.empty(0, np.int64)
            duplicates = _duplicate_message(all_ids)
            if duplicates:
                raise ValueError(
                    f"ActivationWriter for {self.path}: indices written in several batches: "
                    f"{duplicates}"
                )
            self._flush()
            if self._writer is None or self._temp is None:
                raise RuntimeError(f"ActivationWriter for {self.path} lost its file")
            self._writer.close()
            self._writer = None
            _fsync_path(self._temp)
            os.replace(self._temp, self.path)
            _fsync_path(self.path.parent)
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        return self.path

    def abort(self) -> None:
        """Discard everything written: close and remove the temporary file."""
        if self._writer is not None:
            try:
                self._writer.close()
            except (pa.ArrowException, OSError):
                pass
            self._writer = None
        if self._temp is not None:
            _remove(self._temp)
        self._buffer.clear()
        self._indices.clear()
        self._state = "aborted"


def write_activations(
    path: PathLike, table: ActivationTable, *, batch_rows: int = 65536
) -> Path:
    """Write an :class:`ActivationTable` atomically (its metadata included).

    Returns:
        The written path.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    with ActivationWriter(path, table.width, metadata=table.metadata) as writer:
        for start in range(0, len(table), batch_rows):
            stop = start + batch_rows
            writer.write_batch(
                table.indices[start:stop],
                table.labels[start:stop],
                None if table.predictions is None else table.predictions[start:stop],
                table.activations[start:stop],
            )
    return Path(path)


# --------------------------------------------------------------------------- reading


#: Rows decoded at a time by :func:`read_activations` (~32 MiB of 128-d float32).
READ_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class _FileInfo:
    parquet: pq.ParquetFile
    width: int | None
    has_prediction_column: bool
    predictions_present: bool
    metadata: Mapping[str, Any]


def _inspect(path: PathLike) -> _FileInfo:
    """Checks that need the whole file but only its small columns (ids, predictions)."""
    parquet = open_parquet(path)
    schema = parquet.schema_arrow
    check_schema(path, schema, "activations")
    require_columns(path, schema, _REQUIRED)
    entries = raw_metadata(schema)
    width: int | None = None
    if _WIDTH_KEY in entries:
        text = entries[_WIDTH_KEY]
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{path}: metadata {_WIDTH_KEY!r} must be a positive integer, "
                             f"got {text!r}")
        width = int(text)
    has_prediction_column = "prediction" in schema.names
    small = ["index", "prediction"] if has_prediction_column else ["index"]
    try:
        columns = parquet.read(columns=small)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable Parquet file: {error}") from error
    ids = integer_column(path, columns.column("index"), "index")
    duplicates = _duplicate_message(ids)
    if duplicates:
        raise ValueError(f"{path}: column 'index' has {duplicates}")
    predictions_present = False
    if has_prediction_column:
        column = columns.column("prediction")
        if not pa.types.is_integer(column.type) and not pa.types.is_null(column.type):
            raise TypeError(
                f"{path}: column 'prediction' must be of an integer type, got {column.type}"
            )
        nulls = column.null_count
        if 0 < nulls < len(column):
            mask = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            raise ValueError(
                f"{path}: column 'prediction' has {nulls} null value(s) (first in row "
                f"{int(np.flatnonzero(mask)[0])}); it must be all present or all null"
            )
        predictions_present = len(column) > 0 and nulls == 0
    return _FileInfo(parquet, width, has_prediction_column, predictions_present,
                     decode_metadata(path, entries))


def _table_from_arrow(
    path: PathLike, table: pa.Table | pa.RecordBatch, info: _FileInfo
) -> ActivationTable:
    activations = float_matrix(path, table.column("activation"), "activation", width=info.width)
    check_finite(path, activations, "activation")
    rows = _row_columns_from_arrow(path, table, info)
    return ActivationTable(indices=rows.indices, labels=rows.labels,
                           predictions=rows.predictions, activations=activations,
                           metadata=rows.metadata)


def _row_columns_from_arrow(path: PathLike, table: pa.Table | pa.RecordBatch,
                            info: _FileInfo) -> RowColumns:
    """The ids, labels and (when present) predictions of an Arrow table, checked."""
    predictions = None
    if info.predictions_present:
        predictions = integer_column(path, table.column("prediction"), "prediction",
                                     non_negative=False)
    return RowColumns(
        indices=integer_column(path, table.column("index"), "index"),
        labels=integer_column(path, table.column("label"), "label", max_value=MAX_LABEL),
        predictions=predictions, metadata=info.metadata)


def read_activations(path: PathLike) -> ActivationTable:
    """Read a whole activation file, validated, with memory bounded by the result itself.

    A folder is read as an activation dataset (:func:`acgate.io.shards.read_activation_dataset`:
    the parts of a sharded extraction, ordered by row as one file would be).

    The file is decoded in batches of :data:`READ_BATCH_ROWS` rows straight into
    preallocated arrays, so the peak is the ``N x D`` float32 matrix plus one batch (reading
    the whole Arrow table first would hold it two to three times over).

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: Not a regular file (a FIFO is never opened), not Parquet, duplicate column
            names, newer schema, missing column, nulls, negative ids or labels, NaN / inf,
            ragged or wrong-width activations, duplicate indices, partly-null predictions (the
            message names the file and the column).
        TypeError: A column of the wrong type.
    """
    if Path(path).is_dir():  # an activation dataset (parts of sharded extraction)
        from acgate.io.shards import read_activation_dataset

        return read_activation_dataset(path)
    info = _inspect(path)
    n_rows = info.parquet.metadata.num_rows
    if n_rows == 0:
        try:
            table = info.parquet.read(columns=_columns(info))
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"{path} is not a readable Parquet file: {error}") from error
        return _table_from_arrow(path, table, info)
    indices = np.empty(n_rows, dtype=np.int64)
    labels = np.empty(n_rows, dtype=np.int64)
    predictions = np.empty(n_rows, dtype=np.int64) if info.predictions_present else None
    activations: np.ndarray | None = None
    filled = 0
    for batch in _batches(path, info, READ_BATCH_ROWS):
        stop = filled + len(batch.indices)
        if stop > n_rows:
            raise ValueError(f"{path} holds more rows than its footer declares ({n_rows})")
        if activations is None:
            activations = np.empty((n_rows, batch.activations.shape[1]), dtype=np.float32)
        elif batch.activations.shape[1] != activations.shape[1]:
            raise ValueError(f"{path}: column 'activation' changes width at row {filled}: "
                             f"{batch.activations.shape[1]} vs {activations.shape[1]}")
        indices[filled:stop] = batch.indices
        labels[filled:stop] = batch.labels
        activations[filled:stop] = batch.activations
        if predictions is not None and batch.predictions is not None:
            predictions[filled:stop] = batch.predictions
        filled = stop
    if filled != n_rows or activations is None:
        raise ValueError(f"{path} holds {filled} rows but its footer declares {n_rows}")
    pa.default_memory_pool().release_unused()  # hand the batches' buffers back to the OS
    return ActivationTable(indices=indices, labels=labels, predictions=predictions,
                           activations=activations, metadata=info.metadata)


@dataclass(frozen=True)
class RowColumns:
    """An activation file's small columns: what a class-by-class analysis holds for every row.

    Attributes:
        indices: ``int64`` sample ids, in file order.
        labels: ``int64`` labels.
        predictions: ``int64`` predictions, or ``None`` when not recorded.
        metadata: The file's metadata (modality, proxy, layer).
    """

    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray | None
    metadata: Mapping[str, Any]


def read_row_columns(path: PathLike) -> RowColumns:
    """Read an activation file's ids, labels and predictions, not its activations.

    The file-wide checks of :func:`read_activations` that need no activation (schema, columns,
    unique non-negative ids, labels, predictions all present or all null) run here too.
    """
    info = _inspect(path)
    try:
        table = info.parquet.read(columns=["index", "label", *(
            ["prediction"] if info.predictions_present else [])])
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable Parquet file: {error}") from error
    return _row_columns_from_arrow(path, table, info)


def iter_activation_batches(path: PathLike, batch_rows: int = 8192) -> Iterator[ActivationTable]:
    """Read an activation file in batches of at most ``batch_rows`` rows (bounded memory).

    File-wide checks (schema, columns, unique indices, predictions all present or all null)
    run when iteration starts and read only the ``index`` and ``prediction`` columns; the
    activation checks run per batch, and their messages name the batch's first row.

    Yields:
        One :class:`ActivationTable` per batch, in file order.
    """
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    yield from _batches(path, _inspect(path), batch_rows)


def _columns(info: _FileInfo) -> list[str]:
    columns = ["index", "label", "activation"]
    if info.predictions_present:
        columns.append("prediction")
    return columns


def _batches(path: PathLike, info: _FileInfo, batch_rows: int) -> Iterator[ActivationTable]:
    start = 0
    try:
        batches = info.parquet.iter_batches(batch_size=batch_rows, columns=_columns(info))
        for batch in batches:
            try:
                table = _table_from_arrow(path, batch, info)
            except ValueError as error:
                if start == 0:
                    raise
                raise ValueError(f"{error} (in the batch starting at row {start})") from error
            start += batch.num_rows
            yield table
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable Parquet file: {error}") from error
    # Arrow's pool keeps the batches' freed buffers (~150 MB after a 300k-row class): give
    # them back, so a reader streaming class after class does not hold them all.
    pa.default_memory_pool().release_unused()
