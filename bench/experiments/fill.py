"""``fill``: the table that chose ``FILL_MIN_FLAGGED`` (the neighbours fill of a poisoned class).

Per attack-matrix cell (``bench/experiments/attack_matrix.py``, its cached proxy activations:
``$ACGATE_BENCH_CACHE`` must hold them, made by ``python bench/attack_matrix.py
--reuse-activations`` for these cells), the scan's detection runs once with the fill left out
(the analysis's rows and the redraw, exclusionary reclassification's retrains included); then
every poisoned class's flags are filled with :func:`acgate.core.redraw.fill_rows` at each tried
count of flagged neighbours (of :data:`acgate.core.redraw.FILL_NEIGHBOURS`), from the same
flags: what ``analyze`` does as its last step (class verdicts do not depend on it). Cells:
poison F1, mean / min over the seeds.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import numpy as np

from bench.common import BenchSettings

#: The section's text (the table's numbers are computed; what they say was read off them).
INTRO = (
    "Per attack-matrix cell (its cached proxy activations, made by `python bench/attack_matrix.py "
    "--reuse-activations` for these cells), the scan's detection runs once without the fill "
    "(the analysis's rows and the redraw, exclusionary reclassification's retrains included); "
    "then every poisoned class's flags are filled with `acgate.core.redraw.fill_rows` at each "
    "count of flagged rows among a row's 10 nearest neighbours, from the same flags: what "
    "`analyze` does as its last step (class verdicts do not depend on it). Cells: poison F1, "
    "mean / min over the seeds; `(n worse)`: cells whose F1 drops by more than 0.01 against no "
    "fill. **5 of 10 (the default)**: the highest mean of the counts that leave no cell worse "
    "than no fill (0.918 against 0.914; MNIST SIG 1% 0.959 / 0.880 -> 0.977 / 0.932). 4 of 10 "
    "is 0.001 higher on the mean but lowers two cells by more than 0.01 (a Fashion-MNIST blend "
    "seed among them); at 2 and 3, clean rows next to the clean rows an analysis flagged join "
    "in numbers (Fashion-MNIST BadNets 1% 0.784 / 0.457 at 2; 11 and 7 cells worse); at 6 the "
    "fill gains less (SIG 0.969 / 0.910).")
#: Counts of flagged neighbours (of 10) tried; 0: no fill.
MIN_FLAGGED = (0, 2, 3, 4, 5, 6)
#: The cells: attack-matrix case name -> seeds.
CELLS: dict[str, tuple[int, ...]] = {
    **{name: (0, 1, 2) for name in (
        "mnist/patch-a2o-1pct", "mnist/blend-a2o-1pct", "mnist/sig-a2o-1pct",
        "mnist/warp-a2o-1pct", "mnist/dot-rowcol-a2o-3pct", "mnist/random-center-a2a-5pct",
        "fashion/patch-a2o-1pct", "fashion/blend-a2o-1pct")},
    **{name: (0,) for name in (
        "mnist/patch-a2a-5pct", "mnist/patch-a2a-33pct", "mnist/warp-a2a-10pct",
        "mnist-7plus/to7plus-from456-10pct")},
    **{name: (0, 1, 2, 3, 4) for name in ("digits/patch-a2a-10pct", "digits/warp-a2a-10pct")},
}


def filled_f1(result: Any, activations: np.ndarray, truth: np.ndarray, min_flagged: int) -> float:
    """Poison F1 once every poisoned class of ``result`` is filled at ``min_flagged`` (0: not)."""
    import acgate.core.redraw as redraw_module
    from acgate.core.metrics import precision_recall_f1

    flags = np.asarray(result.is_poison, bool).copy()
    segments = np.asarray(result.segments)
    for report in result.classes:
        if min_flagged == 0 or report.verdict != "poisoned":
            continue
        rows = np.flatnonzero(segments == report.label)
        if len(rows) > redraw_module.FILL_MAX_CLASS_ROWS:
            continue
        # the core has no switch for the count: the constant is set for this one call
        with patch.object(redraw_module, "FILL_MIN_FLAGGED", min_flagged):
            fill = redraw_module.fill_rows(activations[rows], flags[rows],
                                           max_share=float(report.thresholds["size"]))
        if fill is not None:
            flags[rows] = fill.flagged
    return float(precision_recall_f1(flags, truth)["f1"])


def cell_scores(case: Any, seed: int) -> list[float]:
    """F1 at each of :data:`MIN_FLAGGED` on one cell (cached proxy activations)."""
    import acgate.core.redraw as redraw_module
    from acgate.scan import ScanConfig
    from bench.experiments.redraw import cached_cell

    with patch.object(redraw_module, "_fill_in", lambda *args: None):  # detection, no fill
        result, activations, truth = cached_cell(case, seed, ScanConfig(seed=seed))
    return [filled_f1(result, activations, truth, k) for k in MIN_FLAGGED]


def section(settings: BenchSettings) -> str:
    """Poison F1 per case at each count of flagged neighbours."""
    from bench.experiments.redraw import scores_section

    return scores_section(
        "fill (the rows of a poisoned class: the table that chose `FILL_MIN_FLAGGED`)",
        INTRO, settings, CELLS, cell_scores,
        [f"{k} of 10" if k else "no fill" for k in MIN_FLAGGED])


__all__ = ["CELLS", "MIN_FLAGGED", "cell_scores", "filled_f1", "section"]
