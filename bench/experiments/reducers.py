"""``reducers``: poison F1 on digits for each reducer (pca | ica | none) x analysis."""

from __future__ import annotations

from typing import Any

from bench.common import BenchSettings, markdown_table, rate_name, table_header
from bench.image_runs import detect_on, digits_rates, digits_run, digits_seeds, quality_cell

REDUCERS = ("pca", "ica", "none")
ANALYSES = ("size-silhouette", "exre")


def crash_notes(crashes: list[str]) -> str:
    """Markdown list of the detector errors a table hit ("" when none)."""
    if not crashes:
        return ""
    return "\n`crash` = `detect` raised:\n\n" + "\n".join(f"- {c}" for c in crashes) + "\n"


def section(settings: BenchSettings) -> str:
    """F1 / clean-run flags for reducer pca | ica | none x analysis size-silhouette | exre."""
    rates = digits_rates(settings)
    header = ["reducer", "analysis", "seed"] + [rate_name(r) for r in rates]
    rows = []
    crashes: list[str] = []
    for reducer in REDUCERS:
        for analysis in ANALYSES:
            for seed in digits_seeds(settings):
                row: list[Any] = [reducer, analysis, seed]
                for rate in rates:
                    run = digits_run(rate, seed, settings.proxy_epochs)
                    try:
                        result, _ = detect_on(run, reducer=reducer, analysis=analysis)
                    except (ValueError, FloatingPointError) as error:
                        crashes.append(f"reducer={reducer}, analysis={analysis}, seed={seed}, "
                                       f"rate={rate_name(rate)}: {type(error).__name__}: "
                                       f"{error}")
                        row.append("crash")
                        continue
                    row.append(quality_cell(result, run, rate))
                rows.append(row)
    return ("## reducers (digits)\n\nPoison F1 per rate; the `clean` column is the number of "
            "classes flagged in an unpoisoned run (and which). Size threshold: each analysis's "
            "default (0.35 size-silhouette, 0.45 exre).\n\n" + table_header(settings) + "\n"
            + markdown_table(header, rows) + crash_notes(crashes))
