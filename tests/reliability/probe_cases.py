"""Probe cases of issue 16: scripted user actions, each with its own expected outcome.

The bad-input matrix (``rel_matrix.py``) feeds one bad file to every entry point and expects the
same refusal everywhere. A probe case is one command a user could type (``acgate scan
data/train.parquet --out data/``), run in-process on real files, a real SQLite store or a real
HTTP server thread on 127.0.0.1, and checked against what that action must do: an exit code,
the files that must stay byte-identical or must appear, a message.

Each case is a :class:`ProbeCase`; :data:`CASES` lists them. ``test_rel_probe.py`` runs one test
per case and ``make_matrix.py`` renders the table "Probe cases (issue 16)" of
docs/reliability.md from the same runs. Inputs are tiny (60 digits or 120 x 8 activations,
``--epochs 1``).
"""

from __future__ import annotations

import http.server
import multiprocessing
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bad_inputs as bi  # noqa: E402
import rel_matrix as rm  # noqa: E402

#: Longest a probe may run before it counts as hung (the stalled-server gate takes ~30 s).
DEADLINE_S = 90.0
EPOCHS = "1"


@dataclass
class ProbeResult:
    """What one probe observed.

    Attributes:
        outcome: ``"exit N"``, ``"hang"`` or ``"traceback <Class>"``.
        message: The line(s) of the output that matter (one line).
        problems: Ways it breaks the case's expectation (empty: ok).
        seconds: How long the command ran.
        notes: What was checked besides the exit code, in words.
    """

    outcome: str
    message: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: str = ""


@dataclass(frozen=True)
class ProbeCase:
    """One scripted user action.

    Attributes:
        name: Short id (test id, the doc's anchor).
        action: The command, as the user types it (the doc's first column).
        expected: The outcome it must have, in words.
        run: ``(folder) -> ProbeResult``: sets the scene under ``folder``, runs, checks.
    """

    name: str
    action: str
    expected: str
    run: Callable[[Path], ProbeResult]


# ----------------------------------------------------------------------------- helpers


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (hidden ones too): file bytes, ``None`` for a folder."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def _changes(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return ([f"added {added[:4]}"] if added else []) + \
        ([f"removed {removed[:4]}"] if removed else []) + \
        ([f"changed {changed[:4]}"] if changed else [])


def _one_line(text: str, pattern: str | None = None) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if pattern is not None:
        lines = [line for line in lines if re.search(pattern, line)] or lines
    return " ".join(lines)


def _cli(argv: list[Any], cwd: Path, *, warnings_action: str = "ignore") -> rm.CliRun:
    return rm.run_cli(argv, cwd, warnings_action=warnings_action)


def _outcome(run: rm.CliRun) -> str:
    return f"traceback {type(run.error).__name__}" if run.error is not None \
        else f"exit {run.code}"


def _result(run: rm.CliRun, codes: tuple[int, ...], problems: list[str], *,
            message: str | None = None, notes: str = "") -> ProbeResult:
    """The result of a CLI run expected to exit with one of ``codes``."""
    if run.error is not None or run.code not in codes:
        want = " or ".join(str(c) for c in codes)
        problems.insert(0, f"outcome {_outcome(run)}, expected exit {want}")
    if message is None:
        message = _one_line(run.stderr, r"^acgate ") or _one_line(run.stdout)[-300:]
    return ProbeResult(_outcome(run), message, problems, run.seconds, notes)


def _refused(run: rm.CliRun, folder: Path, before: dict[str, bytes | None],
             mentions: str) -> ProbeResult:
    """Exit 2, a message matching ``mentions``, and ``folder`` exactly as it was."""
    problems = []
    if not re.search(mentions, run.stderr, re.IGNORECASE):
        problems.append(f"message does not say /{mentions}/")
    problems += [f"the folder changed: {change}" for change in
                 _changes(before, _snapshot(folder))]
    return _result(run, (2,), problems, notes="every file under the case's folder "
                   "byte-identical afterwards (hidden files included)")


def three_class_digits() -> Any:
    """60 digits, 20 each of classes 0, 1, 2 (every class large enough to be judged)."""
    from acgate.io.datasets import ImageDataset
    from acgate.io.loaders import load_digits_dataset

    digits = load_digits_dataset()
    rows = np.concatenate([np.flatnonzero(digits.labels == c)[:20] for c in range(3)])
    return ImageDataset(images=digits.images[rows], labels=digits.labels[rows],
                        name="three-digits")


def _write_digits(path: Path) -> Path:
    from acgate.io.datasets import write_image_dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image_dataset(three_class_digits(), path)


def line_activations(small_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(activations, labels)`` that ``acgate detect`` finds clean with its defaults.

    Classes 0, 1, 2 of 40 rows each, far apart; inside a class the rows are evenly spaced along
    a line (plus a little noise), so 2-means splits every class in halves (share 0.5, above the
    0.35 a poison cluster may hold). ``small_class``: class 2 keeps only 3 rows (too few to
    judge).
    """
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for label, n_rows in ((0, 40), (1, 40), (2, 3 if small_class else 40)):
        centre = np.zeros(8)
        centre[label] = 20.0
        direction = np.zeros(8)
        direction[(label + 3) % 8] = 1.0
        steps = np.linspace(-3.0, 3.0, n_rows)[:, None]
        rows.append(centre + steps * direction + rng.normal(scale=0.05, size=(n_rows, 8)))
        labels.extend([label] * n_rows)
    return np.vstack(rows).astype(np.float32), np.asarray(labels, np.int64)


def _write_activations(path: Path, small_class: bool = False) -> Path:
    """An activations file of :func:`line_activations`."""
    activations, labels = line_activations(small_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    return bi.write_activation_file(path, activations, labels)


def _scan_argv(data: Any, out: Any, *extra: Any) -> list[Any]:
    return ["scan", data, "--out", out, "--epochs", EPOCHS, *extra]


# ----------------------------------------------------------------------------- output folders


def _scan_into_data_folder(folder: Path) -> ProbeResult:
    _write_digits(folder / "data" / "train.parquet")
    (folder / "data" / "README.md").write_text("# my training data\n", encoding="utf-8")
    before = _snapshot(folder)
    run = _cli(_scan_argv("data/train.parquet", "data/", "--no-mlflow", "--no-report"), folder)
    return _refused(run, folder, before, r"contains the input")


def _detect_into_activations_folder(folder: Path) -> ProbeResult:
    _write_activations(folder / "acts" / "run.activations.parquet")
    before = _snapshot(folder)
    run = _cli(["detect", "acts/run.activations.parquet", "--out", "acts"], folder)
    return _refused(run, folder, before, r"contains the input")


def _work_folder(folder: Path) -> Path:
    work = folder / "work"
    _write_activations(work / "acts.parquet")
    (work / "notes.txt").write_text("keep me\n", encoding="utf-8")
    return work


def _detect_into_cwd(folder: Path) -> ProbeResult:
    work = _work_folder(folder)
    before = _snapshot(folder)
    run = _cli(["detect", "acts.parquet", "--out", work], work)
    return _refused(run, folder, before, r"working folder")


def _out_dotdot(folder: Path) -> ProbeResult:
    work = _work_folder(folder)
    before = _snapshot(folder)
    run = _cli(["detect", "acts.parquet", "--out", "sub/.."], work)
    return _refused(run, folder, before, r"working folder")


def _repair_into_scan_folder(folder: Path) -> ProbeResult:
    data = _write_digits(folder / "train.parquet")
    scan = _cli(_scan_argv(data, "scan", "--no-mlflow", "--no-report"), folder)
    if scan.code not in (0, 3):
        return _result(scan, (0, 3), ["the scan that makes the scan folder failed"])
    before = _snapshot(folder)
    run = _cli(["repair", data, "--samples", "scan/samples.parquet", "--out", "scan",
                "--epochs", EPOCHS, "--max-epochs", EPOCHS], folder)
    return _refused(run, folder, before, r"contains the input")


def _poison_onto_itself(folder: Path) -> ProbeResult:
    _write_digits(folder / "ds.parquet")
    before = _snapshot(folder)
    run = _cli(["poison", "ds.parquet", "--out", "ds.parquet"], folder)
    return _refused(run, folder, before, r"is the input dataset")


def _out_existing_file(folder: Path) -> ProbeResult:
    work = _work_folder(folder)
    before = _snapshot(folder)
    run = _cli(["detect", "acts.parquet", "--out", "notes.txt"], work)
    return _refused(run, folder, before, r"exists and is not a folder")


def _foreign_folder(folder: Path) -> Path:
    work = _work_folder(folder)
    (work / "results").mkdir()
    (work / "results" / "mine.txt").write_text("a user's file\n", encoding="utf-8")
    return work


def _detect_into_foreign_folder(folder: Path) -> ProbeResult:
    work = _foreign_folder(folder)
    before = _snapshot(folder)
    run = _cli(["detect", "acts.parquet", "--out", "results"], work)
    problems = []
    if not re.search(r"not empty and was not written by acgate", run.stderr):
        problems.append("message does not say the folder is not acgate's")
    after = _snapshot(folder)
    lock = "work/.results.lock"  # io.output's lock beside the folder stays, by design
    left = [lock] if lock in after and lock not in before else []
    problems += [f"the folder changed: {change}" for change in
                 _changes(before, {k: v for k, v in after.items() if k not in left})]
    notes = "results/ and every other file byte-identical"
    if left:
        notes += "; the lock file work/.results.lock stays beside it (io.output keeps it)"
    return _result(run, (2,), problems, notes=notes)


def _detect_into_foreign_folder_overwrite(folder: Path) -> ProbeResult:
    work = _foreign_folder(folder)
    mine = (work / "results" / "mine.txt").read_bytes()
    run = _cli(["detect", "acts.parquet", "--out", "results", "--overwrite"], work)
    problems = []
    kept = work / "results" / "mine.txt"
    if not kept.is_file() or kept.read_bytes() != mine:
        problems.append("the user's results/mine.txt was not kept byte-identical")
    if not (work / "results" / "samples.parquet").is_file():
        problems.append("no results/samples.parquet written")
    return _result(run, (0,), problems, message=_one_line(run.stdout, r"^verdict"),
                   notes="results/mine.txt byte-identical; results/samples.parquet written")


def _hold_output_folder(out: str, ready: Any, release: Any) -> None:
    """The first writer (a forked child): holds ``out`` until ``release`` is set."""
    from acgate.io.output import output_folder

    with output_folder(out, command="detect") as staged:
        (staged.staging / "first.json").write_text("first writer\n", encoding="utf-8")
        ready.set()
        release.wait(60)


def _second_writer(folder: Path) -> ProbeResult:
    work = _work_folder(folder)
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    first = context.Process(target=_hold_output_folder,
                            args=(str(work / "results"), ready, release))
    first.start()
    try:
        if not ready.wait(60):
            return ProbeResult("not run", "the first writer did not start", ["setup failed"])
        run = _cli(["detect", "acts.parquet", "--out", "results"], work)
    finally:
        release.set()
        first.join(60)
    problems = []
    if f"being written by another acgate process (pid {first.pid}" not in run.stderr:
        problems.append("message does not name the other process")
    if first.exitcode != 0:
        problems.append(f"the first writer exited {first.exitcode}")
    written = sorted(p.name for p in (work / "results").iterdir()) \
        if (work / "results").is_dir() else []
    if "first.json" not in written or "samples.parquet" in written:
        problems.append(f"results/ holds {written}, not the first writer's output alone")
    return _result(run, (2,), problems, notes="results/ afterwards holds the first writer's "
                   "output alone")


# ----------------------------------------------------------------------------- verdicts


def _class_of_three(allow_skipped: bool) -> Callable[[Path], ProbeResult]:
    def run_case(folder: Path) -> ProbeResult:
        _write_activations(folder / "acts.parquet", small_class=True)
        argv = ["detect", "acts.parquet", "--out", "results"]
        if allow_skipped:
            argv.append("--allow-skipped")
        run = _cli(argv, folder)
        problems = []
        if "verdict: INCOMPLETE" not in run.stdout:
            problems.append("the printed verdict is not INCOMPLETE")
        if not allow_skipped and not re.search(r"\[2\] could not be judged.*--allow-skipped",
                                               run.stderr):
            problems.append("stderr does not name class 2 and --allow-skipped")
        if not (folder / "results" / "samples.parquet").is_file():
            problems.append("no results written")
        message = _one_line(run.stdout, r"^verdict") + (
            "" if allow_skipped else " / " + _one_line(run.stderr, r"could not be judged"))
        return _result(run, (0,) if allow_skipped else (5,), problems, message=message,
                       notes="verdict INCOMPLETE printed; results written")
    return run_case


def _scan_tracking_unreachable(folder: Path) -> ProbeResult:
    data = _write_digits(folder / "train.parquet")
    port = bi.closed_port()
    run = _cli(_scan_argv(data, "results", "--tracking-uri", f"http://127.0.0.1:{port}",
                          "--no-report"), folder)
    problems = []
    if f"127.0.0.1:{port}" not in run.stderr:
        problems.append("message does not name the server")
    if (folder / "results").exists():
        problems.append("an output folder was written")
    if list(folder.rglob("scan.json")):
        problems.append("scan.json was written: the scan ran before the tracking check")
    if (folder / "mlruns").exists():
        problems.append("a local mlruns/ store was created")
    return _result(run, (4,), problems, notes="no results/, no scan.json: refused before "
                   "training")


class StalledServer:
    """An HTTP server on 127.0.0.1 in a thread: ``/health`` answers 200, every other path is
    read and never answered (until the server stops, or ``stall_s`` at the latest)."""

    def __init__(self, stall_s: float = DEADLINE_S + 30) -> None:
        release = threading.Event()
        self.api_requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if self.path.rstrip("/") == "/health":
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                    return
                outer.api_requests += 1
                release.wait(stall_s)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._release = release
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StalledServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def _gate_stalled_server(folder: Path) -> ProbeResult:
    import json

    with StalledServer() as server:
        argv = ["gate", "--model-name", bi.MODEL, "--model-version", "1", "--run-id",
                bi.UNKNOWN_RUN, "--tracking-uri", server.url]
        finished, run, seconds = rm.call_bounded(lambda: _cli(argv, folder), DEADLINE_S)
        requests = server.api_requests
    if not finished:
        return ProbeResult("hang", f"no answer after {seconds:.0f} s",
                           [f"the gate did not return within {DEADLINE_S:.0f} s"], seconds)
    if isinstance(run, BaseException):
        raise run
    problems = []
    try:
        decision = json.loads(run.stdout)
    except ValueError:
        decision = {"reasons": [run.stderr]}
        problems.append("no JSON decision printed")
    reasons = "; ".join(decision.get("reasons", []))
    if decision.get("outcome") != "unavailable" or decision.get("promoted"):
        problems.append(f"decision {decision.get('outcome')!r}, expected 'unavailable'")
    if server.url not in reasons:
        problems.append("the reasons do not name the server")
    if requests == 0:
        problems.append("the gate never reached the stalled API")
    result = _result(run, (4,), problems, message=reasons,
                     notes=f"returned after {seconds:.1f} s ({requests} stalled API "
                           f"request(s)); deadline {DEADLINE_S:.0f} s")
    result.seconds = seconds
    return result


# ----------------------------------------------------------------------------- inputs


def _long_texts(folder: Path) -> ProbeResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    words = [np.array([f"good{i}" for i in range(40)]), np.array([f"bad{i}" for i in range(40)])]
    labels = [i % 2 for i in range(60)]
    texts = [" ".join(rng.choice(words[label], size=300)) for label in labels]  # > 256 tokens
    pq.write_table(pa.table({"text": pa.array(texts, pa.string()),
                             "label": pa.array(labels, pa.int64())}), folder / "reviews.parquet")
    run = _cli(_scan_argv("reviews.parquet", "results", "--no-mlflow", "--no-report"), folder,
               warnings_action="default")
    problems = []
    if "--max-tokens" not in run.stderr:
        problems.append("no warning naming --max-tokens")
    if not (folder / "results" / "scan.json").is_file():
        problems.append("no results/scan.json: the scan did not complete")
    warning = _one_line(run.stderr, r"--max-tokens")
    warning = warning[warning.find("TextTruncationWarning"):]
    return _result(run, (0, 3), problems, message=warning,
                   notes="scan completed (results/scan.json)")


def _rgba_pngs(folder: Path) -> ProbeResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dataset = three_class_digits()
    blobs = []
    for image in dataset.images:
        gray = np.rint(image[0] * 255).astype(np.uint8)
        alpha = np.full_like(gray, 200)
        blobs.append(bi._png(np.stack([gray, gray, gray, alpha], axis=-1)))  # mode RGBA
    pq.write_table(pa.table({"image": pa.array(blobs, pa.binary()),
                             "label": pa.array(dataset.labels, pa.int64())}),
                   folder / "rgba.parquet")
    run = _cli(_scan_argv("rgba.parquet", "results", "--no-mlflow"), folder)
    problems = []
    for name in ("report.html", "scan.json", "samples.parquet"):
        if not (folder / "results" / name).is_file():
            problems.append(f"no results/{name}")
    return _result(run, (0, 3), problems, message=_one_line(run.stdout, r"^verdict"),
                   notes="results/report.html, scan.json, samples.parquet written")


CASES: tuple[ProbeCase, ...] = (
    ProbeCase("scan-into-data-folder",
              "acgate scan data/train.parquet --out data/  (data/ also holds README.md)",
              "exit 2; data/ byte-identical (train.parquet and README.md kept)",
              _scan_into_data_folder),
    ProbeCase("detect-into-activations-folder",
              "acgate detect acts/run.activations.parquet --out acts",
              "exit 2; nothing changed", _detect_into_activations_folder),
    ProbeCase("detect-into-cwd", 'acgate detect acts.parquet --out "$PWD"  (cwd holds files)',
              "exit 2; nothing changed", _detect_into_cwd),
    ProbeCase("repair-into-scan-folder",
              "acgate repair train.parquet --samples scan/samples.parquet --out scan",
              "exit 2; the scan folder unchanged", _repair_into_scan_folder),
    ProbeCase("out-dotdot", "acgate detect acts.parquet --out sub/..",
              "exit 2 (it is the working folder); nothing changed", _out_dotdot),
    ProbeCase("poison-onto-itself", "acgate poison ds.parquet --out ds.parquet",
              "exit 2; ds.parquet unchanged", _poison_onto_itself),
    ProbeCase("out-existing-file", "acgate detect acts.parquet --out notes.txt",
              "exit 2; notes.txt unchanged", _out_existing_file),
    ProbeCase("foreign-folder", "acgate detect acts.parquet --out results  (results/ holds "
              "mine.txt)", "exit 2; results/ and every other file unchanged",
              _detect_into_foreign_folder),
    ProbeCase("foreign-folder-overwrite", "acgate detect acts.parquet --out results "
              "--overwrite  (results/ holds mine.txt)",
              "exit 0; outputs written, mine.txt kept", _detect_into_foreign_folder_overwrite),
    ProbeCase("second-writer", "acgate detect acts.parquet --out results  (while another "
              "acgate process writes results/)",
              "exit 2 'being written by another acgate process'; the first writer's output "
              "alone", _second_writer),
    ProbeCase("class-of-3", "acgate detect acts.parquet --out results  (class 2 has 3 rows)",
              "exit 5 (incomplete)", _class_of_three(allow_skipped=False)),
    ProbeCase("class-of-3-allow-skipped",
              "acgate detect acts.parquet --out results --allow-skipped  (class 2 has 3 rows)",
              "exit 0", _class_of_three(allow_skipped=True)),
    ProbeCase("scan-tracking-unreachable",
              "acgate scan train.parquet --out results --tracking-uri "
              "http://127.0.0.1:<closed port>",
              "exit 4 before training; no output folder, no scan.json",
              _scan_tracking_unreachable),
    ProbeCase("gate-stalled-server",
              "acgate gate ... --tracking-uri http://127.0.0.1:<port>  (/health answers 200, "
              "the API never answers)",
              f"exit 4 (unavailable) within {DEADLINE_S:.0f} s", _gate_stalled_server),
    ProbeCase("long-texts", "acgate scan reviews.parquet --out results  (texts of 300 tokens; "
              "cap 256)", "scan completes (exit 0 or 3); a warning naming --max-tokens",
              _long_texts),
    ProbeCase("rgba-pngs", "acgate scan rgba.parquet --out results  (RGBA PNG images)",
              "scan completes (exit 0 or 3; converted to RGB); report written", _rgba_pngs),
)

CASES_BY_NAME = {case.name: case for case in CASES}


def run_case(name: str, folder: Path) -> ProbeResult:
    """Run one probe case in ``folder`` (created when missing); paths in the message are made
    relative to it."""
    folder.mkdir(parents=True, exist_ok=True)
    result = CASES_BY_NAME[name].run(folder)
    for base in (str(folder.resolve()), str(folder)):
        result.message = result.message.replace(f"{base}/", "").replace(base, ".")
    return result
