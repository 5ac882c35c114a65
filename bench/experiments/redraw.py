"""``redraw``: the table that chose ``redraw_components`` (the redraw of a poisoned class's rows).

Per attack-matrix cell (``bench/experiments/attack_matrix.py``, its cached proxy activations:
``$ACGATE_BENCH_CACHE`` must hold them, made by ``python bench/attack_matrix.py
--reuse-activations`` for these cells), the scan's detection runs once with
``redraw_components=0`` (the analysis's rows, exclusionary reclassification's retrains
included); then every poisoned class's rows are redrawn with
:func:`acgate.core.redraw.redraw_rows` at each tried number of directions, on the same flags
(what ``analyze`` does with that setting: the class verdicts do not depend on it). Cells: poison
F1, mean / min over the seeds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

#: The section's text (the table's numbers are computed; what they say was read off them).
INTRO = (
    "Per attack-matrix cell (its cached proxy activations, made by `python bench/attack_matrix.py "
    "--reuse-activations` for these cells), the scan's detection runs once with "
    "`redraw_components=0` (the analysis's rows, exclusionary reclassification's retrains "
    "included); then every poisoned class's rows are redrawn with "
    "`acgate.core.redraw.redraw_rows` at each number of whitened directions, from the same "
    "flags: what `analyze` does with that setting (class verdicts do not depend on it). Cells: "
    "poison F1, mean / min over the seeds; `(n worse)`: cells whose F1 drops by more than 0.01 "
    "against no redraw. Run with the separation rule of `REDRAW_MIN_SEPARATION` applied at "
    "every count. **20 directions (the default)**: the best mean over every cell (one cell "
    "worse). 10 gains least on Fashion-MNIST blend (0.868 / 0.747 against 0.956 / 0.918 at "
    "20) and leaves four cells worse than no redraw; 30 is close (one cell worse) and lifts "
    "Fashion-MNIST BadNets 1% (0.953 / 0.890) and MNIST warp all-to-all "
    "(0.989) but lowers MNIST BadNets 0.5% (0.998 / 0.995) and all-to-all 5% (0.994); 50 lowers "
    "MNIST BadNets 0.5% (0.981 / 0.942) and Fashion-MNIST blend (0.927 / 0.849).")
#: Numbers of whitened directions tried (0: no redraw).
COMPONENTS = (0, 10, 20, 30, 50)
#: The cells: attack-matrix case name -> seeds.
CELLS: dict[str, tuple[int, ...]] = {
    **{name: (0, 1, 2) for name in (
        "mnist/patch-a2o-0.5pct", "mnist/patch-a2o-1pct", "mnist/patch-a2o-3pct",
        "mnist/blend-a2o-1pct", "mnist/sig-a2o-1pct", "mnist/checker-topleft-a2o-1pct",
        "fashion/patch-a2o-1pct", "fashion/blend-a2o-1pct")},
    **{name: (0,) for name in (
        "mnist/patch-a2a-5pct", "mnist/patch-a2a-10pct", "mnist/patch-a2a-33pct",
        "mnist/blend-a2a-10pct", "mnist/warp-a2a-10pct")},
    **{name: (0, 1, 2, 3, 4) for name in (
        "digits/patch-a2a-10pct", "digits/blend-a2a-10pct", "digits/warp-a2a-10pct",
        "digits-7plus/to0-from7plus-10pct", "digits-7plus/to7plus-from6-10pct",
        "digits-7plus/to7plus-from456-10pct")},
}


def redrawn_f1(result: Any, activations: np.ndarray, truth: np.ndarray,
               n_components: int) -> float:
    """Poison F1 once every poisoned class of ``result`` has its rows redrawn."""
    from acgate.core.metrics import precision_recall_f1
    from acgate.core.redraw import redraw_rows

    flags = np.asarray(result.is_poison, bool).copy()
    segments = np.asarray(result.segments)
    for report in result.classes:
        if report.verdict != "poisoned":
            continue
        rows = np.flatnonzero(segments == report.label)
        redraw = redraw_rows(activations[rows], flags[rows], n_components=n_components,
                             max_share=float(report.thresholds["size"]))
        if redraw is not None and redraw.taken:
            flags[rows] = redraw.flagged
    return float(precision_recall_f1(flags, truth)["f1"])


def cached_activations(case: Any, seed: int, config: Any) -> tuple[Any, Path]:
    """One cell's dataset and its cached proxy activations (``$ACGATE_BENCH_CACHE``).

    Raises:
        RuntimeError: The cache does not hold them (the message says how to make them).
    """
    from bench.experiments import attack_matrix as am

    dataset = am.build_dataset(case, seed, am.DEFAULT_ROWS)
    cached = am._reuse_path(dataset, config, 1)
    if cached is None or not cached.is_file():
        raise RuntimeError(f"{case.name} seed {seed}: no cached activations under "
                           "$ACGATE_BENCH_CACHE; run python bench/attack_matrix.py "
                           f"--reuse-activations --threads 1 --cases {case.name} first")
    return dataset, cached


def cached_detection(case: Any, seed: int, config: Any) -> tuple[Any, Any, Any, np.ndarray]:
    """The scan's detection on one cell's cached proxy activations.

    Returns:
        The detection result, the dataset as the scan read it back from Parquet (the images
        and texts a report shows), the cached activations table and the poison truth (all
        ``False`` for a clean cell), rows aligned.
    """
    from acgate.io.activations import read_activations
    from acgate.io.datasets import (
        TextDataset,
        read_dataset,
        write_image_dataset,
        write_text_dataset,
    )
    from bench.experiments import attack_matrix as am

    dataset, cached = cached_activations(case, seed, config)
    with tempfile.TemporaryDirectory(prefix="acgate-cached-cell-") as tmp:
        path = Path(tmp) / "data.parquet"
        is_text = isinstance(dataset, TextDataset)
        (write_text_dataset if is_text else write_image_dataset)(dataset, path)
        result, _ = am._detect_on_cached(path, cached, config)
        scanned = read_dataset(path)
    table = read_activations(cached)
    if not np.array_equal(np.asarray(result.sample_ids), np.asarray(table.indices)):
        raise RuntimeError("the result's rows are not the activations' rows")
    return result, scanned, table, aligned_truth(dataset, table)


def aligned_truth(dataset: Any, table: Any) -> np.ndarray:
    """The poison truth of a cell's dataset in the order of its activations table's rows.

    All ``False`` for a clean cell (its dataset has no ``is_poison`` column).
    """
    ids = np.asarray(table.indices)
    if "is_poison" not in dataset.columns:
        return np.zeros(len(ids), bool)
    return np.asarray(dataset.columns["is_poison"], bool)[ids]


def cached_cell(case: Any, seed: int, config: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """The scan's detection on one cell's cached proxy activations.

    Returns:
        The detection result, the activations and the poison truth, rows aligned.
    """
    result, _, table, truth = cached_detection(case, seed, config)
    return result, np.asarray(table.activations), truth


def cell_scores(case: Any, seed: int) -> list[float]:
    """F1 at each of :data:`COMPONENTS` on one cell (cached proxy activations)."""
    from acgate.scan import ScanConfig

    result, activations, truth = cached_cell(case, seed, ScanConfig(seed=seed,
                                                                    redraw_components=0))
    return [redrawn_f1(result, activations, truth, k) for k in COMPONENTS]


def case_rows(cells: dict[str, tuple[int, ...]], score_cell: Any, n_scores: int) -> list[list]:
    """Per case ``mean / min`` of each score over its seeds, and an ``every cell`` row.

    ``score_cell(case, seed)`` gives the cell's scores; the first is the baseline that ``(n
    worse)`` counts the cells against (F1 lower by more than 0.01).
    """
    from bench.experiments import attack_matrix as am

    cases = {case.name: case for case in am.all_cases()}
    rows, per_cell = [], []
    for name, seeds in cells.items():
        scores = np.array([score_cell(cases[name], seed) for seed in seeds])
        per_cell.extend(scores)
        rows.append([name, len(seeds), *(f"{scores[:, i].mean():.3f} / {scores[:, i].min():.3f}"
                                         for i in range(n_scores))])
    every = np.array(per_cell)
    worse = [int((every[:, i] < every[:, 0] - 0.01).sum()) for i in range(n_scores)]
    rows.append(["**every cell**", len(every), *(
        f"**{every[:, i].mean():.3f} / {every[:, i].min():.3f}** ({worse[i]} worse)"
        for i in range(n_scores))])
    return rows


def scores_section(title: str, intro: str, settings: BenchSettings,
                   cells: dict[str, tuple[int, ...]], score_cell: Any,
                   columns: list[str]) -> str:
    """A section: ``title``, ``intro``, the command and machine, and :func:`case_rows`."""
    rows = case_rows(cells, score_cell, len(columns))
    return (f"## {title}\n\n{intro}\n\n" + table_header(settings) + "\n"
            + markdown_table(["case", "seeds", *columns], rows))


def section(settings: BenchSettings) -> str:
    """Poison F1 per case at each number of redraw directions."""
    return scores_section(
        "redraw (the rows of a poisoned class: the table that chose `redraw_components`)",
        INTRO, settings, CELLS, cell_scores,
        [f"{k} directions" if k else "no redraw" for k in COMPONENTS])


__all__ = ["CELLS", "COMPONENTS", "aligned_truth", "cached_activations", "cached_cell",
           "cached_detection", "case_rows", "cell_scores", "redrawn_f1", "scores_section",
           "section"]
