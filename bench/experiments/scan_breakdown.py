"""``scan_breakdown``: where an end-to-end scan of MNIST 60k spends its time (issue 19).

Run by ``python bench/run.py --only scan_breakdown`` (not in ``--quick``). The packaged MNIST
60k training images, poisoned with BadNets all-to-all at 10% of each target class (seed 0),
are written as a dataset and scanned by ``acgate.scan.run_scan`` (no report, no tracking
store), the same call as ``acgate scan``: with the default settings, then with
``exre_max_rows`` = :data:`MAX_ROWS` (``--exre-max-rows``). Stages are the
scan's own timings (``ScanOutcome.timings``); the exclusionary-reclassification retrains inside
the analysis are read from the retrain's own log lines ("retrained on N of M samples in S s").
Issue 19's target: the whole scan within 1.5x the time of training the proxy once, measured in
the same run.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

#: Share of each target class poisoned (BadNets all-to-all, as the ``art`` section).
RATE = 0.10
#: The scan's total may take at most this many times the proxy's training (issue 19).
TARGET_RATIO = 1.5
#: The second scan's ``exre_max_rows`` (the first: every row).
MAX_ROWS = 30_000
RETRAIN_LINE = re.compile(r"retrained on (\d+) of (\d+) samples in ([\d.]+) s")


class _RetrainLog(logging.Handler):
    """Collects the retrains' ``(rows, seconds)`` from their log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retrains: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        match = RETRAIN_LINE.search(record.getMessage())
        if match:
            self.retrains.append((int(match.group(1)), float(match.group(3))))


def _scan(path: Path, truth: np.ndarray, config: object, out_dir: Path
          ) -> tuple[dict[str, float], float, list[tuple[int, float]], float]:
    """One ``run_scan``: its stage timings, wall seconds, retrains ``(rows, seconds)`` and F1."""
    from acgate.scan import run_scan

    retrain_log = _RetrainLog()
    logger = logging.getLogger("acgate.torch.exre")
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(retrain_log)
    try:
        clock = time.perf_counter()
        outcome = run_scan(path, out_dir, config, report=False, tracking_uri=None)
        total = time.perf_counter() - clock
    finally:
        logger.removeHandler(retrain_log)
        logger.setLevel(previous_level)
    timings = dict(outcome.timings)
    if float(timings.get("train_proxy") or 0.0) <= 0:  # the ratio's denominator
        raise RuntimeError(f"run_scan's timings have no train_proxy stage: {sorted(timings)}")
    flags = np.asarray(outcome.result.is_poison, dtype=bool)
    hit = truth[np.asarray(outcome.result.sample_ids)]
    tp = int((flags & hit).sum())
    return timings, total, retrain_log.retrains, 2 * tp / max(int(flags.sum()) + int(hit.sum()), 1)


def section(settings: BenchSettings) -> str:
    """The per-stage table; see the module docstring."""
    import torch

    from acgate.io.datasets import write_image_dataset
    from acgate.io.loaders import load_mnist
    from acgate.io.poison import poison_image_dataset
    from acgate.scan import ScanConfig

    torch.set_num_threads(settings.threads)
    dataset = poison_image_dataset(load_mnist(), rate=RATE, seed=0)
    truth = np.asarray(dataset.columns["is_poison"], dtype=bool)
    configs = {"default": ScanConfig(seed=0),
               f"`--exre-max-rows {MAX_ROWS}`": ScanConfig(seed=0, exre_max_rows=MAX_ROWS)}
    with tempfile.TemporaryDirectory(prefix="acgate-breakdown-") as tmp:
        path = write_image_dataset(dataset, Path(tmp) / "mnist.parquet")
        runs = {name: _scan(path, truth, config, Path(tmp) / f"scan-{i}")
                for i, (name, config) in enumerate(configs.items())}
    first = next(iter(runs.values()))[0]
    rows = []
    for stage in first:
        row: list[object] = [stage]
        for timings, _, _, _ in runs.values():
            row += [timings[stage], f"{timings[stage] / timings['train_proxy']:.2f}x"]
        rows.append(row)
    for i in range(max(len(r[2]) for r in runs.values())):
        row = [f"of which retrain {i + 1}"]
        for timings, _, retrains, _ in runs.values():
            n, seconds = retrains[i] if i < len(retrains) else (0, 0.0)
            row += [f"{seconds:.3f} (on {n:,} rows)",
                    f"{seconds / timings['train_proxy']:.2f}x"]
        rows.append(row)
    rows.append(["whole `run_scan` call"] + [
        v for timings, total, _, _ in runs.values()
        for v in (total, f"{total / timings['train_proxy']:.2f}x")])
    header = ["stage"] + [h for name in runs for h in (f"seconds, {name}", "x proxy training")]
    verdicts = []
    for name, (timings, total, retrains, f1) in runs.items():
        ratio = total / timings["train_proxy"]
        verdicts.append(
            f"- {name}: **{'met' if ratio <= TARGET_RATIO else 'MISSED'}** ({ratio:.2f}x; poison "
            f"F1 {f1:.3f}; the analysis trains the proxy's architecture {len(retrains)} more "
            f"times, {sum(s for _, s in retrains):.0f} s in all)")
    return ("## scan_breakdown (issue 19: an end-to-end scan of MNIST 60k, stage by stage)\n\n"
            f"MNIST 60k + BadNets all-to-all {RATE:.0%} ({len(truth):,} rows, seed 0), "
            "written as a Parquet dataset and scanned by `acgate.scan.run_scan`, no report, no "
            "tracking store: with the default settings, then with each retrain on at most "
            f"{MAX_ROWS:,} rows (a seeded sample of each class's share of the rows it keeps; "
            "the proxy trained again, to the same weights). Seconds are the scan's own stage "
            "timings (they nest: `analyze_report` holds `detect_analyze`, which holds the "
            "retrains, read from their log lines; each retrain trains on the data minus what it "
            "leaves out: the candidates, then the candidates and every class's tail).\n\n"
            + table_header(settings) + "\n"
            + markdown_table(header, rows)
            + f"\nTarget (issue 19): the whole scan within {TARGET_RATIO}x one proxy training:\n\n"
            + "\n".join(verdicts) + "\n")
