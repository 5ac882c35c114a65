"""Activation datasets: activations extracted in row shards, stored partitioned by class.

The pipeline extracts activations in parallel over row shards of the dataset (one pod each)
and clusters each class in its own pod. Every shard writes its rows as one ``activations/1``
Parquet part per segment (class, or prediction with ``segment_by="prediction"``); one step then
collects the parts into one folder, an *activation dataset*::

    activations/
        dataset.json                   the manifest (below)
        segment=3/shard-00001.parquet  the rows of shard 1 whose segment is 3
        ...

so a ``cluster`` task reads only its class's parts (:func:`read_activation_dataset` with
``segment``) and ``analyze`` reads them all, ordered by row as one file would be. Shards are
contiguous row ranges whose bounds are multiples of the extraction batch
(:func:`shard_bounds`), so every forward pass sees the same rows as one unsharded pass: the
activations, and therefore the flags, do not depend on the number of shards.

Manifest (``dataset.json``): ``format`` (:data:`FORMAT`), ``segment_by``, ``n_rows`` (the rows
the folder covers), ``rows`` ([first, stop) of a shard's folder; the whole dataset after the
collection), ``shards`` (the shard numbers inside), ``segments`` ({segment: rows}), ``labels``
(the label classes present), ``complete`` (whether the folder covers every row of the
dataset: a collected dataset, or the only shard).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acgate.io.activations import (
    ActivationTable,
    RowColumns,
    read_activations,
    read_row_columns,
    write_activations,
)
from acgate.io.atomic import atomic_directory

__all__ = [
    "EXTRACT_BATCH_ROWS",
    "FORMAT",
    "MANIFEST",
    "check_activation_destination",
    "collect_activation_shards",
    "is_activation_dataset",
    "read_activation_dataset",
    "read_dataset_row_columns",
    "read_manifest",
    "segment_parts",
    "shard_bounds",
    "write_activation_shard",
]

PathLike = str | os.PathLike[str]

#: The manifest's ``format``.
FORMAT = "acgate-activation-dataset/1"
#: The manifest's file name inside an activation dataset folder.
MANIFEST = "dataset.json"
#: Rows per forward pass of the extraction (``acgate.torch.extract``'s default batch), and what
#: a shard's bounds are multiples of: every shard sees the batches of one unsharded pass.
EXTRACT_BATCH_ROWS = 256


def shard_bounds(n_rows: int, n_shards: int,
                 align: int = EXTRACT_BATCH_ROWS) -> list[tuple[int, int]]:
    """The row ranges ``[first, stop)`` of at most ``n_shards`` contiguous, non-empty shards.

    Every shard but the last holds the same number of rows, a multiple of ``align``; a small
    dataset therefore gets fewer shards than asked for (never an empty one).

    Raises:
        ValueError: ``n_rows`` below 1, or ``n_shards`` / ``align`` not a positive integer.
    """
    for name, value, least in (("n_rows", n_rows, 1), ("n_shards", n_shards, 1),
                               ("align", align, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    per_shard = -(-n_rows // n_shards)
    per_shard = -(-per_shard // align) * align
    return [(first, min(n_rows, first + per_shard)) for first in range(0, n_rows, per_shard)]


def is_activation_dataset(path: PathLike) -> bool:
    """Whether ``path`` is an activation dataset folder (it holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: PathLike) -> dict[str, Any]:
    """An activation dataset's manifest, checked.

    Raises:
        ValueError: No manifest, not JSON, another format, or missing entries (naming the file).
    """
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is not an activation dataset: it has no {MANIFEST}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{file} is not readable JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise ValueError(f"{file}: format {found!r} is not {FORMAT!r}")
    missing = [key for key in ("segment_by", "n_rows", "rows", "shards", "segments", "labels",
                               "complete") if key not in manifest]
    if missing:
        raise ValueError(f"{file} lacks {', '.join(map(repr, missing))}")
    kinds = {"segment_by": str, "n_rows": int, "rows": list, "shards": list, "segments": dict,
             "labels": list, "complete": bool}
    for key, kind in kinds.items():
        if not isinstance(manifest[key], kind) or (kind is int and
                                                   isinstance(manifest[key], bool)):
            raise ValueError(f"{file}: {key!r} must be a {kind.__name__}, got "
                             f"{manifest[key]!r}")
    return manifest


def _segment_folder(segment: int) -> str:
    return f"segment={int(segment)}"


def _part_name(shard: int) -> str:
    return f"shard-{int(shard):05d}.parquet"


def check_activation_destination(out_dir: PathLike) -> None:
    """Refuse a destination that holds anything but an activation dataset acgate wrote.

    Writing replaces the folder, so an existing one must be empty, or hold a valid manifest and
    only its parts: never a folder of the user's that happens to have a ``dataset.json``.

    Raises:
        ValueError: ``out_dir`` is a file, or a folder with anything else in it.
    """
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    refused = ValueError(f"{out_dir} exists and is not an activation dataset acgate wrote; "
                         "give a new folder (acgate does not replace what it did not write)")
    if not out_dir.is_dir():
        raise refused
    entries = list(out_dir.iterdir())
    if not entries:
        return
    try:
        read_manifest(out_dir)
    except ValueError:
        raise refused from None
    for entry in entries:
        if entry.name == MANIFEST:
            continue
        if not (entry.is_dir() and entry.name.startswith("segment=") and all(
                part.is_file() and part.name.startswith("shard-")
                and part.suffix == ".parquet" for part in entry.iterdir())):
            raise refused


def write_activation_shard(table: ActivationTable, out_dir: PathLike, *, shard: int,
                           rows: tuple[int, int], n_dataset_rows: int,
                           segment_by: str = "label") -> dict[str, Any]:
    """Write one shard's activations as an activation dataset folder, one part per segment.

    Args:
        table: The shard's activations, its ``indices`` the dataset rows ``rows``.
        out_dir: The folder to write (atomically; a new one, or an activation dataset).
        shard: The shard's number.
        rows: The shard's row range ``[first, stop)``.
        n_dataset_rows: The dataset's row count (the shard is ``complete`` when it has them all).
        segment_by: ``"label"`` or ``"prediction"``: what the parts are split by.

    Returns:
        The manifest written.

    Raises:
        ValueError: The table does not hold exactly the rows of ``rows``, predictions missing
            for ``segment_by="prediction"``, or ``out_dir`` holds something else.
    """
    out_dir = Path(out_dir)
    first, stop = int(rows[0]), int(rows[1])
    if not np.array_equal(table.indices, np.arange(first, stop)):
        raise ValueError(f"shard {shard}'s activations do not hold exactly rows "
                         f"{first}..{stop - 1}")
    segments = _segments(table, segment_by)
    check_activation_destination(out_dir)
    counts: dict[str, int] = {}
    with atomic_directory(out_dir) as temp:
        for segment in np.unique(segments):
            mask = segments == segment
            part = ActivationTable(
                indices=table.indices[mask], labels=table.labels[mask],
                predictions=None if table.predictions is None else table.predictions[mask],
                activations=table.activations[mask], metadata=table.metadata)
            write_activations(temp / _segment_folder(segment) / _part_name(shard), part)
            counts[str(int(segment))] = int(mask.sum())
        manifest = {"format": FORMAT, "segment_by": segment_by, "n_rows": stop - first,
                    "rows": [first, stop], "shards": [int(shard)], "segments": counts,
                    "labels": [int(c) for c in np.unique(table.labels)],
                    "complete": first == 0 and stop == n_dataset_rows}
        _write_manifest(temp, manifest)
    return manifest


def _segments(table: ActivationTable, segment_by: str) -> np.ndarray:
    if segment_by == "label":
        return table.labels
    if segment_by != "prediction":
        raise ValueError(f"segment_by must be 'label' or 'prediction', got {segment_by!r}")
    if table.predictions is None:
        raise ValueError("segment_by='prediction' needs predictions; the model gave none")
    return table.predictions


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")


def collect_activation_shards(shard_dirs: Sequence[PathLike], out_dir: PathLike, *,
                              n_rows: int) -> dict[str, Any]:
    """Gather the shards' folders into one activation dataset covering rows ``0..n_rows-1``.

    Reads only the manifests, the parts' schemas and their ``index`` columns: every dataset row
    must be in exactly one shard, every shard split by the same segment and extracted alike.

    Args:
        shard_dirs: The shards' folders (from :func:`write_activation_shard`), in any order.
        out_dir: The folder to write (atomically; a new one, or an activation dataset).
        n_rows: The dataset's row count.

    Returns:
        The collected manifest.

    Raises:
        ValueError: A folder that is not a shard, two shards with one number, shards split by
            different segments or extracted differently, rows missing, repeated or beyond
            ``n_rows`` (naming them).
    """
    out_dir = Path(out_dir)
    manifests = sorted(((read_manifest(path), Path(path)) for path in shard_dirs),
                       key=lambda item: item[0]["rows"][0])
    if not manifests:
        raise ValueError("no activation shards to collect")
    segment_by = {manifest["segment_by"] for manifest, _ in manifests}
    if len(segment_by) != 1:
        raise ValueError(f"the shards are split by different segments: {sorted(segment_by)}")
    shards: list[int] = []
    counts: dict[str, int] = {}
    for manifest, path in manifests:
        repeated = sorted(set(shards) & set(manifest["shards"]))
        if repeated:
            raise ValueError(f"shard {repeated[0]} appears twice (again in {path})")
        shards.extend(manifest["shards"])
        for segment, rows in manifest["segments"].items():
            counts[segment] = counts.get(segment, 0) + int(rows)
    parts = [part for _, path in manifests for part in _parts(path)]
    _check_coverage(parts, n_rows)
    check_activation_destination(out_dir)
    with atomic_directory(out_dir) as temp:
        for part in parts:
            target = temp / part.parent.name / part.name
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(part, target)
        manifest = {"format": FORMAT, "segment_by": segment_by.pop(), "n_rows": int(n_rows),
                    "rows": [0, int(n_rows)], "shards": sorted(shards),
                    "segments": dict(sorted(counts.items(), key=lambda item: int(item[0]))),
                    "labels": sorted({int(c) for m, _ in manifests for c in m["labels"]}),
                    "complete": True}
        _write_manifest(temp, manifest)
    return manifest


def _check_coverage(parts: Sequence[Path], n_rows: int) -> None:
    """Every row ``0..n_rows-1`` in exactly one part, every part extracted alike."""
    import pyarrow.parquet as pq

    seen = np.zeros(n_rows, dtype=bool)  # one byte a row
    schema: tuple[Any, Path] | None = None
    for part in parts:
        schema = _same_schema(part, schema)
        index = pq.read_table(part, columns=["index"]).column("index").to_numpy()
        outside = index[(index < 0) | (index >= n_rows)]
        if len(outside):
            raise ValueError(f"{part}: row {int(outside[0])} is not one of the dataset's "
                             f"{n_rows} rows")
        if seen[index].any() or len(np.unique(index)) != len(index):
            twice = index[seen[index]] if seen[index].any() else index
            raise ValueError(f"the activation shards do not cover the {n_rows} dataset rows: "
                             f"row {int(twice[0])} is in two parts (again in {part})")
        seen[index] = True
    missing = np.flatnonzero(~seen)
    if len(missing):
        raise ValueError(f"the activation shards do not cover the {n_rows} dataset rows: "
                         f"{len(missing)} row(s) in no shard (first: {int(missing[0])})")


def _same_schema(part: Path, first: tuple[Any, Path] | None) -> tuple[Any, Path]:
    """Every part has the first part's columns and metadata (width, modality, proxy, layer)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(part)
    if first is not None and not schema.equals(first[0], check_metadata=True):
        raise ValueError(f"{part} differs from {first[1]} in its columns or metadata (activation "
                         "width, modality, proxy or layer): the shards were not extracted alike")
    return first or (schema, part)


def segment_parts(path: PathLike, segment: int) -> list[Path]:
    """The part files of one segment of an activation dataset, in row order (shard order).

    Raises:
        ValueError: Not an activation dataset, or a segment it does not have.
    """
    return _segment_files(path, read_manifest(path), segment)


def _segment_files(path: PathLike, manifest: Mapping[str, Any], segment: int) -> list[Path]:
    """:func:`segment_parts` with the manifest already read."""
    if str(int(segment)) not in manifest["segments"]:
        raise ValueError(f"{path}: no row has {manifest['segment_by']} {int(segment)} "
                         f"(present: {sorted(int(s) for s in manifest['segments'])})")
    return _parts(Path(path), segment)


def _parts(folder: Path, segment: int | None = None) -> list[Path]:
    """The part files of a folder (of one segment), in shard order."""
    pattern = f"{_segment_folder(segment)}/shard-*.parquet" if segment is not None else \
        "segment=*/shard-*.parquet"
    return sorted(Path(folder).glob(pattern), key=lambda part: (part.name, part.parent.name))


def read_activation_dataset(path: PathLike, segment: int | None = None) -> ActivationTable:
    """Read an activation dataset (or one segment of it) as one table, ordered by row.

    Reading the whole folder gives what one activations file of the same rows would: the rows
    ``0..n_rows-1`` in order (a collected dataset must cover them exactly). Reading one
    segment gives that segment's rows in row order. The peak is the result plus one part.

    Raises:
        ValueError: Not an activation dataset, a segment it does not have, parts that disagree
            with the manifest or each other (width, predictions), or any error of
            :func:`acgate.io.activations.read_activations` (naming the part).
    """
    manifest = read_manifest(path)
    files = (_parts(Path(path)) if segment is None
             else _segment_files(path, manifest, segment))
    activations: np.ndarray | None = None

    def place(file: Path, part: Any, where: np.ndarray, n_rows: int) -> None:
        nonlocal activations
        if activations is None:
            activations = np.empty((n_rows, part.width), dtype=np.float32)
        elif part.width != activations.shape[1]:
            raise ValueError(f"{file}: activation width {part.width}, the other parts "
                             f"{activations.shape[1]}")
        activations[where] = part.activations

    rows = _gather(path, files, manifest, segment, read_activations, place)
    return ActivationTable(indices=rows.indices, labels=rows.labels,
                           predictions=rows.predictions, activations=activations,
                           metadata=rows.metadata)


def read_dataset_row_columns(path: PathLike) -> RowColumns:
    """A collected activation dataset's ids, labels and predictions, ordered by row.

    What :func:`read_activation_dataset` gives without the activations (~24 bytes a row): a
    class-by-class analysis holds these for every row and reads one class's activations at a
    time.

    Raises:
        ValueError: As :func:`read_activation_dataset`.
    """
    manifest = read_manifest(path)
    first: tuple[Any, Path] | None = None

    def read_part(file: Path) -> RowColumns:
        nonlocal first
        first = _same_schema(file, first)  # one activation width, proxy and layer
        return read_row_columns(file)

    return _gather(path, _parts(Path(path)), manifest, None, read_part)


def _gather(path: PathLike, files: Sequence[Path], manifest: Mapping[str, Any],
            segment: int | None, read_part: Callable[[Path], Any],
            place: Callable[[Path, Any, np.ndarray, int], None] | None = None) -> RowColumns:
    """The parts' ids, labels and predictions put in row order, each part read once.

    ``read_part`` reads a part (its ``indices``, ``labels``, ``predictions`` and
    ``metadata``); ``place(file, part, where, n_rows)`` puts what else it holds at the rows
    ``where`` of the ``n_rows`` gathered.
    """
    indices, order = _row_order(path, files, manifest, segment)
    positions = np.empty(len(indices), dtype=np.int64)
    positions[order] = np.arange(len(indices))
    labels = np.empty(len(indices), dtype=np.int64)
    predictions: np.ndarray | None = None
    metadata: Any = None
    filled = 0
    for file in files:  # each part straight into place
        part = read_part(file)
        stop = filled + len(part.indices)
        if not np.array_equal(part.indices, indices[filled:stop]):
            raise ValueError(f"{file} changed while it was read")
        where = positions[filled:stop]
        if place is not None:
            place(file, part, where, len(indices))
        if metadata is None:
            metadata = part.metadata
            if part.predictions is not None:
                predictions = np.empty(len(indices), dtype=np.int64)
        if (part.predictions is None) != (predictions is None):
            raise ValueError(f"{path}: some parts have predictions and others do not")
        labels[where] = part.labels
        if predictions is not None:
            predictions[where] = part.predictions
        filled = stop
    return RowColumns(indices=indices[order], labels=labels, predictions=predictions,
                      metadata=metadata or {})


def _row_order(path: PathLike, files: Sequence[Path], manifest: Mapping[str, Any],
               segment: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The parts' rows (their ``index`` columns, in file order) and the order that sorts them."""
    import pyarrow.parquet as pq

    part_rows = [pq.read_table(file, columns=["index"]).column("index").to_numpy()
                 for file in files]
    indices = np.concatenate(part_rows) if part_rows else np.empty(0, dtype=np.int64)
    expected = (manifest["segments"][str(int(segment))] if segment is not None
                else manifest["n_rows"])
    if len(indices) != expected or not files:
        raise ValueError(f"{path}: the parts hold {len(indices)} rows, the manifest {expected}")
    order = np.argsort(indices, kind="stable")
    if segment is None:
        first = int(manifest["rows"][0])
        if not np.array_equal(indices[order], np.arange(first, first + len(indices))):
            raise ValueError(f"{path}: the parts do not cover rows {first}.."
                             f"{first + len(indices) - 1} exactly once")
    return indices, order
