"""``size_threshold``: exclusionary reclassification on digits with candidate cuts 0.35-0.5."""

from __future__ import annotations

from typing import Any

from bench.common import BenchSettings, markdown_table, rate_name, table_header
from bench.image_runs import detect_on, digits_rates, digits_run, digits_seeds, quality_cell

THRESHOLDS = (0.35, 0.45, 0.5)


def section(settings: BenchSettings) -> str:
    """Exclusionary reclassification with size_threshold 0.35 | 0.45 | 0.5 (reducer pca)."""
    rates = digits_rates(settings)
    header = ["size_threshold", "seed"] + [rate_name(r) for r in rates]
    rows = []
    for threshold in THRESHOLDS:
        for seed in digits_seeds(settings):
            row: list[Any] = [threshold, seed]
            for rate in rates:
                run = digits_run(rate, seed, settings.proxy_epochs)
                result, _ = detect_on(run, analysis="exre", size_threshold=threshold)
                row.append(quality_cell(result, run, rate))
            rows.append(row)
    return ("## size_threshold (digits, exre, pca)\n\nPoison F1 per rate; `clean` = classes "
            "flagged in the unpoisoned run.\n\n" + table_header(settings) + "\n"
            + markdown_table(header, rows))
