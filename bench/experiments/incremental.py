"""``incremental``: a new partition judged against the last accepted scan (issue 22).

Run by ``python bench/run.py --only incremental`` (``--quick``: digits only). Per dataset and
seed: a seeded stratified split into the accepted data (``1 - share``) and a new partition
(``share``: 5% of MNIST / Fashion-MNIST 20k, 10% of digits, whose 5% is 90 rows); a full
``acgate scan`` of the accepted data is the baseline (cached under ``$ACGATE_BENCH_CACHE``,
``incremental/``); the partition arrives clean, or poisoned all-to-one (BadNets patch or the
blended trigger, every other class -> target = seed mod classes, ``POISON_SHARE`` of the
partition's rows). The incremental scan (:func:`acgate.scan.run_incremental_scan`: read and
validate the partition, extract with the baseline's proxy, judge against the baseline's
reference, write the outputs) is timed against a full scan of the whole data (accepted +
partition, clean), both with the same torch threads on the same machine.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

#: Share of the data that arrives as the new partition, per dataset.
PARTITION_SHARE = {"mnist": 0.05, "fashion": 0.05, "digits": 0.10}
#: Poison share of the partition's rows (all-to-one).
POISON_SHARE = 0.05
ROWS = 20_000
SEEDS = (0, 1, 2)
#: Digits scans cost seconds: five seeds.
SEEDS_OF = {"digits": (0, 1, 2, 3, 4)}


def _cache() -> Path:
    root = os.environ.get("ACGATE_BENCH_CACHE")
    return Path(root) / "incremental" if root else Path(tempfile.gettempdir()) / "acgate-incr"


def _subset(dataset: Any, rows: np.ndarray, name: str) -> Any:
    from acgate.io.datasets import ImageDataset

    return ImageDataset(images=dataset.images[rows], labels=dataset.labels[rows],
                        metadata=dict(dataset.metadata), name=name)


def split(data: str, seed: int) -> tuple[Any, Any, Any]:
    """The whole data, the accepted part and the new partition (stratified, seeded)."""
    from sklearn.model_selection import train_test_split

    from bench.experiments import attack_matrix

    whole = attack_matrix._subset(attack_matrix._base(data), None if data == "digits" else ROWS,
                                  seed)
    kept, new = train_test_split(np.arange(len(whole)), test_size=PARTITION_SHARE[data],
                                 stratify=whole.labels, random_state=seed)
    return (whole, _subset(whole, np.sort(kept), f"{data}-accepted"),
            _subset(whole, np.sort(new), f"{data}-partition"))


def poisoned(partition: Any, trigger: str, seed: int) -> Any:
    """The partition poisoned all-to-one (``POISON_SHARE`` of its rows)."""
    from acgate.io.poison import TriggerSpec, poison_image_dataset

    spec = TriggerSpec() if trigger == "patch" else TriggerSpec(kind="blend", alpha=0.2,
                                                                  seed=seed)
    classes = np.unique(partition.labels)
    target = int(classes[seed % len(classes)])
    return poison_image_dataset(partition, rate=POISON_SHARE, all_to_one=target,
                                rate_of="data", trigger=spec, seed=seed)


def baseline_scan(data: str, seed: int, accepted: Any, threads: int) -> tuple[Path, float]:
    """The accepted data's full scan (cached): its folder and seconds."""
    from acgate.io.datasets import write_image_dataset
    from acgate.scan import ScanConfig, run_scan

    folder = _cache() / f"{data}-seed{seed}"
    seconds_file = folder / "seconds.txt"
    if (folder / "scan" / "samples.parquet").exists() and seconds_file.exists():
        return folder / "scan", float(seconds_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    path = write_image_dataset(accepted, folder / "accepted.parquet")
    clock = time.perf_counter()
    run_scan(path, folder / "scan", ScanConfig(seed=seed), report=False, overwrite=True)
    seconds = time.perf_counter() - clock
    seconds_file.write_text(f"{seconds:.3f}")
    return folder / "scan", seconds


def full_scan_seconds(data: str, whole: Any, seed: int) -> float:
    """Seconds of a full scan of the whole (clean) data (cached beside the baselines)."""
    from acgate.io.datasets import write_image_dataset
    from acgate.scan import ScanConfig, run_scan

    cached = _cache() / f"{data}-seed{seed}-full-seconds.txt"
    if cached.exists():
        return float(cached.read_text())
    with tempfile.TemporaryDirectory(prefix="acgate-incr-full-") as work:
        path = write_image_dataset(whole, Path(work) / "whole.parquet")
        clock = time.perf_counter()
        run_scan(path, Path(work) / "scan", ScanConfig(seed=seed), report=False)
        seconds = time.perf_counter() - clock
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(f"{seconds:.3f}")
    return seconds


def incremental_cell(baseline: Path, partition: Any, seed: int) -> dict[str, Any]:
    """One incremental scan of ``partition``: F1, flags, mode and seconds."""
    from acgate.core import flag_metrics
    from acgate.io.datasets import write_image_dataset
    from acgate.scan import ScanConfig, run_incremental_scan

    truth = np.asarray(partition.columns.get("is_poison", np.zeros(len(partition), bool)),
                       bool)
    with tempfile.TemporaryDirectory(prefix="acgate-incr-") as work:
        path = write_image_dataset(partition, Path(work) / "partition.parquet")
        clock = time.perf_counter()
        outcome = run_incremental_scan(path, Path(work) / "scan", baseline,
                                       ScanConfig(seed=seed), report=False)
        seconds = time.perf_counter() - clock
    result = outcome.result
    metrics = flag_metrics(result, truth)["overall"] if truth.any() else None
    return {"f1": None if metrics is None else metrics["f1"],
            "flagged_rows": int(result.is_poison.sum()), "poison_rows": int(truth.sum()),
            "classes": list(result.poisoned_classes), "mode": outcome.mode,
            "seconds": seconds}


def _refused(baseline: Path) -> str | None:
    """Why the baseline cannot serve (its verdict is not clean), or None."""
    import json

    import pandas as pd

    verdict = json.loads((baseline / "scan.json").read_text())["verdict"]
    if verdict == "clean":
        return None
    classes = pd.read_parquet(baseline / "classes.parquet")
    flagged = classes["label"][classes["verdict"] == "poisoned"].tolist()
    return f"baseline {verdict} (a false alarm in class {flagged}): refused"


def section(settings: BenchSettings) -> str:
    """Rows per dataset and seed: clean / patch / blend partitions, and the time ratio."""
    datasets = ("digits",) if settings.quick else ("mnist", "fashion", "digits")
    rows = []
    for data in datasets:
        full = None
        for seed in SEEDS_OF.get(data, SEEDS):
            whole, accepted, partition = split(data, seed)
            baseline, baseline_seconds = baseline_scan(data, seed, accepted, settings.threads)
            if full is None:
                full = full_scan_seconds(data, whole, seed)
            refused = _refused(baseline)
            if refused is not None:
                rows.append([data, seed, len(partition), "all", "-", "-", "-", "-", refused,
                             "-", f"{full:.1f}", "-"])
                continue
            for kind in ("clean", "patch", "blend"):
                part = partition if kind == "clean" else poisoned(partition, kind, seed)
                cell = incremental_cell(baseline, part, seed)
                f1 = "-" if cell["f1"] is None else f"{cell['f1']:.3f}"
                rows.append([data, seed, len(part), kind, cell["poison_rows"], f1,
                             cell["flagged_rows"], str(cell["classes"]), cell["mode"],
                             f"{cell['seconds']:.1f}", f"{full:.1f}",
                             f"{full / cell['seconds']:.1f}x"])
    table = markdown_table(
        ["data", "seed", "partition rows", "partition", "poison rows", "F1",
         "flagged rows", "classes flagged", "mode", "incremental s",
         "full scan of the whole data s (seed 0)", "speed-up"], rows)
    return (f"## incremental\n\nA new partition judged against the accepted data's scan "
            f"(module docstring of `bench/experiments/incremental.py`; "
            f"`acgate scan PARTITION --baseline SCAN_FOLDER`). Targets (issue 22): F1 >= 0.95 "
            f"on poison only in the partition, no class flagged on a clean partition, >= 10x "
            f"faster than a full scan.\n\n{table_header(settings)}\n{table}")
