"""Writers of every bad input of the reliability matrix (docs/reliability.md).

Each row of the matrix is a :class:`BadInput`. It can be materialised up to four ways, one per
kind of input an entry point takes:

* ``arrays()`` -> ``(activations, labels)`` for the library ``acgate.core.detect``;
* ``activations(folder)`` -> an activations Parquet file (``acgate detect``, KFP ``cluster``,
  KFP ``analyze``);
* ``dataset(folder)`` -> a dataset Parquet file (``acgate scan / poison / repair``, KFP
  ``train_proxy``, ``extract_activations``, ``repair``);
* ``model(folder)`` -> a model file that would run code when unpickled.

Every input is tiny (at most 60 rows of 8x8 digits, or 60 x 16 activations) and seeded.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_ROWS = 60
WIDTH = 16
#: A label far above the 0..9 of the rest ("out of the declared range": no acgate file declares
#: a class count, so the proxy's output layer would be sized max(label) + 1).
HUGE_LABEL = 2_000_000_000


# ----------------------------------------------------------------------------- valid bases


def base_labels(n_rows: int = N_ROWS) -> np.ndarray:
    """Three classes of ``n_rows / 3`` rows each."""
    return np.repeat(np.arange(3), n_rows // 3).astype(np.int64)


def base_activations(n_rows: int = N_ROWS) -> np.ndarray:
    """Seeded float32 activations, ``n_rows x WIDTH``."""
    return np.random.default_rng(0).normal(size=(n_rows, WIDTH)).astype(np.float32)


def digits_subset(n_rows: int = N_ROWS, labels: np.ndarray | None = None) -> Any:
    """The first ``n_rows`` scikit-learn digits as an :class:`ImageDataset` (labels optional)."""
    from acgate.io.loaders import load_digits_dataset

    digits = load_digits_dataset()
    from acgate.io.datasets import ImageDataset

    return ImageDataset(images=digits.images[:n_rows],
                        labels=digits.labels[:n_rows] if labels is None else labels,
                        name="digits-subset")


def write_digits(path: Path, n_rows: int = N_ROWS, labels: np.ndarray | None = None) -> Path:
    """A tiny digits dataset file (``dataset/1``, array-encoded images).

    Labels the library refuses (e.g. above ``MAX_LABEL``) are written raw into a valid file, so
    that a companion dataset can carry the same bad labels as the input under test.
    """
    from acgate.io.datasets import write_image_dataset

    valid = write_image_dataset(digits_subset(n_rows), path)
    if labels is None:
        return valid
    try:
        return write_image_dataset(digits_subset(n_rows, labels), path)
    except (ValueError, TypeError):
        return _with_labels_raw(valid, pa.array(np.asarray(labels)), path)


def write_activation_file(path: Path, activations: np.ndarray, labels: np.ndarray,
                          predictions: np.ndarray | None = None) -> Path:
    """A valid activations file (``activations/1``)."""
    from acgate.io.activations import ActivationTable, write_activations

    table = ActivationTable(indices=np.arange(len(labels)), labels=labels,
                            predictions=predictions, activations=activations)
    return write_activations(path, table)


# ----------------------------------------------------------------------------- raw writers


def _replace_column(path: Path, name: str, values: pa.Array, *, out: Path) -> Path:
    table = pq.read_table(path)
    index = table.schema.get_field_index(name)
    table = table.set_column(index, pa.field(name, values.type), values)
    pq.write_table(table, out)
    return out


def _with_labels_raw(valid: Path, values: pa.Array, out: Path) -> Path:
    return _replace_column(valid, "label", values, out=out)


def _truncate(valid: Path, out: Path) -> Path:
    data = valid.read_bytes()
    out.write_bytes(data[: len(data) * 2 // 3])
    return out


def _not_parquet(out: Path) -> Path:
    out.write_text("label,image\n1,0 0 0 0\n2,1 1 1 1\n", encoding="utf-8")
    return out


def _with_schema_tag(valid: Path, tag: str, out: Path) -> Path:
    table = pq.read_table(valid)
    metadata = dict(table.schema.metadata or {})
    metadata[b"acgate.schema"] = tag.encode()
    pq.write_table(table.replace_schema_metadata(metadata), out)
    return out


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _binary_image_dataset(out: Path, blobs: list[bytes], labels: list[int]) -> Path:
    pq.write_table(pa.table({"image": pa.array(blobs, pa.binary()),
                             "label": pa.array(labels, pa.int64())}), out)
    return out


def _digit_pngs(n_rows: int) -> list[bytes]:
    dataset = digits_subset(n_rows)
    return [_png(np.rint(image[0] * 255).astype(np.uint8)) for image in dataset.images]


class _WritesAMarker:
    """A pickle payload: unpickling it creates ``marker`` (proof that code ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.write_text, (Path(self.marker), "pwned"))


def write_malicious_model(path: Path, marker: Path) -> Path:
    """A ``.pt`` file that runs code (writes ``marker``) when unpickled by plain pickle."""
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": _WritesAMarker(marker)}, handle)
    return path


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class BadInput:
    """One row of the matrix.

    Attributes:
        name: Short id (test ids, the doc's anchor).
        title: What the input is, in words (the doc's first column).
        mentions: Regex (case-insensitive) the error message must match: the column / problem.
        arrays: ``() -> (activations, labels)`` for the library ``detect``, or ``None``.
        activations: ``(folder) -> path`` of a bad activations file, or ``None``.
        dataset: ``(folder) -> path`` of a bad dataset file, or ``None``.
        model: ``True`` for the malicious-model row (entry points taking a model file).
        gate: ``(folder) -> dict`` with the gate's arguments, or ``None``.
        lengths: ``True`` for the mismatched-lengths row (two inputs that disagree).
    """

    name: str
    title: str
    mentions: str
    arrays: Callable[[], tuple[Any, Any]] | None = None
    activations: Callable[[Path], Path] | None = None
    dataset: Callable[[Path], Path] | None = None
    model: bool = False
    gate: Callable[[Path], dict[str, Any]] | None = None
    lengths: bool = False


def _acts_with(labels: Any = None, activations: Any = None) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        return (base_activations() if activations is None else activations(),
                base_labels() if labels is None else labels())
    return make


# --- arrays


def _nan_arrays() -> np.ndarray:
    values = base_activations()
    values[5, 3] = np.nan
    values[9, 0] = np.inf
    return values


def _labels(kind: str) -> Callable[[], Any]:
    def make() -> Any:
        labels = base_labels()
        if kind == "negative":
            labels[7] = -1
            return labels
        if kind == "float":
            return labels.astype(np.float64) + np.where(np.arange(len(labels)) == 7, 0.5, 0.0)
        if kind == "string":
            return np.array([f"class-{v}" for v in labels])
        if kind == "huge":
            labels[7] = HUGE_LABEL
            return labels
        if kind == "one-class":
            return np.zeros(len(labels), dtype=np.int64)
        if kind == "singleton":
            labels[-1] = 3
            return labels
        raise ValueError(kind)
    return make


# --- activation files


def _acts_file(name: str, labels: Callable[[], Any] | None = None,
               activations: Callable[[], np.ndarray] | None = None,
               n_rows: int = N_ROWS) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        values = base_activations(n_rows) if activations is None else activations()
        label_values = base_labels(n_rows) if labels is None else labels()
        path = folder / f"{name}.activations.parquet"
        index = pa.array(np.arange(len(values)), pa.int64())
        label_array = pa.array(label_values)
        flat = pa.array(values.reshape(-1), pa.float32())
        acts = pa.FixedSizeListArray.from_arrays(flat, values.shape[1] if values.ndim == 2 else 1)
        pq.write_table(pa.table({"index": index, "label": label_array,
                                 "prediction": pa.nulls(len(values), pa.int64()),
                                 "activation": acts}), path)
        return path
    return make


def _empty_acts_file(folder: Path) -> Path:
    path = folder / "empty.activations.parquet"
    return write_activation_file(path, np.zeros((0, WIDTH), np.float32), np.zeros(0, np.int64))


def _valid_acts(folder: Path) -> Path:
    return write_activation_file(folder / "valid.activations.parquet", base_activations(),
                                 base_labels())


def _ragged_acts(folder: Path) -> Path:
    rows = [list(map(float, row)) for row in base_activations()]
    rows[4] = rows[4][:-3]
    path = folder / "ragged.activations.parquet"
    pq.write_table(pa.table({"index": pa.array(np.arange(N_ROWS), pa.int64()),
                             "label": pa.array(base_labels()),
                             "activation": pa.array(rows, pa.list_(pa.float32()))}), path)
    return path


def _wrong_width_acts(folder: Path) -> Path:
    valid = _valid_acts(folder)
    table = pq.read_table(valid)
    metadata = dict(table.schema.metadata or {})
    metadata[b"acgate.activation_width"] = str(WIDTH * 2).encode()
    path = folder / "wrong-width.activations.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


def _truncated_acts(folder: Path) -> Path:
    return _truncate(_valid_acts(folder), folder / "truncated.activations.parquet")


def _not_parquet_acts(folder: Path) -> Path:
    return _not_parquet(folder / "notes.activations.parquet")


def _missing_column_acts(folder: Path) -> Path:
    table = pq.read_table(_valid_acts(folder)).drop(["activation"])
    path = folder / "no-activation.activations.parquet"
    pq.write_table(table, path)
    return path


def _newer_acts(folder: Path) -> Path:
    return _with_schema_tag(_valid_acts(folder), "activations/99",
                            folder / "newer.activations.parquet")


# --- dataset files


def _valid_dataset(folder: Path) -> Path:
    return write_digits(folder / "valid.dataset.parquet")


def _labels_dataset(name: str, values: Callable[[np.ndarray], pa.Array]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        valid = _valid_dataset(folder)
        labels = pq.read_table(valid).column("label").to_numpy()
        return _with_labels_raw(valid, values(labels.copy()), folder / f"{name}.dataset.parquet")
    return make


def _set(labels: np.ndarray, row: int, value: int) -> np.ndarray:
    labels[row] = value
    return labels


def _empty_dataset(folder: Path) -> Path:
    table = pq.read_table(_valid_dataset(folder)).slice(0, 0)
    path = folder / "empty.dataset.parquet"
    pq.write_table(table, path)
    return path


def _singleton_dataset(folder: Path) -> Path:
    labels = digits_subset().labels.copy()
    labels[-1] = 10  # class 10: one sample
    return write_digits(folder / "singleton.dataset.parquet", labels=labels)


def _one_class_dataset(folder: Path) -> Path:
    return write_digits(folder / "one-class.dataset.parquet",
                        labels=np.zeros(N_ROWS, np.int64))


def _truncated_dataset(folder: Path) -> Path:
    return _truncate(_valid_dataset(folder), folder / "truncated.dataset.parquet")


def _not_parquet_dataset(folder: Path) -> Path:
    return _not_parquet(folder / "notes.dataset.parquet")


def _missing_column_dataset(folder: Path) -> Path:
    table = pq.read_table(_valid_dataset(folder)).drop(["image"])
    path = folder / "no-image.dataset.parquet"
    pq.write_table(table, path)
    return path


def _newer_dataset(folder: Path) -> Path:
    return _with_schema_tag(_valid_dataset(folder), "dataset/99", folder / "newer.dataset.parquet")


def _undecodable_dataset(folder: Path) -> Path:
    blobs = _digit_pngs(N_ROWS)
    blobs[6] = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4
    return _binary_image_dataset(folder / "undecodable.dataset.parquet", blobs,
                                 digits_subset().labels.tolist())


def _mixed_shapes_dataset(folder: Path) -> Path:
    blobs = _digit_pngs(N_ROWS)
    blobs[8] = _png(np.zeros((9, 9), np.uint8))
    return _binary_image_dataset(folder / "mixed-shapes.dataset.parquet", blobs,
                                 digits_subset().labels.tolist())


def _bomb_dataset(folder: Path) -> Path:
    blobs = _digit_pngs(N_ROWS)
    blobs[2] = _png(np.zeros((6000, 6000), np.uint8))  # 36 Mpx, ~35 kB of PNG
    return _binary_image_dataset(folder / "bomb.dataset.parquet", blobs,
                                 digits_subset().labels.tolist())


def _text_dataset(name: str, texts: list[Any], kind: pa.DataType) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        labels = [i % 2 for i in range(len(texts))]
        path = folder / f"{name}.dataset.parquet"
        pq.write_table(pa.table({"text": pa.array(texts, kind),
                                 "label": pa.array(labels, pa.int64())}), path)
        return path
    return make


_GOOD_TEXTS = [f"review number {i} was fine" for i in range(20)]
_NON_UTF8 = [t.encode() for t in _GOOD_TEXTS]
_NON_UTF8[3] = b"caf\xe9 \xff\xfe broken"
_EMPTY_TEXT = list(_GOOD_TEXTS)
_EMPTY_TEXT[5] = ""


# --- gate


_STORE_CACHE: dict[str, tuple[Path, str]] = {}


def _gate_unknown_run(folder: Path) -> dict[str, Any]:
    """A real SQLite store with model ``m`` version 1 (made once, copied: MLflow's schema
    migration takes seconds)."""
    import shutil
    import tempfile

    from acgate.mlflow.tracking import default_tracking_uri

    if "store" not in _STORE_CACHE:
        base = Path(tempfile.mkdtemp(prefix="acgate-rel-store-"))
        _STORE_CACHE["store"] = _make_registry(base)
    source, version = _STORE_CACHE["store"]
    shutil.copytree(source, folder / "mlflow")
    return {"tracking_uri": default_tracking_uri(folder / "mlflow"),
            "run_id": "0123456789abcdef0123456789abcdef", "model_name": "m",
            "model_version": version}


def _make_registry(base: Path) -> tuple[Path, str]:
    from acgate.mlflow.tracking import default_tracking_uri, make_client

    uri = default_tracking_uri(base / "mlflow")
    client = make_client(uri)
    experiment_id = client.create_experiment("models")
    run = client.create_run(experiment_id, run_name="train")
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id, "FINISHED")
    client.create_registered_model("m")
    version = client.create_model_version("m", source=f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    return base / "mlflow", str(version.version)


def _gate_missing_store(folder: Path) -> dict[str, Any]:
    return {"tracking_uri": f"sqlite:///{folder / 'no-such-store' / 'mlflow.db'}",
            "run_id": "0123456789abcdef0123456789abcdef", "model_name": "m",
            "model_version": "1"}


ROWS: tuple[BadInput, ...] = (
    BadInput("nan", "NaN / inf activations", r"nan|inf",
             arrays=_acts_with(activations=_nan_arrays),
             activations=_acts_file("nan", activations=_nan_arrays)),
    BadInput("empty", "empty dataset (0 rows)", r"empty|no rows|0 rows",
             arrays=_acts_with(labels=lambda: np.zeros(0, np.int64),
                               activations=lambda: np.zeros((0, WIDTH), np.float32)),
             activations=_empty_acts_file, dataset=_empty_dataset),
    BadInput("one-class", "one class only", r"class",
             arrays=_acts_with(labels=_labels("one-class")),
             activations=_acts_file("one-class", labels=_labels("one-class")),
             dataset=_one_class_dataset),
    BadInput("singleton", "a class with 1 sample", r"class|sample",
             arrays=_acts_with(labels=_labels("singleton")),
             activations=_acts_file("singleton", labels=_labels("singleton")),
             dataset=_singleton_dataset),
    BadInput("label-negative", "negative label", r"label.*negative|negative.*label",
             arrays=_acts_with(labels=_labels("negative")),
             activations=_acts_file("label-negative", labels=_labels("negative")),
             dataset=_labels_dataset("label-negative",
                                     lambda y: pa.array(_set(y, 7, -1), pa.int64()))),
    BadInput("label-float", "float label (1.5)", r"label",
             arrays=_acts_with(labels=_labels("float")),
             activations=_acts_file("label-float", labels=_labels("float")),
             dataset=_labels_dataset("label-float", lambda y: pa.array(
                 y.astype(np.float64) + np.where(np.arange(len(y)) == 7, 0.5, 0.0)))),
    BadInput("label-string", "string label", r"label",
             arrays=_acts_with(labels=_labels("string")),
             activations=_acts_file("label-string", labels=_labels("string")),
             dataset=_labels_dataset("label-string",
                                     lambda y: pa.array([f"class-{v}" for v in y]))),
    BadInput("label-huge", f"label out of range ({HUGE_LABEL:,}, others 0-9)", r"label|class",
             arrays=_acts_with(labels=_labels("huge")),
             activations=_acts_file("label-huge", labels=_labels("huge")),
             dataset=_labels_dataset("label-huge",
                                     lambda y: pa.array(_set(y, 7, HUGE_LABEL), pa.int64()))),
    BadInput("lengths", "mismatched lengths (labels / rows of two inputs)",
             r"length|rows|\(\d+,\)|shape",
             arrays=_acts_with(labels=lambda: base_labels()[:-5]), lengths=True),
    BadInput("ragged", "ragged activations (one row 3 values short)", r"ragged|activation",
             arrays=lambda: ([list(r) for r in base_activations()[:-1]]
                             + [list(base_activations()[-1][:-3])], base_labels()),
             activations=_ragged_acts),
    BadInput("wrong-width", "wrong-width activations (1-D; width metadata 32 vs 16)",
             r"width|2-D|shape|activation",
             arrays=_acts_with(activations=lambda: base_activations()[:, 0]),
             activations=_wrong_width_acts),
    BadInput("truncated", "truncated Parquet file (first 2/3 of the bytes)",
             r"not a readable parquet|parquet",
             activations=_truncated_acts, dataset=_truncated_dataset),
    BadInput("not-parquet", "a file that is not Parquet (CSV text)",
             r"not a readable parquet|parquet",
             activations=_not_parquet_acts, dataset=_not_parquet_dataset),
    BadInput("missing-column", "missing column (no 'activation' / no 'image')",
             r"column '(activation|image)'|'(activation|image)'",
             activations=_missing_column_acts, dataset=_missing_column_dataset),
    BadInput("newer-schema", "newer schema version (acgate.schema = <kind>/99)",
             r"/99|newer|schema",
             activations=_newer_acts, dataset=_newer_dataset),
    BadInput("undecodable", "image bytes that do not decode (row 6)", r"decode",
             dataset=_undecodable_dataset),
    BadInput("mixed-shapes", "images of mixed shapes (row 8 is 9x9)", r"shape",
             dataset=_mixed_shapes_dataset),
    BadInput("bomb", "enormous image (6000x6000 PNG, decompression bomb)",
             r"bomb|exceeds|pixels", dataset=_bomb_dataset),
    BadInput("non-utf8", "non-UTF-8 text (binary 'text' column)", r"text|utf",
             dataset=_text_dataset("non-utf8", _NON_UTF8, pa.binary())),
    BadInput("empty-text", "empty text (row 5)", r"text|empty",
             dataset=_text_dataset("empty-text", _EMPTY_TEXT, pa.string())),
    BadInput("malicious-model", "model file that executes code when unpickled",
             r"refusing|weights-only|unpickl", model=True),
    BadInput("gate-unknown-run", "gate: scan run id unknown to the store", r"not found|run",
             gate=_gate_unknown_run),
    BadInput("gate-missing-store", "gate: tracking store does not exist",
             r"does not exist|store", gate=_gate_missing_store),
)

ROWS_BY_NAME = {row.name: row for row in ROWS}
