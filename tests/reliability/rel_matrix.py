"""Run one cell of the bad-input matrix: one bad input fed to one entry point.

A cell is ``(row, entry)``: :data:`bad_inputs.ROWS` x :data:`ENTRIES`. :func:`run_cell` writes the
row's bad input under a fresh folder, calls the entry point (the library, the CLI in-process, or
a Kubeflow component's ``.python_func``), and returns what the user got (:class:`Observed`):
the exit status or exception, the message, and every file the call left behind.
:func:`check` says whether that meets the contract of issue 10 (exit 2 / ``ValueError`` or
``TypeError``, a message naming the input and the problem, nothing written).

Both the tests (``test_rel_matrix.py``) and the doc generator (``make_matrix.py``) use it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bad_inputs as bi  # noqa: E402

ENTRIES: tuple[str, ...] = (
    "lib detect", "cli scan", "cli detect", "cli poison", "cli repair", "cli gate",
    "kfp train_proxy", "kfp extract_activations", "kfp cluster", "kfp analyze", "kfp repair",
    "kfp gate",
)
DATASET_ENTRIES = ("cli scan", "cli poison", "cli repair", "kfp train_proxy",
                   "kfp extract_activations", "kfp repair")
ACTIVATION_ENTRIES = ("cli detect", "kfp cluster", "kfp analyze")
MODEL_ENTRIES = ("cli scan", "cli repair", "kfp extract_activations", "kfp repair")
GATE_ENTRIES = ("cli gate", "kfp gate")
LENGTH_ENTRIES = ("lib detect", "cli repair", "kfp analyze", "kfp repair")
EPOCHS = 1

#: Cells that break the contract today, with the bug. Tests mark them ``xfail(strict=True)``:
#: when the library is fixed the test turns XPASS -> fails -> remove the entry here.
_ALL_BUT_GATE = ("lib detect", "cli scan", "cli detect", "cli poison", "cli repair",
                 "kfp train_proxy", "kfp extract_activations", "kfp cluster", "kfp analyze",
                 "kfp repair")
_BUG_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()


def _known_bugs() -> dict[tuple[str, str], str]:
    bugs: dict[tuple[str, str], str] = {}
    for reason, rows, entries in _BUG_GROUPS:
        for row in rows:
            for entry in entries:
                if applicable(bi.ROWS_BY_NAME[row], entry) and (row, entry) not in bugs:
                    bugs[(row, entry)] = reason
    return bugs


KNOWN_BUGS: dict[tuple[str, str], str] = {}


@dataclass
class Observed:
    """What a user got from one cell.

    Attributes:
        outcome: ``"exit N"`` (CLI), an exception class name (library, KFP), ``"returned"``
            (no error), or ``"traceback <Class>"`` (an exception escaped the CLI).
        message: The error message (CLI: stderr, or the gate's reasons), one line.
        written: Paths (relative to the cell folder) left in output / working folders.
        code_ran: The malicious pickle's payload ran.
        exception: The exception object (library / KFP), if any.
    """

    outcome: str
    message: str
    written: list[str] = field(default_factory=list)
    code_ran: bool = False
    exception: BaseException | None = None
    input_name: str | None = None


def applicable(row: bi.BadInput, entry: str) -> bool:
    """Whether the row's bad input can be given to the entry point."""
    if row.model:
        return entry in MODEL_ENTRIES
    if row.gate is not None:
        return entry in GATE_ENTRIES
    if row.lengths:
        return entry in LENGTH_ENTRIES
    if entry == "lib detect":
        return row.arrays is not None
    if entry in ACTIVATION_ENTRIES:
        return row.activations is not None
    if entry in DATASET_ENTRIES:
        return row.dataset is not None
    return False


def _init_bugs() -> None:
    KNOWN_BUGS.update(_known_bugs())


def cells() -> list[tuple[str, str]]:
    """Every applicable ``(row name, entry)`` in matrix order."""
    return [(row.name, entry) for row in bi.ROWS for entry in ENTRIES if applicable(row, entry)]


# ----------------------------------------------------------------------------- shared inputs


_MODEL_DIRS: dict[str, Path] = {}


def valid_model_dir(folder: Path) -> Path:
    """A proxy model folder (``state_dict.pt`` + ``model.json``) for 8x8 digits, 10 classes.

    Trained once per process (1 epoch on 60 digits) and copied into ``folder``.
    """
    import shutil

    if "model" not in _MODEL_DIRS:
        import tempfile

        from acgate.stages import pipeline_config, train_proxy_stage

        base = Path(tempfile.mkdtemp(prefix="acgate-rel-model-"))
        dataset = bi.write_digits(base / "digits.parquet", n_rows=100)
        train_proxy_stage(dataset, base / "model", pipeline_config(epochs=EPOCHS))
        _MODEL_DIRS["model"] = base / "model"
    target = folder / "model"
    shutil.copytree(_MODEL_DIRS["model"], target)
    return target


def model_dir_for(dataset: Path, folder: Path) -> Path:
    """The proxy ``train_proxy`` would hand on for this dataset (1 epoch), as in the pipeline;
    the valid 10-class proxy when no proxy can be trained on it."""
    from acgate.stages import pipeline_config, train_proxy_stage

    target = folder / "model"
    try:
        train_proxy_stage(dataset, target, pipeline_config(epochs=EPOCHS))
    except Exception:  # noqa: BLE001 - this input's own cells report the failure
        import shutil

        shutil.rmtree(target, ignore_errors=True)
        return valid_model_dir(folder)
    return target


def malicious_model_dir(folder: Path, marker: Path) -> Path:
    """A model folder whose ``state_dict.pt`` runs code when unpickled."""
    target = valid_model_dir(folder)
    bi.write_malicious_model(target / "state_dict.pt", marker)
    return target


def samples_file(folder: Path, labels: np.ndarray, name: str = "samples.parquet") -> Path:
    """A scan's ``samples.parquet`` for a dataset with these labels (row 0 flagged)."""
    import pandas as pd
    import pyarrow as pa

    from acgate.io.schema import write_parquet

    n = len(labels)
    flagged = np.zeros(n, bool)
    source = np.full(n, -1, np.int64)
    if n:
        flagged[0] = True
        others = [int(v) for v in np.unique(labels) if v != labels[0]]
        source[0] = others[0] if others else int(labels[0])
    frame = pd.DataFrame({
        "index": np.arange(n, dtype=np.int64), "label": np.asarray(labels, np.int64),
        "segment": np.asarray(labels, np.int64), "cluster": np.zeros(n, np.int64),
        "is_poison": flagged, "poison_score": flagged.astype(np.float64),
        "suspected_source": source,
    })
    return write_parquet(pa.Table.from_pandas(frame, preserve_index=False), folder / name,
                         "samples")


def _labels_if_readable(dataset: Path) -> np.ndarray:
    """The dataset's labels when acgate can read it, else the base digits' labels."""
    from acgate.io.datasets import read_image_dataset

    try:
        return np.asarray(read_image_dataset(dataset).labels)
    except Exception:
        return bi.digits_subset().labels


def _raw_labels(activations: Path) -> np.ndarray | None:
    """Integer labels of an activations file when they are plain non-negative integers."""
    import pyarrow.parquet as pq

    try:
        values = pq.read_table(activations, columns=["label"]).column("label").to_numpy()
    except Exception:
        return None
    if not np.issubdtype(values.dtype, np.integer) or (len(values) and values.min() < 0):
        return None
    return values.astype(np.int64)


# ----------------------------------------------------------------------------- running


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines)


def _left_behind(*folders: Path, base: Path) -> list[str]:
    found = []
    for folder in folders:
        if folder.exists():
            found.extend(str(p.relative_to(base)) for p in sorted(folder.rglob("*")))
    return found


def _run_cli(argv: list[Any], cwd: Path) -> Observed:
    from acgate.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    with _chdir(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main([str(a) for a in argv])
        except BaseException as error:  # what escapes main() is a traceback for the user
            return Observed(f"traceback {type(error).__name__}",
                            _one_line(f"{type(error).__name__}: {error}"), exception=error)
        finally:
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
    message = stderr.getvalue()
    if argv[0] == "gate":  # the gate's refusal reasons are in its JSON decision on stdout
        import json

        try:
            message = "; ".join(json.loads(stdout.getvalue())["reasons"])
        except (ValueError, KeyError):
            message = stderr.getvalue() or stdout.getvalue()
    return Observed(f"exit {code}", _one_line(message))


def _run_call(call: Callable[[], Any]) -> Observed:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as error:
            return Observed(type(error).__name__, _one_line(str(error)), exception=error)
    return Observed("returned", "")


def _artifact(kind: Any, folder: Path, name: str) -> Any:
    return kind(name=name, uri=str(folder / name))


def _input_artifact(kind: Any, path: Path) -> Any:
    return kind(name=path.name, uri=str(path))


def run_cell(row_name: str, entry: str, folder: Path) -> Observed:
    """Write the bad input of ``row_name`` under ``folder``, feed it to ``entry``.

    ``folder`` gets ``in/`` (inputs), ``out/`` (every output path points inside it) and
    ``cwd/`` (the working folder of CLI runs); :attr:`Observed.written` lists what is left in
    ``out/`` and ``cwd/`` afterwards.
    """
    row = bi.ROWS_BY_NAME[row_name]
    if not applicable(row, entry):
        raise ValueError(f"cell ({row_name}, {entry}) is not applicable")
    inputs, out, cwd = folder / "in", folder / "out", folder / "cwd"
    for path in (inputs, out, cwd):
        path.mkdir(parents=True, exist_ok=True)
    marker = folder / "pwned.txt"
    observed = _dispatch(row, entry, inputs, out, cwd, marker)
    if entry != "lib detect" and row.gate is None and not row.lengths:
        named = [p.name for p in inputs.iterdir() if p.suffix in (".parquet", ".pt")
                 and p.name.split(".")[0] in (row.name, "notes", "no-image", "no-activation",
                                              "newer", "evil")]
        observed.input_name = named[0] if named else ("state_dict.pt" if row.model else None)
    observed.message = observed.message.replace(f"{folder.resolve()}/", "").replace(
        f"{folder}/", "")
    observed.written = _left_behind(out, cwd, base=folder)
    observed.code_ran = marker.exists()
    return observed


def _dispatch(row: bi.BadInput, entry: str, inputs: Path, out: Path, cwd: Path,
              marker: Path) -> Observed:
    from kfp import dsl

    if entry == "lib detect":
        from acgate.core import detect

        activations, labels = row.arrays()
        return _run_call(lambda: detect(activations, labels, random_state=0))

    if row.gate is not None:
        args = row.gate(inputs)
        if entry == "cli gate":
            return _run_cli(["gate", "--model-name", args["model_name"], "--model-version",
                             args["model_version"], "--run-id", args["run_id"],
                             "--tracking-uri", args["tracking_uri"]], cwd)
        from components.gate.component import gate

        return _run_call(lambda: gate.python_func(
            run_id=args["run_id"], model_name=args["model_name"],
            model_version=args["model_version"], mlflow_tracking_uri=args["tracking_uri"]))

    if row.model:
        dataset = bi.write_digits(inputs / "digits.parquet")
        if entry == "cli scan":
            evil = bi.write_malicious_model(inputs / "evil.pt", marker)
            return _run_cli(["scan", dataset, "--out", out / "scan", "--no-mlflow",
                             "--no-report", "--model", evil, "--model-module",
                             "acgate.torch.models:SmallCNN", "--epochs", EPOCHS], cwd)
        if entry == "cli repair":
            evil = bi.write_malicious_model(inputs / "evil.pt", marker)
            samples = samples_file(inputs, bi.digits_subset().labels)
            return _run_cli(["repair", dataset, "--samples", samples, "--out", out / "repair",
                             "--model", evil, "--epochs", EPOCHS, "--max-epochs", EPOCHS], cwd)
        model = _input_artifact(dsl.Model, malicious_model_dir(inputs, marker))
        return _run_kfp(entry, inputs, out, dataset=dataset, model=model)

    if row.lengths:
        if entry in ("cli repair", "kfp repair"):
            dataset = bi.write_digits(inputs / "digits.parquet")
            samples = samples_file(inputs, bi.digits_subset().labels[:-5])
            if entry == "cli repair":
                return _run_cli(["repair", dataset, "--samples", samples, "--out",
                                 out / "repair", "--epochs", EPOCHS, "--max-epochs", EPOCHS],
                                cwd)
            return _run_kfp(entry, inputs, out, dataset=dataset, samples=samples)
        activations = bi.write_activation_file(inputs / "acts.parquet", bi.base_activations(),
                                               bi.base_labels())
        dataset = bi.write_digits(inputs / "digits.parquet", n_rows=bi.N_ROWS - 10)
        return _run_kfp(entry, inputs, out, activations=activations, dataset=dataset)

    if entry in ACTIVATION_ENTRIES:
        activations = row.activations(inputs)
        if entry == "cli detect":
            return _run_cli(["detect", activations, "--out", out / "detect"], cwd)
        return _run_kfp(entry, inputs, out, activations=activations)

    dataset = row.dataset(inputs)
    if entry == "cli scan":
        return _run_cli(["scan", dataset, "--out", out / "scan", "--no-mlflow", "--no-report",
                         "--epochs", EPOCHS], cwd)
    if entry == "cli poison":
        return _run_cli(["poison", dataset, "--out", out / "poisoned.parquet", "--rate", "0.2"],
                        cwd)
    if entry == "cli repair":
        samples = samples_file(inputs, _labels_if_readable(dataset))
        return _run_cli(["repair", dataset, "--samples", samples, "--out", out / "repair",
                         "--epochs", EPOCHS, "--max-epochs", EPOCHS], cwd)
    return _run_kfp(entry, inputs, out, dataset=dataset)


def _run_kfp(entry: str, inputs: Path, out: Path, *, dataset: Path | None = None,
             activations: Path | None = None, model: Any = None,
             samples: Path | None = None) -> Observed:
    from kfp import dsl

    if entry == "kfp train_proxy":
        from components.train_proxy.component import train_proxy

        return _run_call(lambda: train_proxy.python_func(
            dataset_uri=str(dataset), dataset=_artifact(dsl.Dataset, out, "dataset"),
            model=_artifact(dsl.Model, out, "model"),
            metrics=_artifact(dsl.Metrics, out, "metrics"), seed=0, epochs=EPOCHS))
    if entry == "kfp extract_activations":
        from components.extract_activations.component import extract_activations

        model = model or _input_artifact(dsl.Model, model_dir_for(dataset, inputs))
        return _run_call(lambda: extract_activations.python_func(
            dataset=_input_artifact(dsl.Dataset, dataset), model=model,
            activations=_artifact(dsl.Dataset, out, "activations")))
    if entry == "kfp repair":
        from components.repair.component import repair

        model = model or _input_artifact(dsl.Model, model_dir_for(dataset, inputs))
        if samples is None:
            samples = samples_file(inputs, _labels_if_readable(dataset))
        return _run_call(lambda: repair.python_func(
            dataset=_input_artifact(dsl.Dataset, dataset),
            samples=_input_artifact(dsl.Dataset, samples), model=model,
            cleaned_dataset=_artifact(dsl.Dataset, out, "cleaned"),
            repaired_model=_artifact(dsl.Model, out, "repaired-model"),
            metrics=_artifact(dsl.Metrics, out, "metrics"), seed=0, epochs=EPOCHS))
    if entry == "kfp cluster":
        from components.cluster.component import cluster

        labels = _raw_labels(activations)
        label = int(labels[0]) if labels is not None and len(labels) else 0
        return _run_call(lambda: cluster.python_func(
            activations=_input_artifact(dsl.Dataset, activations), label=label,
            clustering=_artifact(dsl.Dataset, out, "clustering"), seed=0))
    if entry == "kfp analyze":
        return _run_analyze(inputs, out, activations, dataset)
    raise ValueError(f"unknown entry {entry!r}")


def _run_analyze(inputs: Path, out: Path, activations: Path, dataset: Path | None) -> Observed:
    """``analyze`` as the pipeline feeds it: one clustering per class made by ``cluster``."""
    from kfp import dsl

    from acgate.stages import cluster_stage, pipeline_config

    labels = _raw_labels(activations)
    if dataset is None:
        n_rows = len(labels) if labels is not None else bi.N_ROWS
        dataset = bi.write_digits(inputs / "companion.dataset.parquet", n_rows=n_rows,
                                  labels=labels)
    clusterings = []
    config = pipeline_config(epochs=EPOCHS)
    for label in np.unique(labels) if labels is not None else []:
        path = inputs / f"clustering-{label}.parquet"
        try:
            cluster_stage(activations, int(label), path, config)
        except Exception:  # noqa: BLE001 - the cluster column reports this input
            break
        clusterings.append(_input_artifact(dsl.Dataset, path))
    from components.analyze.component import analyze

    return _run_call(lambda: analyze.python_func(
        activations=_input_artifact(dsl.Dataset, activations),
        dataset=_input_artifact(dsl.Dataset, dataset), clusterings=clusterings,
        samples=_artifact(dsl.Dataset, out, "samples"),
        classes=_artifact(dsl.Dataset, out, "classes"),
        metrics=_artifact(dsl.Metrics, out, "metrics"),
        report=_artifact(dsl.HTML, out, "report"), seed=0, epochs=EPOCHS))


# ----------------------------------------------------------------------------- the contract


def expected(entry: str, row: bi.BadInput) -> str:
    """The outcome the contract asks for, in words."""
    if entry == "cli gate":
        return "exit 3 (refused)"
    if entry == "kfp gate":
        return "RuntimeError (step fails, alias untouched)"
    return "exit 2" if entry.startswith("cli") else "ValueError or TypeError"


def check(row_name: str, entry: str, observed: Observed) -> list[str]:
    """Ways the observation breaks the contract (empty: the cell passes)."""
    row = bi.ROWS_BY_NAME[row_name]
    problems = []
    if entry == "cli gate":
        if observed.outcome != "exit 3":
            problems.append(f"outcome {observed.outcome}, expected exit 3")
    elif entry == "kfp gate":
        if not isinstance(observed.exception, RuntimeError):
            problems.append(f"outcome {observed.outcome}, expected RuntimeError")
    elif entry.startswith("cli"):
        if observed.outcome != "exit 2":
            problems.append(f"outcome {observed.outcome}, expected exit 2")
    elif not isinstance(observed.exception, (ValueError, TypeError)):
        problems.append(f"outcome {observed.outcome}, expected ValueError or TypeError")
    if not problems and not re.search(row.mentions, observed.message, re.IGNORECASE):
        problems.append(f"message does not name the problem (/{row.mentions}/)")
    if (not problems and observed.input_name
            and observed.input_name not in observed.message):
        problems.append(f"message does not name the input file {observed.input_name!r}")
    if observed.written:
        problems.append(f"left files behind: {observed.written[:4]}")
    if observed.code_ran:
        problems.append("the pickle's payload RAN")
    return problems


_init_bugs()
