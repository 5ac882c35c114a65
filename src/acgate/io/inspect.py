"""Per-row views of a raw dataset file for Great Expectations (before strict decoding).

The strict readers in :mod:`acgate.io.datasets` stop at the first bad row. The expectation
suites want to see every row: the raw ``label`` values (nulls, floats and strings included) and
each image's shape as its header gives it (``None`` for null bytes, bytes that are not PNG /
JPEG, an image over the pixel limit or of an unsupported mode), so that a failed expectation can
name what is wrong across the whole file. A body that does not decode behind a valid header is
left to the strict reader, which decodes every image anyway and names the row.

The file is opened through :func:`acgate.io.schema.open_parquet` (regular files only, unique
column names), and the image memory budget of :func:`acgate.io.datasets.read_image_dataset`
is checked from the image headers before any image is decoded.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from acgate.io.datasets import (
    DEFAULT_COLUMNS,
    DEFAULT_MAX_DECODED_BYTES,
    Columns,
    _check_budget,
    _checked_budget,
    _dataset_channels,
    _decode_image,
    _Header,
    _image_header,
    _image_shape_from_metadata,
)
from acgate.io.schema import open_parquet, raw_metadata

PathLike = str | os.PathLike[str]
_MAX_PIXELS = 4096 * 4096


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _blobs(column: pa.ChunkedArray) -> list[Any] | None:
    """The encoded images of a struct ``{bytes, ...}`` or binary column; ``None`` otherwise."""
    kind = column.type
    if pa.types.is_struct(kind):
        if kind.get_field_index("bytes") < 0:
            return None
        return column.combine_chunks().field("bytes").to_pylist()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column.to_pylist()
    return None


def first_decode_error(path: PathLike, column: str = "image") -> str | None:
    """The decoder's message for the first image of ``column`` that does not decode, or None."""
    parquet = open_parquet(path)
    if column not in parquet.schema_arrow.names:
        return None
    blobs = _blobs(parquet.read(columns=[column]).column(column))
    if blobs is None:
        return None
    for row, blob in enumerate(blobs):
        if blob is None:
            return f"{path}: column {column!r} row {row} has no image bytes (null)"
        try:
            _decode_image(blob, path, column, row, _MAX_PIXELS)
        except (ValueError, TypeError) as error:
            return str(error)
    return None


def _headers(path: PathLike, blobs: list[Any], name: str = "image") -> list[_Header | None]:
    headers: list[_Header | None] = []
    for row, blob in enumerate(blobs):
        try:
            headers.append(_image_header(blob, path, name, row, _MAX_PIXELS))
        except (ValueError, TypeError):
            headers.append(None)
    return headers


def _row_shapes(
    path: PathLike,
    column: pa.ChunkedArray,
    metadata: dict[str, str],
    max_decoded_bytes: int | None = None,
    name: str = "image",
) -> list[Any]:
    kind = column.type
    blobs = _blobs(column)
    if blobs is not None:
        headers = _headers(path, blobs, name)
        readable = [header for header in headers if header is not None]
        channels = _dataset_channels(header.mode for header in readable)
        # Checked from the headers alone, before any image is decoded below.
        _check_budget(path, name, Counter((channels, h.height, h.width) for h in readable),
                      max_decoded_bytes)
        # The shape a row decodes to, from its header: the readers decode every image anyway
        # and name the row of a body that does not decode (decoding here too doubled the time).
        return [None if header is None else _shape_text((channels, header.height, header.width))
                for header in headers]
    if pa.types.is_struct(kind):
        return [None] * len(column)
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        try:
            shape = _image_shape_from_metadata(path, metadata)
        except ValueError:
            return [None] * len(column)
        _check_budget(path, name, {shape: len(column)}, max_decoded_bytes)
        width = int(np.prod(shape))
        # Lengths from Arrow, not a Python list of every pixel (60k MNIST rows: 4 s -> 0.01 s).
        lengths = pc.list_value_length(column).to_pylist()
        return [_shape_text(shape) if n == width else (None if n is None else f"flat{n}")
                for n in lengths]
    return [None] * len(column)


def validation_frame(
    path: PathLike,
    modality: str = "image",
    *,
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
    columns: Columns = DEFAULT_COLUMNS,
) -> Any:
    """A pandas frame of raw per-row facts for the dataset expectation suite.

    Columns, under the file's own names (``columns``): the label column (raw values), the id
    column when one is named, and ``<image>_shape`` (``"CxHxW"`` or ``None``; ``image_shape``
    for the default names) for images, or the text column for text. Columns missing from the
    file are left out (the suite reports them). Image shapes follow the readers' channel rule
    (one channel count for the whole column).

    Args:
        path: The dataset file.
        modality: ``"image"`` or ``"text"``.
        max_decoded_bytes: The memory budget of
            :func:`acgate.io.datasets.read_image_dataset`, checked from the image headers
            before any image is decoded. ``None``: no limit.
        columns: The file's names of the label, image, text and id columns.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not a regular, readable Parquet file, has duplicate
            column names, or its images exceed ``max_decoded_bytes``.
    """
    import pandas as pd

    budget = _checked_budget(max_decoded_bytes)
    parquet = open_parquet(path)
    names = parquet.schema_arrow.names
    roles = ("label", "id", modality)
    wanted = [getattr(columns, role) for role in roles
              if getattr(columns, role) is not None and getattr(columns, role) in names]
    try:
        table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path} is not a readable Parquet file: {error}") from error
    frame: dict[str, Any] = {}
    for role in ("label", "id"):
        name = getattr(columns, role)
        if name is not None and name in names:
            frame[name] = pd.Series(table.column(name).to_pylist(), dtype=object)
    if modality == "image" and columns.image in names:
        metadata = raw_metadata(parquet.schema_arrow)
        frame[shape_column(columns)] = _row_shapes(path, table.column(columns.image), metadata,
                                                   budget, columns.image)
    if modality == "text" and columns.text in names:
        frame[columns.text] = table.column(columns.text).to_pylist()
    return pd.DataFrame(frame)


def shape_column(columns: Columns = DEFAULT_COLUMNS) -> str:
    """The validation frame's column of image shapes: ``<image column>_shape``."""
    return f"{columns.image}_shape"
