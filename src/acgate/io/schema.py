"""Versioned Parquet schemas and the Parquet-level checks every reader shares.

Every Parquet file acgate writes carries the key-value metadata entry ``acgate.schema`` =
``"<kind>/<version>"`` (e.g. ``"dataset/1"``, ``"activations/1"``). Readers accept files of
their own kind up to the version this acgate knows (:data:`SCHEMA_VERSIONS`) and files without
the entry (data made by other tools); a newer or unknown version, a file of another kind, a
file that is not Parquet, a missing column or a column of the wrong type is a ``ValueError`` /
``TypeError`` that names the file and the column.

Every reader opens its file through :func:`open_parquet`, which reads only **regular files**
(a named pipe, socket or device is refused without being opened: opening a FIFO blocks until
a writer appears) and refuses files whose top-level column names repeat (Parquet allows
duplicate field names; acgate could not tell which ``label`` is meant).

Free-form metadata (a dataset's trigger spec, an activation file's layer name) is stored as
one JSON value per key under ``acgate.<key>``; see :func:`encode_metadata` and
:func:`decode_metadata`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from acgate.io.atomic import atomic_write_path

__all__ = [
    "METADATA_PREFIX",
    "RESERVED_METADATA_KEYS",
    "SCHEMA_KEY",
    "SCHEMA_VERSIONS",
    "check_finite",
    "check_schema",
    "check_unique_columns",
    "decode_metadata",
    "encode_metadata",
    "float_matrix",
    "id_column",
    "integer_column",
    "label_column",
    "open_parquet",
    "parse_schema_tag",
    "raw_metadata",
    "read_parquet",
    "require_columns",
    "require_regular_file",
    "schema_tag",
    "write_parquet",
]

#: Parquet key-value metadata key holding ``"<kind>/<version>"``.
SCHEMA_KEY = "acgate.schema"
#: Prefix of every acgate metadata key.
METADATA_PREFIX = "acgate."
#: Newest schema version of each file kind this acgate reads and writes.
SCHEMA_VERSIONS: Mapping[str, int] = {
    "dataset": 1,
    "activations": 1,
    "samples": 1,
    "classes": 1,
    "flagged": 1,
}
#: Keys under ``acgate.`` with a fixed meaning (not free-form metadata).
RESERVED_METADATA_KEYS = frozenset({"schema", "name", "image_shape", "activation_width"})

PathLike = str | os.PathLike[str]


def schema_tag(kind: str) -> str:
    """The current ``acgate.schema`` value of a file kind, e.g. ``"dataset/1"``.

    Raises:
        ValueError: When ``kind`` is not a known file kind.
    """
    if kind not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown acgate file kind {kind!r}; known: {sorted(SCHEMA_VERSIONS)}")
    return f"{kind}/{SCHEMA_VERSIONS[kind]}"


def parse_schema_tag(value: str, *, path: PathLike | None = None) -> tuple[str, int]:
    """Split an ``acgate.schema`` value into ``(kind, version)``.

    Raises:
        ValueError: When the value is not ``"<kind>/<positive integer>"``.
    """
    kind, sep, version = value.partition("/")
    if not sep or not kind or not version.isdigit() or int(version) < 1:
        where = f"{path}: " if path is not None else ""
        raise ValueError(
            f"{where}malformed {SCHEMA_KEY} value {value!r}; expected '<kind>/<version>', "
            f"e.g. {schema_tag('dataset')!r}"
        )
    return kind, int(version)


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def require_regular_file(path: PathLike, *, what: str = "a readable Parquet file") -> Path:
    """Check, without opening it, that ``path`` is a regular file (symbolic links followed).

    Only ``os.stat`` is called: opening a named pipe blocks until a writer appears, and a
    device may never end, so neither is ever opened.

    Args:
        path: The input file.
        what: What the file should be, for messages (``"<path> is not <what>: ..."``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: ``"<path> is not <what>: it is a folder"`` (or a named pipe (FIFO), a
            socket, a device), or when it cannot be examined (permissions, a path too long).
    """
    file = Path(path)
    try:
        info = os.stat(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} does not exist") from None
    except (OSError, ValueError) as error:  # ValueError: an embedded NUL byte
        raise ValueError(f"{file} is not {what}: cannot examine it: {error}") from error
    if stat.S_ISREG(info.st_mode):
        return file
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{file} is not {what}: it is a folder")
    kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
    raise ValueError(
        f"{file} is not {what}: it is {kind}, not a regular file; acgate reads only regular "
        f"files (copy the data into a file first)"
    )


def check_unique_columns(path: PathLike, schema: pa.Schema) -> None:
    """Refuse a schema whose top-level column names repeat (Parquet allows it; acgate does not).

    Raises:
        ValueError: Naming the file and every duplicated column with its count.
    """
    counts = Counter(schema.names)
    repeated = {name: count for name, count in counts.items() if count > 1}
    if repeated:
        listed = ", ".join(f"{name!r} ({count} times)" for name, count in repeated.items())
        raise ValueError(
            f"{path} has duplicate column name(s): {listed}; every column must have a unique "
            f"name (rename or drop the copies)"
        )


def open_parquet(path: PathLike) -> pq.ParquetFile:
    """Open a Parquet file, turning Arrow's errors into one clear ``ValueError``.

    The single way acgate opens a Parquet input: the path must be a regular file (see
    :func:`require_regular_file`; a named pipe is refused without being opened) and its
    column names must be unique (see :func:`check_unique_columns`).

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: ``"<path> is not a readable Parquet file: ..."`` when it is not Parquet,
            is truncated, is a folder, a named pipe (FIFO), a socket or a device; or when
            column names repeat (the message names them).
    """
    file = require_regular_file(path)
    try:
        # pre_buffer keeps every column chunk read so far cached (~600 MB extra at 1M x 128).
        parquet = pq.ParquetFile(file, pre_buffer=False)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as error:
        raise ValueError(f"{file} is not a readable Parquet file: {error}") from error
    check_unique_columns(file, schema)
    return parquet


def raw_metadata(schema: pa.Schema) -> dict[str, str]:
    """The schema's key-value metadata decoded as UTF-8 strings (undecodable keys skipped)."""
    decoded: dict[str, str] = {}
    for key, value in (schema.metadata or {}).items():
        try:
            decoded[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return decoded


def check_schema(path: PathLike, schema: pa.Schema, kind: str) -> int:
    """Check a file's ``acgate.schema`` entry against the kind the caller reads.

    Args:
        path: The file (for messages).
        schema: Its Arrow schema.
        kind: The expected file kind (a key of :data:`SCHEMA_VERSIONS`).

    Returns:
        The file's schema version (the current one when the file carries no entry).

    Raises:
        ValueError: When the file is of another kind or of a newer / unknown version.
    """
    supported = SCHEMA_VERSIONS[kind]
    value = raw_metadata(schema).get(SCHEMA_KEY)
    if value is None:
        return supported
    file_kind, version = parse_schema_tag(value, path=path)
    if file_kind != kind:
        raise ValueError(
            f"{path} is an acgate {file_kind!r} file ({SCHEMA_KEY}={value!r}), "
            f"expected a {kind!r} file ({schema_tag(kind)!r})"
        )
    if version > supported:
        raise ValueError(
            f"{path} has schema version {value!r}, newer than this acgate reads "
            f"({kind}/1 to {schema_tag(kind)}); upgrade acgate to read it"
        )
    return version


def require_columns(path: PathLike, schema: pa.Schema, columns: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the file and the first missing column, if any."""
    present = list(schema.names)
    for column in columns:
        if column not in present:
            raise ValueError(
                f"{path} has no column {column!r} (columns: {present})"
            )


def read_parquet(
    path: PathLike,
    kind: str,
    *,
    required: Iterable[str] = (),
    columns: Iterable[str] | None = None,
    row_range: tuple[int, int] | None = None,
) -> tuple[pa.Table, dict[str, str]]:
    """Read a Parquet file of a given kind after checking its schema version and columns.

    Args:
        path: The file.
        kind: The expected file kind (see :func:`check_schema`).
        required: Columns that must be present.
        columns: Read only these columns (all when ``None``).
        row_range: Read only the rows ``[first, stop)``: only the row groups that hold them
            are read (``None``: every row).

    Returns:
        The table and its decoded key-value metadata.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: Not Parquet / truncated, wrong kind or version, or a missing column.
    """
    parquet = open_parquet(path)
    schema = parquet.schema_arrow
    check_schema(path, schema, kind)
    require_columns(path, schema, required)
    wanted = list(columns) if columns is not None else None
    try:
        if row_range is None:
            table = parquet.read(columns=wanted)
        else:
            table = _read_row_range(path, parquet, row_range, wanted)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable Parquet file: {error}") from error
    return table, raw_metadata(schema)


#: Rows decoded at a time by a row-range read.
_ROW_RANGE_BATCH = 4096


def _read_row_range(path: PathLike, parquet: pq.ParquetFile, row_range: tuple[int, int],
                    columns: list[str] | None) -> pa.Table:
    """The rows ``[first, stop)``, reading only the row groups that hold them.

    The groups are read in batches and only the wanted rows kept: the peak is the result plus
    one batch.
    """
    first, stop = (int(value) for value in row_range)
    footer = parquet.metadata
    if not 0 <= first < stop <= footer.num_rows:
        raise ValueError(f"{path}: rows [{first}, {stop}) are not a non-empty range inside its "
                         f"{footer.num_rows} rows")
    groups, start = [], 0
    for group in range(footer.num_row_groups):
        n_rows = footer.row_group(group).num_rows
        if start < stop and start + n_rows > first:
            if not groups:
                position = start  # the row number of the first row read
            groups.append(group)
        start += n_rows
    kept = []
    for batch in parquet.iter_batches(batch_size=_ROW_RANGE_BATCH, row_groups=groups,
                                      columns=columns, use_threads=False):
        low, high = max(first - position, 0), min(stop - position, batch.num_rows)
        if high > low:
            kept.append(batch.slice(low, high - low))
        position += batch.num_rows
        if position >= stop:
            break
    table = pa.Table.from_batches(kept, schema=parquet.schema_arrow if columns is None else None)
    return table.combine_chunks()


def encode_metadata(
    metadata: Mapping[str, Any] | None, *, what: str = "metadata"
) -> dict[str, str]:
    """Encode free-form metadata as ``acgate.<key>`` -> JSON text.

    Raises:
        ValueError: When a key is empty or reserved (``schema``, ``name``, ...).
        TypeError: When a key is not a string or a value is not JSON-serialisable.
    """
    encoded: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{what} keys must be non-empty strings, got {key!r}")
        if key in RESERVED_METADATA_KEYS:
            raise ValueError(
                f"{what} key {key!r} is reserved; reserved keys: {sorted(RESERVED_METADATA_KEYS)}"
            )
        try:
            encoded[METADATA_PREFIX + key] = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what} value of {key!r} is not JSON-serialisable: {error}") from error
    return encoded


def decode_metadata(path: PathLike, metadata: Mapping[str, str]) -> dict[str, Any]:
    """Decode the free-form ``acgate.<key>`` entries of a file (reserved keys excluded).

    Raises:
        ValueError: When an entry is not valid JSON (names the file and the key).
    """
    decoded: dict[str, Any] = {}
    for key, value in metadata.items():
        if not key.startswith(METADATA_PREFIX):
            continue
        name = key[len(METADATA_PREFIX):]
        if name in RESERVED_METADATA_KEYS:
            continue
        try:
            decoded[name] = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: metadata entry {key!r} is not valid JSON: {error}"
            ) from error
    return decoded


def write_parquet(
    table: pa.Table,
    path: PathLike,
    kind: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
    row_group_size: int | None = None,
) -> Path:
    """Write a table atomically with its ``acgate.schema`` tag and metadata.

    Args:
        table: The data (existing schema metadata, e.g. pandas', is kept).
        path: The destination file.
        kind: File kind (a key of :data:`SCHEMA_VERSIONS`).
        metadata: Free-form JSON-serialisable metadata, stored as ``acgate.<key>``.
        extra: Reserved ``acgate.*`` entries, already encoded (e.g. ``acgate.image_shape``).
        row_group_size: Maximum rows per row group (pyarrow's default when ``None``).

    Returns:
        The written path.
    """
    entries = dict(raw_metadata(table.schema))
    entries.update(encode_metadata(metadata))
    entries.update(extra or {})
    entries[SCHEMA_KEY] = schema_tag(kind)
    table = table.replace_schema_metadata(entries)
    destination = Path(path)
    with atomic_write_path(destination) as temp:
        pq.write_table(table, temp, row_group_size=row_group_size)
    return destination


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def integer_column(
    path: PathLike,
    column: pa.ChunkedArray | pa.Array,
    name: str,
    *,
    non_negative: bool = True,
    max_value: int | None = None,
) -> np.ndarray:
    """Validate an integer column without nulls and return it as ``int64``.

    Args:
        path: The file (named in errors).
        column: The column's values.
        name: The column's name (named in errors).
        non_negative: Refuse negative values.
        max_value: Refuse values above this (labels: one proxy output per class).

    Raises:
        TypeError: When the column is not of an integer type (float, string, bool, ...).
        ValueError: When it has nulls, (``non_negative``) a negative value or a value above
            ``max_value``; the message names the file, the column and the first offending row.
    """
    if not pa.types.is_integer(column.type):
        raise TypeError(f"{path}: column {name!r} must be of an integer type, got {column.type}")
    if column.null_count:
        nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        raise ValueError(
            f"{path}: column {name!r} has {column.null_count} null value(s), "
            f"first in row {_first_true(nulls)}"
        )
    raw = np.asarray(column.to_numpy())
    if raw.dtype == np.uint64 and len(raw) and raw.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{path}: column {name!r} has values beyond the int64 range")
    values = raw.astype(np.int64, copy=False)
    if non_negative and len(values) and values.min() < 0:
        row = _first_true(values < 0)
        raise ValueError(
            f"{path}: column {name!r} has negative value {values[row]} in row {row}"
        )
    if max_value is not None and len(values) and values.max() > max_value:
        row = _first_true(values > max_value)
        raise ValueError(
            f"{path}: column {name!r} has value {values[row]} in row {row}, above the largest "
            f"supported {name} {max_value}"
        )
    return values


def _where(name: str, option: str | None) -> str:
    return f"column {name!r}" + (f" ({option})" if option else "")


#: Arrow types a label column may have besides integers: mapped to classes 0..k-1.
_LABEL_KINDS = "integers, strings, floats or booleans"


def _is_mappable_label_type(kind: pa.DataType) -> bool:
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind) or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind))


def label_column(
    path: PathLike,
    column: pa.ChunkedArray | pa.Array,
    name: str,
    *,
    max_value: int,
    option: str | None = None,
) -> tuple[np.ndarray, tuple[Any, ...] | None]:
    """Read a dataset's label column: integers as they are, any other value type mapped.

    An integer column is checked as :func:`integer_column` does (no nulls, non-negative, at
    most ``max_value``) and returned unchanged, with no mapping. A column of strings, floats
    or booleans (dictionary-encoded too, e.g. a pandas ``category``) is mapped to the classes
    ``0..k-1`` in the sorted order of its ``k`` distinct values; the mapping is returned.

    Args:
        path: The file (named in errors).
        column: The column's values.
        name: The column's name (named in errors).
        max_value: Largest class (integer labels) or ``max_value + 1`` distinct values.
        option: How the user named the column (e.g. ``"--label-column"``), quoted in errors.

    Returns:
        ``(labels, names)``: ``int64`` labels and, for a mapped column, ``names[c]`` = the
        original value of class ``c`` (``None`` for an integer column).

    Raises:
        TypeError: A column of another type (lists, structs, dates, ...).
        ValueError: Nulls, NaN, a negative or too large integer, or more distinct values than
            classes allowed; the message names the file, the column and the first offending row.
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return integer_column(path, column, name, max_value=max_value), None
    where = _where(name, option)
    if not _is_mappable_label_type(kind):
        raise TypeError(f"{path}: {where} must hold {_LABEL_KINDS} (labels), got {kind}")
    values = column.to_pylist()
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{path}: {where} has a missing label ({value!r}) in row {row}")
    names = tuple(sorted(set(values)))
    if len(names) > max_value + 1:
        raise ValueError(f"{path}: {where} has {len(names):,} distinct labels, more than the "
                         f"{max_value + 1:,} classes supported (is it the label column?)")
    index = {value: position for position, value in enumerate(names)}
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values)), names


def id_column(
    path: PathLike, column: pa.ChunkedArray | pa.Array, name: str, *, option: str | None = None
) -> np.ndarray:
    """Read a dataset's id column: non-null, unique values of a scalar type.

    Args:
        path: The file (named in errors).
        column: The column's values.
        name: The column's name (named in errors).
        option: How the user named the column (e.g. ``"--id-column"``), quoted in errors.

    Returns:
        The ids as a numpy array (integers as ``int64``, strings as ``object``).

    Raises:
        TypeError: A column of a nested type (lists, structs, maps).
        ValueError: A null id or an id that repeats (quoting the value and its rows).
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    where = _where(name, option)
    if pa.types.is_nested(kind):
        raise TypeError(f"{path}: {where} must hold one scalar id per row (integers or "
                        f"strings), got {kind}")
    values = column.to_pylist()
    seen: dict[Any, int] = {}
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{path}: {where} has a missing id ({value!r}) in row {row}; "
                             "every row needs an id")
        if value in seen:
            raise ValueError(f"{path}: {where} must be unique, but id {value!r} is in rows "
                             f"{seen[value]} and {row}")
        seen[value] = row
    if pa.types.is_integer(kind) and all(v <= np.iinfo(np.int64).max for v in values):
        return np.asarray(values, dtype=np.int64)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def float_matrix(
    path: PathLike,
    column: pa.ChunkedArray | pa.Array,
    name: str,
    *,
    width: int | None = None,
) -> np.ndarray:
    """Turn a list-of-floats column into a ``float32`` matrix with one row per value.

    Accepts ``fixed_size_list``, ``list`` and ``large_list`` of float16/32/64. Variable-length
    lists must all have the same length (``width`` when given, else the first row's).

    Raises:
        TypeError: When the column is not a list of floats.
        ValueError: Null rows or null elements, ragged rows or a wrong width; the message
            names the file, the column and the first offending row.
    """
    kind = column.type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not (pa.types.is_fixed_size_list(kind) or is_list) or not pa.types.is_floating(
        kind.value_type
    ):
        raise TypeError(
            f"{path}: column {name!r} must be a list of floats "
            f"(fixed_size_list<float32>), got {kind}"
        )
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n_rows = len(array)
    if array.null_count:
        nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        raise ValueError(
            f"{path}: column {name!r} has {array.null_count} null row(s), "
            f"first in row {_first_true(nulls)}"
        )
    if pa.types.is_fixed_size_list(kind):
        row_width = kind.list_size
        if width is not None and row_width != width:
            raise ValueError(
                f"{path}: column {name!r} has width {row_width}, expected {width}"
            )
    else:
        offsets = np.asarray(array.offsets.to_numpy(), dtype=np.int64)
        lengths = np.diff(offsets)
        row_width = int(width if width is not None else (lengths[0] if n_rows else 0))
        if n_rows and np.any(lengths != row_width):
            row = _first_true(lengths != row_width)
            raise ValueError(
                f"{path}: column {name!r} is ragged: row {row} has {lengths[row]} values, "
                f"expected {row_width}"
            )
    flat = array.flatten()
    if flat.null_count:
        nulls = np.asarray(flat.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        row = _first_true(nulls) // max(row_width, 1)
        raise ValueError(f"{path}: column {name!r} has null elements, first in row {row}")
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(n_rows, row_width)


def check_finite(path: PathLike, values: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the file, column and first row holding NaN or inf."""
    finite = np.isfinite(values)
    if not finite.all():
        bad_rows = ~finite.reshape(len(values), -1).all(axis=1)
        row = _first_true(bad_rows)
        raise ValueError(f"{path}: column {name!r} has NaN or inf values, first in row {row}")
