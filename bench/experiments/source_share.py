"""``source_share``: the source-share thresholds of exclusionary reclassification on digits."""

from __future__ import annotations

from typing import Any

import numpy as np

from acgate.core.evidence import EXRE_THRESHOLD
from bench.common import BenchSettings, markdown_table, rate_name, table_header
from bench.image_runs import detect_on, digits_rates, digits_run, digits_seeds, scores

#: (source share, sub-cluster source share) pairs swept.
SOURCE_SHARES = ((0.40, 0.7), (0.47, 0.7), (0.50, 0.6), (0.50, 0.7), (0.50, 0.8), (0.60, 0.7),
                 (0.50, 1.0))


def section(settings: BenchSettings) -> str:
    """The source-share thresholds of exclusionary reclassification, stable candidates."""
    rates, seeds = digits_rates(settings), digits_seeds(settings)
    header = (["source share", "sub-cluster share"]
              + [f"{rate_name(r)} F1 (mean / min)" for r in rates if r is not None]
              + ["clean: classes flagged per seed"])
    rows = []
    for share, nested in SOURCE_SHARES:
        row: list[Any] = [share, nested]
        for rate in rates:
            cells = []
            for seed in seeds:
                run = digits_run(rate, seed, settings.proxy_epochs)
                result, _ = detect_on(run, analysis="exre", source_share_threshold=share,
                                      nested_source_share_threshold=nested)
                cells.append(scores(result, run)["f1"] if rate is not None
                             else list(result.poisoned_classes))
            row.append(f"{np.mean(cells):.3f} / {min(cells):.3f}" if rate is not None
                       else " ".join(str(c) for c in cells))
        rows.append(row)
    return ("## source_share (digits, exre, stable candidates: the source-share thresholds)\n\n"
            f"Exclusionary reclassification judges a left-out candidate poison when l/p < "
            f"{EXRE_THRESHOLD:g} and "
            "the most common other class holds at least `source share` of it (a stable "
            "sub-cluster found inside a candidate at a larger k: `sub-cluster share`; 1.0 "
            "turns sub-clusters off). Natural-confusion test at its default (on digits the proxy "
            "fits its training set, so it rarely fires). Cells: poison F1 over the seeds "
            f"{list(seeds)}; clean: the classes flagged in each seed's unpoisoned run. The "
            "default (0.5, 0.7) flags the same clean digits classes as 0.47 at a lower F1 "
            "(0.6 flags fewer and loses a poisoned class at 15%; 0.4 adds two clean flags); it is "
            "the default because on the MNIST-scale runs 0.47 flags class 7 of the unpoisoned "
            "7+ data and 0.5 flags nothing (`candidates`).\n\n"
            + table_header(settings) + "\n" + markdown_table(header, rows))
