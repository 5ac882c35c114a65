"""Writers of every bad input of the reliability matrix (docs/reliability.md).

Each row of the matrix is a :class:`BadInput`. It can be materialised up to four ways, one per
kind of input an entry point takes:

* ``arrays()`` -> ``(activations, labels)`` for the library ``acgate.core.detect``;
* ``activations(folder)`` -> an activations Parquet file (``acgate detect``, KFP ``cluster``,
  KFP ``analyze``);
* ``dataset(folder)`` -> a dataset Parquet file (``acgate scan / poison / repair``, KFP
  ``train_proxy``, ``extract_activations``, ``repair``);
* ``model(folder)`` -> a model file that would run code when unpickled;
* ``model_module(folder)`` -> a ``--model-module`` spec (``package.module:Name``) that must be
  refused (``acgate scan --model``, ``acgate.torch.load_model``);
* ``gate(folder)`` -> the gate's arguments over a real SQLite store (or a closed port).

What a row expects is in the row: the CLI exit code (:attr:`BadInput.cli_exit`, 2 unless said)
and the exceptions of the library and KFP entry points (:attr:`BadInput.raises`).

Every input is tiny (at most 60 rows of 8x8 digits, or 60 x 16 activations) and seeded.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import pickle
import shutil
import socket
import tempfile
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


#: What the library and Kubeflow entry points must raise on bad input.
#: (A row's ``mentions`` must not match its own file name: the message has to say the problem.)
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError)


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
        model_module: ``(folder) -> spec`` of a ``--model-module`` that must be refused (the
            folder is put on ``sys.path`` while the cell runs), or ``None``.
        gate: ``(folder) -> dict`` with the gate's arguments, or ``None``.
        lengths: ``True`` for the mismatched-lengths row (two inputs that disagree).
        cli_exit: The exit code every ``acgate`` command must give (2: bad input).
        raises: What the library and Kubeflow entry points must raise (a subclass of one).
        not_for: Entry points that take this kind of input but cannot judge this row (n/a).
        may_hang: Run the cell under a deadline (a regression must fail, not hang).
    """

    name: str
    title: str
    mentions: str
    arrays: Callable[[], tuple[Any, Any]] | None = None
    activations: Callable[[Path], Path] | None = None
    dataset: Callable[[Path], Path] | None = None
    model: bool = False
    model_module: Callable[[Path], str] | None = None
    gate: Callable[[Path], dict[str, Any]] | None = None
    lengths: bool = False
    cli_exit: int = 2
    raises: tuple[type[BaseException], ...] = INPUT_ERRORS
    not_for: tuple[str, ...] = ()
    may_hang: bool = False


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


def _fifo(path: Path) -> Path:
    """A named pipe where the file should be: opening it for reading blocks until a writer
    comes, so a reader that opens it hangs (the cell runs under a deadline, see ``may_hang``)."""
    os.mkfifo(path)
    return path


def _fifo_dataset(folder: Path) -> Path:
    return _fifo(folder / "fifo.dataset.parquet")


def _fifo_acts(folder: Path) -> Path:
    return _fifo(folder / "fifo.activations.parquet")


def _with_copy_of(valid: Path, column: str, out: Path) -> Path:
    """``valid`` with a second column named ``column`` (a copy of the first)."""
    table = pq.read_table(valid)
    names = [*table.column_names, column]
    copy = pa.Table.from_arrays([*table.columns, table.column(column)], names=names)
    pq.write_table(copy.replace_schema_metadata(table.schema.metadata), out)
    return out


def _duplicate_label_dataset(folder: Path) -> Path:
    return _with_copy_of(_valid_dataset(folder), "label",
                         folder / "duplicate-label.dataset.parquet")


def _duplicate_label_acts(folder: Path) -> Path:
    return _with_copy_of(_valid_acts(folder), "label",
                         folder / "duplicate-label.activations.parquet")


def _duplicate_image_dataset(folder: Path) -> Path:
    return _with_copy_of(_valid_dataset(folder), "image",
                         folder / "duplicate-image.dataset.parquet")


#: Side of the budget row's images: 4096 x 4096 = 16,777,216 pixels, exactly the per-image
#: decompression-bomb limit, so every image passes it; six of them are over the dataset budget.
BUDGET_SIDE = 4096
_BLACK_PNG: dict[int, bytes] = {}


def _decoded_budget_dataset(folder: Path) -> Path:
    if BUDGET_SIDE not in _BLACK_PNG:  # ~0.5 s to encode, ~50 kB of PNG
        _BLACK_PNG[BUDGET_SIDE] = _png(np.zeros((BUDGET_SIDE, BUDGET_SIDE, 3), np.uint8))
    blob = _BLACK_PNG[BUDGET_SIDE]
    return _binary_image_dataset(folder / "decoded-budget.dataset.parquet", [blob] * 6,
                                 [0, 0, 1, 1, 2, 2])


def _zero_arrays() -> np.ndarray:
    return np.zeros((N_ROWS, WIDTH), np.float32)


def _constant_per_class_arrays() -> np.ndarray:
    """One random vector per class, repeated for every row of the class (no spread at all)."""
    per_class = np.random.default_rng(1).normal(size=(3, WIDTH)).astype(np.float32)
    return per_class[base_labels()]


# --- --model-module specs


def _broken_module(folder: Path) -> str:
    """A model module that raises while being imported (e.g. a missing dependency)."""
    name = "acgate_rel_broken_model"
    (folder / f"{name}.py").write_text(
        'raise RuntimeError("this model module fails at import time: CUDA driver not found")\n'
        "\n\nclass Net:\n    pass\n", encoding="utf-8")
    return f"{name}:Net"


def _builtin_module(folder: Path) -> str:  # noqa: ARG001 - nothing to write
    return "os:getpid"


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


#: SHA-256 of the file the scan runs scanned and of another file (the digest-mismatch row).
TRAIN_SHA256 = hashlib.sha256(b"the training file").hexdigest()
OTHER_SHA256 = hashlib.sha256(b"another file").hexdigest()
#: The run id the unknown-run row asks for (no store holds it).
UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
#: Model ``m`` of the gate store: version 1 has no training-data digest, version 2 the scans'
#: digest, version 3 another file's digest.
MODEL = "m"
VERSION_NO_DIGEST, VERSION_SAME_DIGEST, VERSION_OTHER_DIGEST = "1", "2", "3"
#: The class the poisoned scan run finds poisoned.
POISONED_CLASS = 1


@dataclass(frozen=True)
class GateStore:
    """The gate rows' SQLite store, made once per process and copied into each cell.

    Attributes:
        folder: The store folder (``mlflow.db`` and ``mlartifacts``).
        clean_run: A finished scan run of a real ``detect`` result, verdict clean.
        poisoned_run: The same with class :data:`POISONED_CLASS` poisoned.
    """

    folder: Path
    clean_run: str
    poisoned_run: str


_STORE_CACHE: dict[str, GateStore] = {}


def scan_run_names() -> dict[str, str]:
    """The gate store's run ids and a stable name for each (the doc shows names, not ids)."""
    store = _STORE_CACHE.get("store")
    if store is None:
        return {}
    return {store.clean_run: "<clean scan run>", store.poisoned_run: "<poisoned scan run>"}


def _fast_temp_dir(prefix: str) -> Path:
    """A fresh folder in /dev/shm when there is one (MLflow's schema migration fsyncs dozens
    of times: ~1 s there against 5-20 s on a virtual disk); removed when the process ends."""
    shm = Path("/dev/shm")
    parent = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def gate_store() -> GateStore:
    """The shared gate store (made on first use)."""
    if "store" not in _STORE_CACHE:
        _STORE_CACHE["store"] = _make_registry(_fast_temp_dir("acgate-rel-store-"))
    return _STORE_CACHE["store"]


def blob_activations(poisoned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(activations, labels)``: 3 classes x 40 rows of 8-D activations, far apart.

    Three well-separated Gaussian blobs (the size/silhouette analysis finds them clean);
    ``poisoned`` moves 8 rows of class :data:`POISONED_CLASS` into a tight cluster of their own
    (20 % of the class).
    """
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    activations = rng.normal(size=(120, 8)) + labels[:, None] * 10.0
    if poisoned:
        start = 40 * POISONED_CLASS
        activations[start:start + 8] = activations[start:start + 8] * 0.2 + 20.0
    return activations.astype(np.float32), labels.astype(np.int64)


def detection_result(poisoned: bool) -> Any:
    """A real ``acgate.core.detect`` result of :func:`blob_activations`."""
    from acgate.core import detect

    activations, labels = blob_activations(poisoned)
    result = detect(activations, labels, random_state=0, analysis="size",
                    size_threshold=0.25 if poisoned else 0.05)
    expected = (POISONED_CLASS,) if poisoned else ()
    if tuple(result.poisoned_classes) != expected:  # the rows below rely on it
        raise AssertionError(f"detect found {result.poisoned_classes}, expected {expected}")
    return result


def _make_registry(base: Path) -> GateStore:
    """Two scan runs (``acgate.mlflow.log_scan``) and model ``m`` versions 1-3."""
    from acgate.mlflow import TRAINING_DATA_SHA256_TAG, log_scan
    from acgate.mlflow.tracking import default_tracking_uri, make_client

    uri = default_tracking_uri(base / "mlflow")
    runs = {poisoned: log_scan(detection_result(poisoned), tracking_uri=uri,
                               experiment="scans", dataset_sha256=TRAIN_SHA256,
                               dataset_uri="train.parquet")
            for poisoned in (False, True)}
    client = make_client(uri)
    experiment_id = client.create_experiment("models")
    client.create_registered_model(MODEL)
    for version, digest in ((VERSION_NO_DIGEST, None), (VERSION_SAME_DIGEST, TRAIN_SHA256),
                            (VERSION_OTHER_DIGEST, OTHER_SHA256)):
        run = client.create_run(experiment_id, run_name="train")
        client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
        client.set_terminated(run.info.run_id, "FINISHED")
        made = client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model",
                                           run_id=run.info.run_id)
        assert str(made.version) == version, (made.version, version)
        if digest is not None:  # the documented way (docs/gate.md)
            client.set_model_version_tag(MODEL, version, TRAINING_DATA_SHA256_TAG, digest)
    return GateStore(base / "mlflow", clean_run=runs[False], poisoned_run=runs[True])


def _gate_case(run: str, version: str,
               tamper: Callable[[Any, str], None] | None = None
               ) -> Callable[[Path], dict[str, Any]]:
    """A copy of the gate store in the cell's folder, optionally tampered with afterwards.

    ``run``: ``"clean"``, ``"poisoned"`` or ``"unknown"``; ``tamper(client, run_id)`` edits
    the copy through the MLflow API, as a user with write access could.
    """
    def make(folder: Path) -> dict[str, Any]:
        from acgate.mlflow.tracking import default_tracking_uri, make_client

        store = gate_store()
        shutil.copytree(store.folder, folder / "mlflow")
        uri = default_tracking_uri(folder / "mlflow")
        run_id = {"clean": store.clean_run, "poisoned": store.poisoned_run,
                  "unknown": UNKNOWN_RUN}[run]
        if tamper is not None:
            tamper(make_client(uri), run_id)
        return {"tracking_uri": uri, "run_id": run_id, "model_name": MODEL,
                "model_version": version}
    return make


def _relog_poisoned_metric(client: Any, run_id: str) -> None:
    client.log_metric(run_id, f"poisoned/{POISONED_CLASS}", 0.0)


def _drop_poisoned_class_tag(client: Any, run_id: str) -> None:
    import json

    classes = json.loads(client.get_run(run_id).data.tags["acgate.classes"])
    client.set_tag(run_id, "acgate.classes",
                   json.dumps([c for c in classes if c != POISONED_CLASS]))


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gate_unreachable(folder: Path) -> dict[str, Any]:  # noqa: ARG001 - nothing to write
    return {"tracking_uri": f"http://127.0.0.1:{closed_port()}", "run_id": UNKNOWN_RUN,
            "model_name": MODEL, "model_version": VERSION_SAME_DIGEST}


def _gate_missing_store(folder: Path) -> dict[str, Any]:
    return {"tracking_uri": f"sqlite:///{folder / 'no-such-store' / 'mlflow.db'}",
            "run_id": UNKNOWN_RUN, "model_name": MODEL, "model_version": "1"}


def _gate_row(name: str, title: str, mentions: str, cli_exit: int,
              gate: Callable[[Path], dict[str, Any]]) -> BadInput:
    """A gate row: the CLI exits ``cli_exit``; the KFP step fails with ``RuntimeError`` (an
    ``acgate.errors.InfrastructureError`` is one)."""
    return BadInput(name, title, mentions, gate=gate, cli_exit=cli_exit, raises=(RuntimeError,))


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
    # A dataset's float or string labels are mapped to classes since issue 20 (not bad input
    # there); activations and arrays still need integer labels.
    BadInput("label-float", "float label (1.5)", r"label",
             arrays=_acts_with(labels=_labels("float")),
             activations=_acts_file("label-float", labels=_labels("float"))),
    BadInput("label-string", "string label", r"label",
             arrays=_acts_with(labels=_labels("string")),
             activations=_acts_file("label-string", labels=_labels("string"))),
    BadInput("label-list", "dataset label column of lists ([3])", r"label",
             dataset=_labels_dataset("label-list",
                                     lambda y: pa.array([[int(v)] for v in y]))),
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
    BadInput("fifo", "a named pipe (FIFO) given as the file (must not hang)",
             r"named pipe|not a regular file",
             activations=_fifo_acts, dataset=_fifo_dataset, may_hang=True),
    BadInput("duplicate-label", "duplicate 'label' column (dataset / activations file)",
             r"duplicate column name\(s\): 'label'", activations=_duplicate_label_acts,
             dataset=_duplicate_label_dataset),
    BadInput("duplicate-image", "duplicate 'image' column",
             r"duplicate column name\(s\): 'image'",
             dataset=_duplicate_image_dataset),
    BadInput("decoded-budget", f"enormous total decoded size (six black {BUDGET_SIDE}x"
             f"{BUDGET_SIDE} RGB PNGs; each passes the per-image guard)",
             r"would need about .* above the limit", dataset=_decoded_budget_dataset),
    BadInput("all-zero", "activations all zero", r"all zero",
             arrays=_acts_with(activations=_zero_arrays),
             activations=_acts_file("all-zero", activations=_zero_arrays),
             not_for=("kfp cluster",)),
    BadInput("constant-per-class", "activations constant within every class",
             r"identical within every class|constant per class",
             arrays=_acts_with(activations=_constant_per_class_arrays),
             activations=_acts_file("constant-per-class", activations=_constant_per_class_arrays),
             not_for=("kfp cluster",)),
    BadInput("module-import-error", "--model-module whose module raises on import",
             r"importing .* raised RuntimeError: .*import time", model_module=_broken_module),
    BadInput("module-builtin", "--model-module os:getpid (a builtin, not a model)",
             r"standard-library|builtin|refusing", model_module=_builtin_module),
    _gate_row("gate-unknown-run", "gate: scan run id unknown to the store", r"not found|run",
              2, _gate_case("unknown", VERSION_SAME_DIGEST)),
    _gate_row("gate-missing-store", "gate: tracking store does not exist",
              r"does not exist|store", 2, _gate_missing_store),
    _gate_row("gate-digest-mismatch", "gate: the version's training-data digest is not the "
              "scan's dataset digest", r"trained on data with SHA-256 .* does not cover", 3,
              _gate_case("clean", VERSION_OTHER_DIGEST)),
    _gate_row("gate-no-digest", "gate: the version has no training-data digest",
              r"no training-data digest", 3, _gate_case("clean", VERSION_NO_DIGEST)),
    _gate_row("gate-relogged-metric", f"gate: poisoned/{POISONED_CLASS} re-logged as 0 after "
              "the scan", rf"poisoned/{POISONED_CLASS} was logged 2 times", 3,
              _gate_case("poisoned", VERSION_SAME_DIGEST, _relog_poisoned_metric)),
    _gate_row("gate-edited-classes", "gate: acgate.classes tag edited to drop the poisoned "
              "class", r"acgate\.classes", 3,
              _gate_case("poisoned", VERSION_SAME_DIGEST, _drop_poisoned_class_tag)),
    _gate_row("gate-unreachable", "gate: tracking server unreachable (closed port on "
              "127.0.0.1)", r"127\.0\.0\.1:\d+.*(unreachable|refused|connect)", 4,
              _gate_unreachable),
)

ROWS_BY_NAME = {row.name: row for row in ROWS}
