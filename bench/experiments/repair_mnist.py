"""``repair_mnist``: the paper's Table 4 analogue (backdoor repair) on real MNIST at 33% poison.

Run by ``python bench/run.py --only repair_mnist``. Scans the poisoned MNIST file with
``acgate.scan.run_scan`` (default scan, no MLflow, no HTML report), then repairs it with
``acgate.repair.run_repair`` twice (``relabel``, ``remove``) starting from the scanned proxy
(``model.pt``), and measures clean test error and attack success on the MNIST test split.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

RATE = 0.33
#: Upper bound of the relabel fine-tuning epochs (the library default is 50; 2 shared cores).
MAX_EPOCHS = int(os.environ.get("ACGATE_BENCH_REPAIR_MAX_EPOCHS", "50"))


def _row(name: str, backdoor: dict[str, Any], epochs: Any, converged: Any, seconds: Any,
         n_trained: Any) -> list[Any]:
    asr = backdoor["attack_success_rate"]
    return [name, 1.0 - backdoor["clean_accuracy"], asr, epochs, converged, seconds, n_trained]


def section(settings: BenchSettings) -> str:
    """Scan 33%-poisoned MNIST, repair it with relabel and remove, measure before / after."""
    work = Path(tempfile.mkdtemp(prefix="acgate-bench-repair-"))
    try:
        return _run(settings, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(settings: BenchSettings, work: Path) -> str:
    import torch

    from acgate.core import flag_metrics
    from acgate.io.datasets import write_image_dataset
    from acgate.io.loaders import load_mnist
    from acgate.io.poison import poison_image_dataset
    from acgate.repair import run_repair
    from acgate.scan import ScanConfig, run_scan

    torch.set_num_threads(settings.threads)
    dataset = poison_image_dataset(load_mnist(), rate=RATE, seed=0)
    truth = np.asarray(dataset.columns["is_poison"], dtype=bool)
    data_path = write_image_dataset(dataset, work / "poisoned.parquet")
    test_path = write_image_dataset(load_mnist(split="test"), work / "test.parquet")
    clock = time.perf_counter()
    scan = run_scan(data_path, work / "scan", ScanConfig(seed=0), tracking_uri=None,
                    report=False)
    scan_seconds = time.perf_counter() - clock
    metrics = flag_metrics(scan.result, truth)["overall"]
    print(f"repair_mnist: scan {scan_seconds:.1f} s, F1 {metrics['f1']:.3f}", flush=True)
    rows: list[list[Any]] = []
    before = None
    for strategy in ("relabel", "remove"):
        clock = time.perf_counter()
        outcome = run_repair(data_path, scan.out_dir / "samples.parquet",
                             model_path=scan.out_dir / "model.pt",
                             out_dir=work / f"repair-{strategy}", strategy=strategy, seed=0,
                             max_epochs=MAX_EPOCHS, test_dataset_path=test_path)
        report = outcome.report
        print(f"repair_mnist: {strategy} {time.perf_counter() - clock:.1f} s: "
              f"{report['backdoor']}", flush=True)
        if before is None:
            before = report["backdoor"]["before"]
            rows.append(_row("before repair (scanned proxy, 2 epochs)", before, 2, "-",
                             scan.timings.get("train_proxy", float("nan")), len(dataset)))
        converged = report.get("converged")
        rows.append(_row(strategy, report["backdoor"]["after"], report["epochs"],
                         "-" if converged is None else str(converged),
                         report["timings"]["repair_training"], report["n_trained_on"]))
        counts = (f"{report['n_flagged']} flagged, {report['n_relabelled']} relabelled, "
                  f"{report['n_removed']} removed")
        rows[-1][0] = f"{strategy} ({counts})"
    n_poison = int(truth.sum())
    return ("## repair_mnist (real MNIST 60k, BadNets 33% all-to-all: the paper's Table 4 "
            "analogue)\n\n"
            f"Poisoned training set: {len(dataset)} rows, {n_poison} poisoned (l -> l+1). "
            f"Scan: `run_scan(..., ScanConfig(seed=0), tracking_uri=None, report=False)` "
            f"(default scan, 2 epochs) in {scan_seconds:.0f} s: precision "
            f"{metrics['precision']:.3f}, recall {metrics['recall']:.3f}, F1 "
            f"{metrics['f1']:.3f}. Each repair starts from the scanned proxy (`model.pt`): "
            "`relabel` fine-tunes it on the flagged rows given their suspected source plus a "
            "replay of every kept row (library defaults: replay_fraction 1.0, until the "
            f"epoch loss changes by < 1e-3 twice in a row, at most {MAX_EPOCHS} epochs); "
            "`remove` trains a fresh proxy (2 epochs) without the flagged rows. Test set: the "
            "10,000 MNIST test images; clean error = 1 - accuracy on them; attack success = "
            "share of triggered test images of each source class classified as its target "
            "(the paper's \"poison error\" counts every misclassification of a triggered image, "
            "so it is >= this). Seconds = the repair training alone (before: the proxy's "
            "training in the scan).\n\n"
            + table_header(settings) + "\n"
            + markdown_table(["model", "clean test error", "attack success", "epochs",
                              "converged", "training seconds", "rows trained on"],
                             rows))
