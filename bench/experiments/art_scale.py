"""``art_scale``: IBM ART 1.20.1's ``ActivationDefence`` vs acgate's ``detect`` at scale.

Run by ``python bench/run.py --only art_scale``; needs the ``bench`` extra
(``pip install --no-deps adversarial-robustness-toolbox==1.20.1``). Both tools analyse the SAME
synthetic activations (:func:`bench.synthetic.synthetic_activations`: 128-d float32, 10
classes, 5% planted poison) at 60k, 200k and 1M rows (``--quick``: 60k only).

* ART as a user calls it on given activations: its defaults (PCA 10, KMeans k = 2, cluster
  analysis ``smaller``), ``np.random.seed(0)`` first (ART passes no seed). A tiny
  ``nn.Linear(1, 10)`` in a ``PyTorchClassifier`` stands in for the model (ART wants one; it
  is never called because the activations are handed over). Timed: ``ActivationDefence(...)``,
  ART's own ``_segment_by_class`` of the given activations, ``detect_poison()``.
* acgate: ``detect(activations, labels, analysis="size-silhouette", random_state=0)`` (no
  retrain, like ART). Timed: that call.

Every (tool, size, repeat) runs in a fresh subprocess
(``python -m bench.experiments.art_scale --child TOOL ROWS``) that generates the
data (not timed), times the detection call alone and prints one JSON line: seconds, peak RSS
(Linux ``VmHWM``), RSS just before detection, precision / recall / F1 against the planted truth.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.art_compat import patch_art_for_numpy2
from bench.common import (
    REPO_DIR,
    BenchSettings,
    markdown_table,
    peak_rss_kib,
    status_kib,
    table_header,
)
from bench.synthetic import synthetic_activations

SIZES = (60_000, 200_000, 1_000_000)
QUICK_SIZES = (60_000,)
#: Fresh subprocesses per cell: the median of 3 below 1M rows, one run at 1M.
REPEATS_SMALL = 3
REPEATS_LARGE = 1
LARGE_ROWS = 1_000_000
TIMEOUT_S = 600
#: The module the measurement children run (``python -m``, from the repository root).
CHILD_MODULE = "bench.experiments.art_scale"
#: The parent passes its thread count to the children through this variable.
THREADS_ENV = "ACGATE_BENCH_THREADS"
TOOLS = ("art", "acgate")
TOOL_NAMES = {
    "art": "ART 1.20.1 `ActivationDefence` defaults (PCA 10, KMeans 2, `smaller`)",
    "acgate": "acgate `detect(analysis='size-silhouette')`",
}
#: The issue's targets: speed-up of acgate over ART at a number of rows.
TARGETS = ((60_000, 5.0, True), (1_000_000, 20.0, False))  # (rows, speed-up, F1 must match)


# ----------------------------------------------------------------------------- child side


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: ``5`` to ``/proc/self/clear_refs``).

    Without it the detection's peak would hide under the data generator's own transient peak
    (``synthetic_activations`` briefly holds two copies of the array).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _art_call(activations: np.ndarray, labels: np.ndarray,
              threads: int) -> Callable[[], np.ndarray]:
    """ART's detection on given activations, handed over as the ``art`` experiment does."""
    import torch
    from art.defences.detector.poison import ActivationDefence
    from art.estimators.classification import PyTorchClassifier

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    classifier = PyTorchClassifier(model=torch.nn.Linear(1, 10),
                                   loss=torch.nn.CrossEntropyLoss(), input_shape=(1,),
                                   nb_classes=10, device_type="cpu")
    x_train = np.zeros((len(labels), 1), dtype=np.float32)
    y_train = np.asarray(labels, dtype=np.int64)
    patch_art_for_numpy2()

    def call() -> np.ndarray:
        defence = ActivationDefence(classifier, x_train, y_train)
        defence.activations_by_class = defence._segment_by_class(activations, y_train)
        _, is_clean = defence.detect_poison()
        return np.asarray(is_clean) == 0

    return call


def _acgate_call(activations: np.ndarray, labels: np.ndarray) -> Callable[[], np.ndarray]:
    """The ``detect`` of acgate without a retrain (the analysis comparable to ART's)."""
    from acgate.core.detect import detect

    def call() -> np.ndarray:
        result = detect(activations, labels, analysis="size-silhouette", random_state=0)
        return np.asarray(result.is_poison, dtype=bool)

    return call


def _scores(flags: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of ``flags`` against ``truth`` (0 where undefined)."""
    tp = int((flags & truth).sum())
    precision = tp / int(flags.sum()) if flags.any() else 0.0
    recall = tp / int(truth.sum()) if truth.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_flagged": int(flags.sum())}


def child(tool: str, n_rows: int) -> dict[str, Any]:
    """Measure one tool at one size in this (fresh) process.

    Args:
        tool: ``"art"`` or ``"acgate"``.
        n_rows: Rows of synthetic activations.

    Returns:
        seconds; RSS in KiB: ``rss_after_data`` (high-water mark after imports + data),
        ``rss_before`` (resident just before detection), ``rss_peak_detect`` (high-water mark
        during detection, reset just before it when ``peak_reset``), ``rss_peak`` (the
        process's); precision / recall / F1.
    """
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")
    threads = int(os.environ.get(THREADS_ENV, "1"))
    activations, labels, truth = synthetic_activations(n_rows)
    if tool == "art":
        call = _art_call(activations, labels, threads)
    else:
        call = _acgate_call(activations, labels)
    rss_after_data = peak_rss_kib()
    rss_before = status_kib("VmRSS") or rss_after_data
    reset = _reset_peak_rss()
    np.random.seed(0)  # ART's KMeans / PCA draw from the global generator
    start = time.perf_counter()
    flags = call()
    seconds = time.perf_counter() - start
    rss_detect = peak_rss_kib()
    return {"tool": tool, "rows": n_rows, "seconds": seconds,
            "rss_after_data_kib": rss_after_data, "rss_before_kib": rss_before,
            "rss_peak_detect_kib": rss_detect, "peak_reset": reset,
            "rss_peak_kib": max(rss_after_data, rss_detect),
            **_scores(flags, np.asarray(truth, dtype=bool))}


def main(argv: list[str] | None = None) -> int:
    """The child's entry point: ``--child TOOL ROWS`` prints one JSON line."""
    parser = argparse.ArgumentParser(description="One art_scale measurement (a child process).")
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "ROWS"), required=True,
                        help="tool (art or acgate) and number of rows")
    args = parser.parse_args(argv)
    tool, rows = args.child[0], int(args.child[1])
    try:
        measured = child(tool, rows)
    except Exception as error:  # noqa: BLE001 - reported to the parent as a crash
        traceback.print_exc()
        first = (str(error).splitlines() or [""])[0][:200]
        print(json.dumps({"error": f"{type(error).__name__}: {first}"}), flush=True)
        return 1
    print(json.dumps(measured), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent side


def _run_child(tool: str, n_rows: int, threads: int) -> dict[str, Any]:
    """One fresh subprocess; its JSON, or ``{"error": ...}`` on a timeout or a crash."""
    env = {**os.environ, THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    try:
        completed = subprocess.run(  # noqa: S603 - this script, fixed arguments
            [sys.executable, "-m", CHILD_MODULE, "--child", tool, str(n_rows)],
            timeout=TIMEOUT_S, capture_output=True, text=True, env=env, cwd=REPO_DIR)
    except subprocess.TimeoutExpired:
        return {"error": f"> {TIMEOUT_S} s (killed)", "timeout": True}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if lines:
        measured = json.loads(lines[-1])
        if completed.returncode == 0 or "error" in measured:
            return measured
    stderr = [line for line in completed.stderr.splitlines() if line.strip()]
    if completed.returncode < 0:
        reason = f"killed by signal {-completed.returncode}"
    else:
        reason = stderr[-1][:200] if stderr else f"exit code {completed.returncode}"
    return {"error": reason}


def _cell(tool: str, n_rows: int, threads: int) -> dict[str, Any]:
    """All runs of one (tool, size) cell; stops at the first timeout or crash."""
    repeats = REPEATS_LARGE if n_rows >= LARGE_ROWS else REPEATS_SMALL
    runs: list[dict[str, Any]] = []
    for _ in range(repeats):
        measured = _run_child(tool, n_rows, threads)
        if "error" in measured:
            print(f"art_scale {tool} {n_rows:,}: {measured['error']}", flush=True)
            return {"error": measured["error"], "timeout": measured.get("timeout", False),
                    "runs": runs}
        print(f"art_scale {tool} {n_rows:,}: {measured['seconds']:.2f} s, before "
              f"{measured['rss_before_kib'] / 1024:.0f} MiB, peak in detection "
              f"{measured['rss_peak_detect_kib'] / 1024:.0f} MiB, process peak "
              f"{measured['rss_peak_kib'] / 1024:.0f} MiB, F1 {measured['f1']:.3f}", flush=True)
        runs.append(measured)
    return {"runs": runs, "median": statistics.median(r["seconds"] for r in runs),
            "f1": [r["f1"] for r in runs], "precision": runs[0]["precision"],
            "recall": runs[0]["recall"], "peak_reset": all(r["peak_reset"] for r in runs),
            **{f"{key}_mib": max(r[f"{key}_kib"] for r in runs) / 1024
               for key in ("rss_before", "rss_peak_detect", "rss_peak")}}


def _speedup(art: dict[str, Any], ours: dict[str, Any]) -> tuple[float | None, str]:
    """ART seconds / acgate seconds (a lower bound when ART was killed), and its cell text."""
    if "error" in ours:
        return None, "-"
    if "error" in art:
        if art.get("timeout"):
            bound = TIMEOUT_S / ours["median"]
            return bound, f"> {bound:.0f}x (ART killed)"
        return None, "- (ART crashed)"
    ratio = art["median"] / ours["median"]
    return ratio, f"{ratio:.2f}x" if ratio < 1 else f"{ratio:.1f}x"


def _f1_text(cell: dict[str, Any]) -> str:
    """F1 of the runs (one value when they agree to 3 decimals, else the range)."""
    values = sorted({round(f, 3) for f in cell["f1"]})
    return f"{values[0]:.3f}" if len(values) == 1 else f"{values[0]:.3f}-{values[-1]:.3f}"


def _row(n_rows: int, tool: str, cell: dict[str, Any], speedup: str) -> list[Any]:
    """One table row."""
    if "error" in cell:
        status = "killed" if cell.get("timeout") else "crash"
        return [f"{n_rows:,}", TOOL_NAMES[tool], cell["error"], "-", "-", "-", "-", status,
                status, status, speedup]
    runs = ", ".join(f"{r['seconds']:.2f}" for r in cell["runs"])
    return [f"{n_rows:,}", TOOL_NAMES[tool], f"{cell['median']:.2f}",
            f"{len(cell['runs'])}: {runs}", f"{cell['rss_before_mib']:.0f}",
            f"{cell['rss_peak_detect_mib']:.0f}" + ("" if cell["peak_reset"] else " (not reset)"),
            f"{cell['rss_peak_mib']:.0f}", cell["precision"], cell["recall"], _f1_text(cell),
            speedup]


def _verdicts(cells: dict[tuple[str, int], dict[str, Any]], sizes: tuple[int, ...]) -> str:
    """The issue's targets, each met / MISSED / not measured."""
    lines = []
    for n_rows, wanted, f1_too in TARGETS:
        label = (f"acgate >= {wanted:.0f}x faster than ART at {n_rows:,} rows"
                 + (" with equal or better F1" if f1_too else ""))
        if n_rows not in sizes:
            lines.append(f"- {label} -> not measured (`--quick` runs 60,000 rows only)")
            continue
        art, ours = cells[("art", n_rows)], cells[("acgate", n_rows)]
        ratio, text = _speedup(art, ours)
        if ratio is None:
            lines.append(f"- {label} -> not decided ({text.strip('- ()') or 'acgate failed'})")
            continue
        met: bool | None = ratio >= wanted
        detail = f"speed-up {text}"
        if f1_too:
            if "f1" in art:
                met = met and min(ours["f1"]) >= min(art["f1"]) - 1e-9
                detail += f"; F1 acgate {min(ours['f1']):.4f} vs ART {min(art['f1']):.4f}"
            else:
                met = None if met else False
                detail += "; ART has no F1 to compare"
        verdict = {True: "met", False: "**MISSED**", None: "not decided"}[met]
        lines.append(f"- {label} -> {verdict} ({detail})")
    return "\n".join(lines) + "\n"


def section(settings: BenchSettings) -> str:
    """The timing table: ART vs acgate on synthetic activations at each size.

    Args:
        settings: ``quick`` (60k rows only) and ``threads`` (the children's threads).

    Returns:
        The Markdown section ``## art_scale (...)``.
    """
    import art
    import torch

    from acgate.core.clustering import SILHOUETTE_SAMPLE_SIZE

    torch.set_num_threads(settings.threads)  # the machine line reports the parent's threads
    sizes = QUICK_SIZES if settings.quick else SIZES
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    rows: list[list[Any]] = []
    for n_rows in sizes:
        for tool in TOOLS:
            cells[(tool, n_rows)] = _cell(tool, n_rows, settings.threads)
        art_cell, ours = cells[("art", n_rows)], cells[("acgate", n_rows)]
        rows.append(_row(n_rows, "art", art_cell, "-"))
        rows.append(_row(n_rows, "acgate", ours, _speedup(art_cell, ours)[1]))
    return (
        "## art_scale (IBM ART ActivationDefence vs acgate detect, synthetic activations "
        "60k / 200k / 1M)\n\n"
        f"ART {art.__version__} (`adversarial-robustness-toolbox`, the `bench` extra) with "
        "`bench.art_compat.patch_art_for_numpy2()` applied (without it ART's `smaller` analysis "
        f"raises on numpy {np.__version__}). Both tools get the same synthetic activations "
        "(`synthetic_activations`: 128-d float32, 10 classes, 5% planted poison per class "
        "shifted by 6 units, seed 0). Timed, with `time.perf_counter` around the detection "
        "call alone (data generation and imports not timed):\n\n"
        "- ART: `ActivationDefence(classifier, x_train, y_train)` + ART's own "
        "`_segment_by_class` of the given activations (assigned to its public "
        "`activations_by_class`, so ART skips its forward pass) + `detect_poison()` with its "
        "defaults (PCA to 10 dims, KMeans k = 2, `cluster_analysis='smaller'`); "
        "`np.random.seed(0)` first (ART passes no seed). The classifier is a stand-in "
        "`nn.Linear(1, 10)` in `PyTorchClassifier(device_type='cpu')` and `x_train` is "
        "`zeros((n, 1))`: ART requires both, neither is used for given activations.\n"
        "- acgate: `detect(activations, labels, analysis='size-silhouette', "
        "random_state=0)` (no retrain, like ART).\n\n"
        "ART's `smaller` analysis flags the smaller k-means cluster of EVERY class "
        "unconditionally (`clustering_analyzer.analyze_by_size`: no size or silhouette cut), "
        "so this data, where every class carries 5% poison, is its best case; on an "
        "unpoisoned class it still flags a cluster. acgate's `size-silhouette` also computes a "
        f"silhouette per class (on a seeded {SILHOUETTE_SAMPLE_SIZE:,}-point sample), which "
        "ART's `smaller` skips.\n\n"
        f"Each run is a fresh subprocess ({settings.threads} thread(s): `OMP_NUM_THREADS`, "
        "torch); seconds = median of "
        f"{REPEATS_SMALL} runs below {LARGE_ROWS:,} rows, {REPEATS_LARGE} run at "
        f"{LARGE_ROWS:,}; a run over {TIMEOUT_S} s is killed. Memory in MiB, the highest "
        "over the runs: RSS before detection = resident (`VmRSS`) after imports, data and "
        "(ART) the stand-in classifier, so the ART process also holds torch; peak during "
        "detection = `VmHWM` reset (`/proc/self/clear_refs`) just before the call and read "
        "after it, resident data and imports included; process peak = the whole child's "
        "`VmHWM`, which also counts the data generator's transient second copy of the array "
        "(about 1 GiB at 1M rows). Speed-up = ART median seconds / acgate median "
        "seconds.\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["rows", "tool", "detection seconds (median)", "runs (s)",
                          "RSS before detection (MiB)", "peak RSS during detection (MiB)",
                          "process peak RSS (MiB)", "precision",
                          "recall", "F1", "speed-up (ART / acgate)"], rows)
        + "\nTargets from the issue:\n\n" + _verdicts(cells, sizes))


if __name__ == "__main__":
    sys.exit(main())
