"""Run one cell of the bad-input matrix: one bad input fed to one entry point.

A cell is ``(row, entry)``: :data:`bad_inputs.ROWS` x :data:`ENTRIES`. :func:`run_cell` writes the
row's bad input under a fresh folder, calls the entry point (the library, the CLI in-process, or
a Kubeflow component's ``.python_func``), and returns what the user got (:class:`Observed`):
the exit status or exception, the message, and every file the call left behind.
:func:`check` says whether that meets the row's contract: the exit code and exception the row
expects (:attr:`bad_inputs.BadInput.cli_exit`, :attr:`~bad_inputs.BadInput.raises`: exit 2 /
``ValueError`` or ``TypeError`` for bad input; the gate's rows 2, 3 or 4 / ``RuntimeError``), a
message naming the input and the problem, nothing written, no code from the data run.

Both the tests (``test_rel_matrix.py``) and the doc generator (``make_matrix.py``) use it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re
import sys
import threading
import time
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
    "lib detect", "lib load_model", "cli scan", "cli detect", "cli poison", "cli repair",
    "cli gate", "kfp train_proxy", "kfp extract_activations", "kfp cluster", "kfp analyze",
    "kfp repair", "kfp gate",
)
DATASET_ENTRIES = ("cli scan", "cli poison", "cli repair", "kfp train_proxy",
                   "kfp extract_activations", "kfp repair")
ACTIVATION_ENTRIES = ("cli detect", "kfp cluster", "kfp analyze")
MODEL_ENTRIES = ("lib load_model", "cli scan", "cli repair", "kfp extract_activations",
                 "kfp repair")
MODEL_MODULE_ENTRIES = ("lib load_model", "cli scan")
GATE_ENTRIES = ("cli gate", "kfp gate")
LENGTH_ENTRIES = ("lib detect", "cli repair", "kfp analyze", "kfp repair")
EPOCHS = 1
#: Deadline of a cell that may hang (``BadInput.may_hang``: a reader blocked on a FIFO).
HANG_DEADLINE_S = 120.0
#: The model class the model cells name (``acgate scan --model-module``, ``load_model``).
PROXY_MODULE = "acgate.torch.models:SmallCNN"

#: Cells that break the contract today, with the bug. Tests mark them ``xfail(strict=True)``:
#: when the library is fixed the test turns XPASS -> fails -> remove the entry here.
_ALL_BUT_GATE = ("lib detect", "lib load_model", "cli scan", "cli detect", "cli poison",
                 "cli repair",
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
    """Whether the row's bad input can be given to the entry point (and judged by it)."""
    if entry in row.not_for:
        return False
    if row.model_module is not None:
        return entry in MODEL_MODULE_ENTRIES
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
    """A proxy model folder (``model.pt`` + ``model.json``) for 8x8 digits, 10 classes.

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
    """A model folder whose ``model.pt`` runs code when unpickled."""
    target = valid_model_dir(folder)
    bi.write_malicious_model(target / "model.pt", marker)
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

    if not Path(activations).is_file():  # a FIFO would block pyarrow's open
        return None
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


@dataclass
class CliRun:
    """One in-process ``acgate`` run: ``code`` (``None`` when an exception escaped ``main``,
    then in ``error``), what it printed, and how long it took."""

    code: int | None
    stdout: str
    stderr: str
    seconds: float
    error: BaseException | None = None


def run_cli(argv: list[Any], cwd: Path, *, warnings_action: str = "ignore") -> CliRun:
    """Run ``acgate.cli.main(argv)`` in ``cwd`` as a fresh process would: stdout and stderr
    captured, the root logger without handlers (so ``main`` installs its own, writing to the
    captured stderr), warnings filtered with ``warnings_action``."""
    from acgate.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        root.removeHandler(handler)
    started = time.perf_counter()
    code, error = None, None
    try:
        with _chdir(cwd), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter(warnings_action)
            try:
                code = main([str(a) for a in argv])
            except BaseException as escaped:  # what escapes main() is a traceback for the user
                error = escaped
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
    return CliRun(code, stdout.getvalue(), stderr.getvalue(), time.perf_counter() - started,
                  error)


def _run_cli(argv: list[Any], cwd: Path) -> Observed:
    run = run_cli(argv, cwd)
    if run.error is not None:
        return Observed(f"traceback {type(run.error).__name__}",
                        _one_line(f"{type(run.error).__name__}: {run.error}"),
                        exception=run.error)
    # The CLI's own lines ("acgate scan: error: ..."); library log lines are context.
    own = [line for line in run.stderr.splitlines() if line.startswith("acgate ")]
    message = "\n".join(own) if own else run.stderr
    if argv[0] == "gate":  # the gate's refusal reasons are in its JSON decision on stdout
        import json

        try:
            message = "; ".join(json.loads(run.stdout)["reasons"])
        except (ValueError, KeyError):
            message = run.stderr or run.stdout
    return Observed(f"exit {run.code}", _one_line(message))


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
    ``out/`` and ``cwd/`` afterwards. A row that ``may_hang`` runs under
    :data:`HANG_DEADLINE_S` (see :func:`run_bounded`).
    """
    row = bi.ROWS_BY_NAME[row_name]
    if not applicable(row, entry):
        raise ValueError(f"cell ({row_name}, {entry}) is not applicable")
    inputs, out, cwd = folder / "in", folder / "out", folder / "cwd"
    for path in (inputs, out, cwd):
        path.mkdir(parents=True, exist_ok=True)
    marker = folder / "pwned.txt"
    if row.may_hang:
        observed = run_bounded(lambda: _dispatch(row, entry, inputs, out, cwd, marker),
                               HANG_DEADLINE_S, unblock=inputs)
    else:
        observed = _dispatch(row, entry, inputs, out, cwd, marker)
    if (entry != "lib detect" and row.gate is None and not row.lengths
            and row.model_module is None):  # a model module's cells name its spec (_dispatch)
        named = [p.name for p in inputs.iterdir() if p.suffix in (".parquet", ".pt")
                 and p.name.split(".")[0] in (row.name, "notes", "no-image", "no-activation",
                                              "newer", "evil")]
        observed.input_name = named[0] if named else ("model.pt" if row.model else None)
    observed.message = observed.message.replace(f"{folder.resolve()}/", "").replace(
        f"{folder}/", "")
    for run_id, name in bi.scan_run_names().items():
        observed.message = observed.message.replace(run_id, name)
    observed.written = _left_behind(out, cwd, base=folder)
    observed.code_ran = marker.exists()
    return observed


def call_bounded(call: Callable[[], Any], deadline_s: float,
                 on_deadline: Callable[[], None] | None = None) -> tuple[bool, Any, float]:
    """``call()`` in a daemon thread, waited for at most ``deadline_s``.

    Returns ``(finished, value, seconds)``; ``value`` is what ``call`` returned, or the
    exception it raised. Past the deadline ``on_deadline()`` runs (to release the call) and the
    thread is waited for 30 s more; ``finished`` is then ``False``.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # handed to the caller
            box["value"] = error

    thread = threading.Thread(target=target, daemon=True, name="acgate-rel-bounded")
    started = time.perf_counter()
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        if on_deadline is not None:
            on_deadline()
        thread.join(30)
        return False, None, time.perf_counter() - started
    return True, box.get("value"), time.perf_counter() - started


def run_bounded(call: Callable[[], Observed], deadline_s: float,
                unblock: Path | None = None) -> Observed:
    """``call()`` under a deadline (:func:`call_bounded`); past it the outcome is ``"hang"``.

    A reader blocked opening a named pipe under ``unblock`` is released by opening the pipe's
    write end and closing it (the reader sees end of file), so a regression fails the cell
    instead of hanging the test run.
    """
    finished, value, seconds = call_bounded(
        call, deadline_s, on_deadline=None if unblock is None
        else lambda: _release_fifo_readers(unblock))
    if not finished:
        return Observed("hang", f"still running after {seconds:.0f} s (blocked reading a named "
                                "pipe?)")
    if isinstance(value, BaseException):
        return Observed(f"traceback {type(value).__name__}",
                        _one_line(f"{type(value).__name__}: {value}"), exception=value)
    return value


def _release_fifo_readers(folder: Path) -> None:
    import stat

    for path in folder.rglob("*"):
        if stat.S_ISFIFO(path.lstat().st_mode):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: nobody is reading it
                pass


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """``folder`` importable while the cell runs (as ``PYTHONPATH`` would make it)."""
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(folder)):
                del sys.modules[name]


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

    if row.model_module is not None:
        spec = row.model_module(inputs)
        weights = valid_model_dir(inputs) / "model.pt"  # a real state_dict
        with _on_sys_path(inputs):
            if entry == "lib load_model":
                from acgate.torch.byo import load_model

                observed = _run_call(lambda: load_model(weights, module=spec))
            else:
                dataset = bi.write_digits(inputs / "digits.parquet")
                observed = _run_cli(["scan", dataset, "--out", out / "scan", "--no-mlflow",
                                     "--no-report", "--model", weights, "--model-module", spec,
                                     "--epochs", EPOCHS], cwd)
        observed.input_name = spec
        return observed

    if row.model:
        if entry == "lib load_model":
            from acgate.torch.byo import load_model

            evil = bi.write_malicious_model(inputs / "evil.pt", marker)
            return _run_call(lambda: load_model(evil, module=PROXY_MODULE))
        dataset = bi.write_digits(inputs / "digits.parquet")
        if entry == "cli scan":
            evil = bi.write_malicious_model(inputs / "evil.pt", marker)
            return _run_cli(["scan", dataset, "--out", out / "scan", "--no-mlflow",
                             "--no-report", "--model", evil, "--model-module",
                             PROXY_MODULE, "--epochs", EPOCHS], cwd)
        if entry == "cli repair":  # a scan's proxy folder whose model.pt was replaced
            evil = malicious_model_dir(inputs, marker) / "model.pt"
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
        report=_artifact(dsl.HTML, out, "report"), scan=_artifact(dsl.Artifact, out, "scan"),
        seed=0, epochs=EPOCHS))


# ----------------------------------------------------------------------------- the contract


def _names(kinds: tuple[type[BaseException], ...]) -> str:
    return " or ".join(f"`{kind.__name__}`" for kind in kinds)


def expected(entry: str, row: bi.BadInput) -> str:
    """The outcome the row's contract asks of ``entry``, in words."""
    if entry.startswith("cli"):
        return f"exit {row.cli_exit}"
    return _names(row.raises)


def check(row_name: str, entry: str, observed: Observed) -> list[str]:
    """Ways the observation breaks the row's contract (empty: the cell passes)."""
    row = bi.ROWS_BY_NAME[row_name]
    problems = []
    if entry.startswith("cli"):
        if observed.outcome != f"exit {row.cli_exit}":
            problems.append(f"outcome {observed.outcome}, expected exit {row.cli_exit}")
    elif not isinstance(observed.exception, row.raises):
        problems.append(f"outcome {observed.outcome}, expected "
                        f"{' or '.join(kind.__name__ for kind in row.raises)}")
    # The problem must be said in words: the input's own name (e.g. 'nan.activations.parquet')
    # does not count.
    said = observed.message.replace(observed.input_name, "<input>") if observed.input_name \
        else observed.message
    if not problems and not re.search(row.mentions, said, re.IGNORECASE):
        problems.append(f"message does not name the problem (/{row.mentions}/)")
    if (not problems and observed.input_name
            and observed.input_name not in observed.message):
        problems.append(f"message does not name the input {observed.input_name!r}")
    if observed.written:
        problems.append(f"left files behind: {observed.written[:4]}")
    if observed.code_ran:
        problems.append("the pickle's payload RAN")
    return problems


_init_bugs()
