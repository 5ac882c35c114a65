"""``scale``: wall time and peak RSS of detection on synthetic activations, 60k to 1M rows.

Each size runs in fresh subprocesses (``bench/run.py --scale-child ROWS`` for ``detect()`` in
memory, ``bench/run.py --stream-child PARQUET OUT`` for ``acgate detect`` streamed from
Parquet), so one size's memory does not count towards the next.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BENCH_DIR, BenchSettings, markdown_table, peak_rss_kib, table_header
from bench.synthetic import synthetic_activations, write_streamed_activations

SIZES = (60_000, 200_000, 1_000_000)
QUICK_SIZES = (60_000,)
#: The entry point whose hidden ``--scale-child`` / ``--stream-child`` flags run the children.
CHILD_SCRIPT = BENCH_DIR / "run.py"


def scale_child(n_rows: int) -> None:
    """Measure one size in this (fresh) process; prints one JSON line."""
    from acgate.core import flag_metrics
    from acgate.core.detect import detect

    activations, labels, truth = synthetic_activations(n_rows)
    rss_data = peak_rss_kib()
    start = time.perf_counter()
    result = detect(activations, labels, analysis="size-silhouette")
    seconds = time.perf_counter() - start
    rss_peak = peak_rss_kib()
    rusage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    f1 = flag_metrics(result, truth)["overall"]["f1"]
    print(json.dumps({"rows": n_rows, "seconds": seconds, "rss_after_data_kib": rss_data,
                      "rss_peak_kib": rss_peak, "ru_maxrss_kib": rusage, "f1": f1}))


def stream_child(activations_path: str, out_dir: str) -> None:
    """Run ``acgate detect`` on a Parquet file in this (fresh) process; print one JSON line."""
    from acgate.cli import main as cli_main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["detect", activations_path, "--out", out_dir,
                         "--analysis", "size-silhouette"])
    seconds = time.perf_counter() - start
    print(json.dumps({"exit": code, "seconds": seconds, "rss_peak_kib": peak_rss_kib()}))


def _child(*args: str) -> dict[str, Any]:
    """Run one measurement child; its last stdout line (JSON)."""
    completed = subprocess.run(  # noqa: S603 - our own entry point, fixed arguments
        [sys.executable, str(CHILD_SCRIPT), *args], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _streamed_row(n_rows: int) -> list[Any]:
    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="acgate-bench-stream-"))
    try:
        path = work / "activations.parquet"
        truth = write_streamed_activations(n_rows, path)
        m = _child("--stream-child", str(path), str(work / "out"))
        flagged = pq.read_table(work / "out" / "flagged.parquet").column("index").to_numpy()
        predicted = np.zeros(n_rows, dtype=bool)
        predicted[flagged] = True
        tp = int((predicted & truth).sum())
        precision, recall = tp / max(int(predicted.sum()), 1), tp / max(int(truth.sum()), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        return [f"{n_rows:,}", "streamed: `acgate detect` on Parquet", m["seconds"],
                f"{path.stat().st_size / 2**20:.0f} MiB file", f"{m['rss_peak_kib'] / 1024:.0f}",
                "-", f1]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def section(settings: BenchSettings) -> str:
    """Wall time and peak RSS of detect(size-silhouette) on synthetic activations."""
    rows = []
    for n_rows in QUICK_SIZES if settings.quick else SIZES:
        m = _child("--scale-child", str(n_rows))
        rows.append([f"{n_rows:,}", "in memory: `detect()`", m["seconds"],
                     f"{m['rss_after_data_kib'] / 1024:.0f}",
                     f"{m['rss_peak_kib'] / 1024:.0f}", f"{m['ru_maxrss_kib'] / 1024:.0f}",
                     m["f1"]])
        rows.append(_streamed_row(n_rows))
    low = [r[0] for r in rows if r[-1] < 0.9]
    warning = (f"\n**F1 below 0.9 at {', '.join(low)} rows** (same generator at every size).\n"
               if low else "")
    streamed_1m = [r for r in rows if r[0] == "1,000,000" and r[1].startswith("streamed")]
    if streamed_1m:
        peak_mib = float(streamed_1m[0][4])
        verdict = "met" if peak_mib <= 1536 else "**MISSED**"
        warning += (f"\nTarget from the issue: peak RSS of `acgate detect` at 1M x 128 streamed "
                    f"from Parquet <= 1.5 GB -> {verdict} ({peak_mib:.0f} MiB, process "
                    "included: Python, numpy, scikit-learn, pyarrow).\n")
    return ("## scale (synthetic activations, detect(analysis='size-silhouette'))\n\n"
            "128-d float32, 10 classes, 5% planted poison per class (a Gaussian shifted by 6 "
            "units). One fresh subprocess per size; RSS = the process's peak (Linux `VmHWM`) "
            "after generating the data and after detect (includes the data). `ru_maxrss` is "
            "shown too but is inherited from the parent across fork + exec, so it overstates "
            "the child when the parent is large. Above 250,000 rows a class is clustered with "
            "MiniBatchKMeans refined by full KMeans "
            "(`acgate.core.clustering.MINIBATCH_CUTOFF`).\n\n"
            + table_header(settings) + "\n"
            + markdown_table(["rows", "path", "detect seconds", "RSS after data (MiB)",
                              "peak RSS (MiB)", "ru_maxrss (MiB)", "F1"], rows) + warning)
