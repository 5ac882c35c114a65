"""``one_flow``: ``acgate scan`` and the Kubeflow pipeline run locally, on the same data.

Run by ``python bench/run.py --only one_flow``. Both are started as the user starts them, in a
fresh process: ``acgate --torch-threads T scan DATA --no-mlflow --no-report`` and ``python
pipeline.py run --dataset DATA`` (kfp's ``SubprocessRunner``: every step is its own Python
process, the per-class ``cluster`` steps run one after another; the steps pin torch to
``$ACGATE_TORCH_THREADS`` = T). Reported: wall seconds of each, their ratio (issue 17's target:
the pipeline within 1.5x of the CLI), and whether they flag exactly the same rows (SHA-256 of
the sorted flagged row ids). Poisoned data takes the pipeline's repair branch, so the CLI side is
``acgate scan`` followed by ``acgate repair`` (the same work).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

REPO = Path(__file__).resolve().parents[2]
#: (label, dataset builder name, seed).
CELLS: tuple[tuple[str, str, int], ...] = (
    ("digits, BadNets all-to-all 33%", "digits-33", 0),
    ("MNIST 20k, BadNets all-to-one 1%", "mnist-a2o-1", 0),
)


def _dataset(kind: str, seed: int) -> Any:
    from bench.experiments import attack_matrix

    name = {"digits-33": "digits/patch-a2a-33pct", "mnist-a2o-1": "mnist/patch-a2o-1pct"}[kind]
    case = {c.name: c for c in attack_matrix.all_cases()}[name]
    return attack_matrix.build_dataset(case, seed, attack_matrix.DEFAULT_ROWS)


def _digest(ids: np.ndarray) -> str:
    text = json.dumps(sorted(int(i) for i in ids))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    clock = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - clock
    if proc.returncode not in (0, 3):  # 3: poison found
        raise RuntimeError(f"{argv[:3]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds, proc


def _steps(root: Path) -> int:
    """How many steps the local run executed (one ``executor_output.json`` per task)."""
    return sum(1 for _ in root.rglob("executor_output.json"))


def one_cell(kind: str, seed: int, threads: int) -> dict[str, Any]:
    """Both paths on one dataset: seconds and flagged-row digests."""
    import pandas as pd

    from acgate.io.datasets import write_image_dataset

    env = dict(os.environ, ACGATE_TORCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="acgate-one-flow-") as work:
        data = write_image_dataset(_dataset(kind, seed), Path(work) / "data.parquet")
        cli_seconds, _ = _timed(
            [sys.executable, "-m", "acgate.cli", "--torch-threads", str(threads), "scan",
             str(data), "--out", str(Path(work) / "scan"), "--no-mlflow", "--no-report",
             "--seed", str(seed)], env)
        flagged = pd.read_parquet(Path(work) / "scan" / "flagged.parquet")["index"].to_numpy()
        # The pipeline's poisoned branch also repairs (locally with the resolved proxy epochs,
        # see pipeline._with_every_optional_input): the CLI does the same work.
        from acgate.io.schema import open_parquet
        from acgate.scan import ScanConfig

        epochs = ScanConfig().resolved_epochs(open_parquet(data).metadata.num_rows)
        repair_seconds, _ = _timed(
            [sys.executable, "-m", "acgate.cli", "--torch-threads", str(threads), "repair",
             str(data), "--samples", str(Path(work) / "scan" / "samples.parquet"), "--model",
             str(Path(work) / "scan" / "model.pt"), "--out", str(Path(work) / "repair"),
             "--seed", str(seed), "--epochs", str(epochs)], env)
        pipe_seconds, proc = _timed(
            [sys.executable, "pipeline.py", "run", "--dataset", str(data), "--root",
             str(Path(work) / "root"), "--seed", str(seed)], env)
        # pipeline.py run prints its outputs last, after the steps' logs.
        outputs = json.loads(proc.stdout[proc.stdout.rindex('{\n  "verdict"'):])
        samples = pd.read_parquet(outputs["samples"])
        piped = samples["index"][samples["is_poison"]].to_numpy()
        steps = _steps(Path(work) / "root")
    return {"cli_seconds": cli_seconds, "repair_seconds": repair_seconds,
            "pipeline_seconds": pipe_seconds, "steps": steps,
            "cli_flags": len(flagged), "pipeline_flags": len(piped),
            "cli_digest": _digest(flagged), "pipeline_digest": _digest(piped)}


def section(settings: BenchSettings) -> str:
    """One row per dataset: CLI and pipeline wall time, ratio, same flags."""
    rows = []
    for label, kind, seed in CELLS[:1] if settings.quick else CELLS:
        cell = one_cell(kind, seed, settings.threads)
        cli = cell["cli_seconds"] + cell["repair_seconds"]
        ratio = cell["pipeline_seconds"] / cli
        same = cell["cli_digest"] == cell["pipeline_digest"]
        rows.append([label, seed, f"{cell['cli_seconds']:.1f}", f"{cell['repair_seconds']:.1f}",
                     f"{cell['pipeline_seconds']:.1f}", cell["steps"], f"{ratio:.2f}",
                     "yes" if ratio <= 1.5 else "no",
                     f"{cell['cli_flags']} / {cell['pipeline_flags']}",
                     f"{'yes' if same else 'NO'} ({cell['cli_digest']})"])
    table = markdown_table(
        ["data", "seed", "acgate scan s", "acgate repair s", "pipeline.py run s", "steps",
         "ratio to scan + repair", "<= 1.5x", "flagged (CLI / pipeline)",
         "same rows (digest)"], rows)
    return (f"## one_flow\n\n`acgate scan` and `python pipeline.py run` (kfp local "
            f"SubprocessRunner) on the same file, each in a fresh process, torch threads "
            f"{settings.threads}, no MLflow, no report (module docstring of "
            f"`bench/experiments/one_flow.py`).\n\n{table_header(settings)}\n{table}")
