"""Per-row views of a raw dataset file for Great Expectations (before strict decoding).

The strict readers in :mod:`acgate.io.datasets` stop at the first bad row. The expectation
suites want to see every row: the raw ``label`` values (nulls, floats and strings included) and
each image's decoded shape (``None`` when it does not decode), so that a failed expectation can
name what is wrong across the whole file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from acgate.io.datasets import _decode_image, _image_shape_from_metadata
from acgate.io.schema import open_parquet, raw_metadata

PathLike = str | os.PathLike[str]
_MAX_PIXELS = 4096 * 4096


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def first_decode_error(path: PathLike, column: str = "image") -> str | None:
    """The decoder's message for the first image of ``column`` that does not decode, or None."""
    parquet = open_parquet(path)
    if column not in parquet.schema_arrow.names:
        return None
    values = parquet.read(columns=[column]).column(column)
    kind = values.type
    if pa.types.is_struct(kind):
        if kind.get_field_index("bytes") < 0:
            return None
        blobs = values.combine_chunks().field("bytes").to_pylist()
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        blobs = values.to_pylist()
    else:
        return None
    for row, blob in enumerate(blobs):
        if blob is None:
            return f"{path}: column {column!r} row {row} has no image bytes (null)"
        try:
            _decode_image(blob, path, column, row, _MAX_PIXELS)
        except (ValueError, TypeError) as error:
            return str(error)
    return None


def _row_shapes(path: PathLike, column: pa.ChunkedArray, metadata: dict[str, str]) -> list[Any]:
    kind = column.type
    if pa.types.is_struct(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        if pa.types.is_struct(kind):
            if kind.get_field_index("bytes") < 0:
                return [None] * len(column)
            blobs = column.combine_chunks().field("bytes").to_pylist()
        else:
            blobs = column.to_pylist()
        shapes: list[Any] = []
        for row, blob in enumerate(blobs):
            try:
                shapes.append(_shape_text(_decode_image(blob, path, "image", row,
                                                        _MAX_PIXELS).shape))
            except (ValueError, TypeError):
                shapes.append(None)
        return shapes
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        try:
            shape = _image_shape_from_metadata(path, metadata)
        except ValueError:
            return [None] * len(column)
        width = int(np.prod(shape))
        lengths = [None if v is None else len(v) for v in column.to_pylist()]
        return [_shape_text(shape) if n == width else (None if n is None else f"flat{n}")
                for n in lengths]
    return [None] * len(column)


def validation_frame(path: PathLike, modality: str = "image") -> Any:
    """A pandas frame of raw per-row facts for the dataset expectation suite.

    Columns: ``label`` (raw values) and ``image_shape`` (``"CxHxW"`` or ``None``) for images, or
    ``text`` for text. Columns missing from the file are left out (the suite reports them).

    Raises:
        ValueError: When the file is not a readable Parquet file.
    """
    import pandas as pd

    parquet = open_parquet(path)
    names = parquet.schema_arrow.names
    wanted = [c for c in ("label", "image", "text") if c in names]
    table = parquet.read(columns=wanted)
    frame: dict[str, Any] = {}
    if "label" in names:
        frame["label"] = pd.Series(table.column("label").to_pylist(), dtype=object)
    if modality == "image" and "image" in names:
        metadata = raw_metadata(parquet.schema_arrow)
        frame["image_shape"] = _row_shapes(path, table.column("image"), metadata)
    if modality == "text" and "text" in names:
        frame["text"] = table.column("text").to_pylist()
    return pd.DataFrame(frame)
