"""``shared``: what the flagged rows of a class share, on poisoned cells and clean false alarms.

The report shows, per class with flagged rows, the flagged images' mean difference from their
suspected sources (:func:`acgate.report.shared.mean_difference`) with two numbers, the share
of it its strongest 2% of pixels hold (:func:`~acgate.report.shared.concentration`) and its
fine grain (:func:`~acgate.report.shared.fine_grain`), or, for texts, the tokens over-represented
among the flagged texts (:func:`~acgate.report.shared.overrepresented_tokens`). Here they are
measured on attack-matrix cells (``bench/experiments/attack_matrix.py``, its cached proxy
activations under ``$ACGATE_BENCH_CACHE``, made by ``python bench/attack_matrix.py
--reuse-activations``): seed 0 of poisoned cases, and the clean runs' seeds that raised a false
alarm. The images are the scan's (the Parquet file read back). Nothing here decides: the numbers
are what a reviewer reads beside the map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

#: Attack-matrix case name -> seeds (clean runs: the seeds whose scan flagged a class).
CELLS: dict[str, tuple[int, ...]] = {
    "mnist/patch-a2o-1pct": (0,), "mnist/checker-topleft-a2o-1pct": (0,),
    "mnist/blend-a2o-1pct": (0,), "mnist/sig-a2o-1pct": (0,), "mnist/warp-a2o-1pct": (0,),
    "mnist/dot-rowcol-a2o-3pct": (0,), "mnist/random-center-a2a-5pct": (0,),
    "mnist/patch-a2a-10pct": (0,), "fashion/patch-a2o-1pct": (0,),
    "fashion/blend-a2o-1pct": (0,), "digits/patch-a2a-10pct": (0,),
    "digits/blend-a2a-10pct": (0,), "rt/into-majority-end-10pct": (0,),
    "rt/into-minority-random-3pct": (0,),
    "mnist/clean": (4,), "fashion/clean": (6,), "digits/clean": (1,),
    "digits-7plus/clean": (1, 2, 3),
}

INTRO = (
    "Per class with flagged rows, what the report shows a reviewer beside the verdict (module "
    "docstring of `bench/experiments/shared_evidence.py`; `acgate.report.shared`): images, the "
    "flagged rows' mean minus, row by row, the mean kept image of each row's suspected source, "
    "with the difference at its strongest pixel (images in [0, 1]), the share of it its "
    "strongest 2% of pixels hold (spread evenly: 2%) and its fine grain (the share of its "
    "energy a 3x3 blur removes); texts, the token most "
    "over-represented among the flagged texts against the kept texts of their suspected "
    "sources. Seed 0 of poisoned cases; clean runs: the seeds whose default scan raised a false "
    "alarm (every flagged row there is clean). The detection is the default scan's, on the "
    "cells' cached proxy activations.")


def _cell(case: Any, seed: int) -> list[list[Any]]:
    """One row per flagged class of one cell."""
    from acgate.io.datasets import TextDataset
    from acgate.report import shared
    from acgate.scan import ScanConfig
    from bench.experiments.redraw import cached_detection

    result, scanned, _, truth = cached_detection(case, seed, ScanConfig(seed=seed))
    is_text = isinstance(scanned, TextDataset)
    flags, labels = np.asarray(result.is_poison), np.asarray(result.labels)
    segments, sources = np.asarray(result.segments), np.asarray(result.suspected_source)
    rows = []
    for label in result.poisoned_classes:
        flagged = np.flatnonzero(flags & (segments == label))
        described = [case.name, seed, int(label), len(flagged),
                     f"{truth[flagged].mean():.2f}" if len(flagged) else "-"]
        if is_text:
            tokens = shared.overrepresented_tokens(list(scanned.texts), labels, ~flags, flagged,
                                                   sources[flagged], int(label))
            top = (f"`{tokens[0].token}` {tokens[0].flagged_share:.0%} / "
                   f"{tokens[0].reference_share:.0%}" if tokens else "none")
            rows.append([*described, "-", "-", "-", top])
            continue
        difference = shared.mean_difference(np.asarray(scanned.images), labels, ~flags,
                                            flagged, sources[flagged], int(label))
        rows.append([*described, f"{shared.strength(difference):.2f}",
                     f"{shared.concentration(difference):.0%}",
                     f"{shared.fine_grain(difference):.0%}", "-"])
    return rows


def section(settings: BenchSettings) -> str:
    """One row per flagged class of every cell."""
    from bench.experiments.attack_matrix import all_cases

    cases = {case.name: case for case in all_cases()}
    rows = [row for name, seeds in CELLS.items() for seed in seeds
            for row in _cell(cases[name], seed)]
    return ("## shared (what the flagged rows share: the report's evidence for a reviewer)\n\n"
            f"{INTRO}\n\n" + table_header(settings) + "\n"
            + markdown_table(["case", "seed", "class", "flagged rows", "poison share of them",
                              "strongest pixel", "strongest 2% of pixels hold", "fine grain",
                              "top token: flagged / reference texts"], rows))


__all__ = ["CELLS", "section"]
