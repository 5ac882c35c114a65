"""Every dense core of the attack matrix's classes and how far it stands apart (issue 18).

The table that chose ``acgate.core.clustering.DENSE_CORE_SEPARATION``: for every cell of the
attack matrix whose proxy activations are cached (``python bench/attack_matrix.py
--reuse-activations`` with ``$ACGATE_BENCH_CACHE`` set made them), every class of at least
``DENSE_MIN_CLASS_ROWS`` rows is reduced as the scan reduces it (PCA 10, rows in sample-id
order), ``acgate.core.clustering.dense_cores`` finds its dense cores (the function
``dense_core_candidates`` takes them from: at most ``DENSE_CORE_MAX_SHARE`` of the class), and
each is measured: its rows' distance from the rest of the class along the direction from the
class's centre to the core, in pooled standard deviations (the core separation). A core is
*poison* when at least half its rows are the poisoner's. No proxy is trained: cells without
cached activations are listed as skipped.

Usage: ``ACGATE_BENCH_CACHE=... python bench/dense_cores.py [--cases GLOB ...] [--seeds 0,1,2]``
writes ``bench/parts/dense_cores.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import shlex
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import (
    PARTS_DIR,
    machine_line,
    markdown_table,
    split_summary,
    write_text_atomic,
)

PART = PARTS_DIR / "dense_cores.md"
#: Cases measured by default: the data whose classes reach ``DENSE_MIN_CLASS_ROWS`` rows.
DEFAULT_CASES = ("mnist/*", "fashion/*", "mnist-7plus/*", "rt/*")


@dataclass(frozen=True)
class Core:
    """One dense core of one class of one cell."""

    cell: str
    seed: int
    label: int
    class_rows: int
    rows: int
    poison_rows: int
    separation: float

    @property
    def poison(self) -> bool:
        """At least half of the core's rows are poison."""
        return 2 * self.poison_rows >= self.rows


def class_cores(reduced: np.ndarray, random_state: int) -> list[tuple[np.ndarray, float]]:
    """Each dense core of one class (``acgate.core.clustering.dense_cores``) and its separation.

    Returns:
        ``(mask over the class's rows, core separation)`` per core of at most
        ``DENSE_CORE_MAX_SHARE`` of the class.
    """
    from acgate.core.clustering import dense_cores

    return [(core.members, core.separation)
            for core in dense_cores(reduced, random_state=random_state)]


def cell_cores(case: Any, seed: int, rows: int) -> list[Core] | None:
    """The cores of every large class of one cell; ``None`` without its cached activations."""
    from acgate.core.clustering import DENSE_MIN_CLASS_ROWS
    from acgate.core.reducers import reduce_pca
    from acgate.io.activations import read_activations
    from acgate.scan import ScanConfig
    from bench.experiments import attack_matrix

    dataset = attack_matrix.build_dataset(case, seed, rows)
    path = attack_matrix._reuse_path(dataset, ScanConfig(seed=seed), 1)
    if path is None or not path.is_file():
        return None
    truth = (np.asarray(dataset.columns["is_poison"], dtype=bool)
             if "is_poison" in dataset.columns else np.zeros(len(dataset.labels), dtype=bool))
    table = read_activations(path)
    indices, labels = np.asarray(table.indices), np.asarray(table.labels)
    found = []
    for label in np.unique(labels):
        rows_of = np.flatnonzero(labels == label)
        rows_of = rows_of[np.argsort(indices[rows_of], kind="stable")]  # sample-id order
        if len(rows_of) < DENSE_MIN_CLASS_ROWS:
            continue
        x = np.asarray(table.activations[rows_of], dtype=np.float64)
        reduced, _ = reduce_pca(x, n_components=10, random_state=seed)
        poison = truth[indices[rows_of]]
        for mask, separation in class_cores(reduced, seed):
            found.append(Core(case.name, seed, int(label), len(rows_of), int(mask.sum()),
                              int((mask & poison).sum()), float(separation)))
    return found


def summary_rows(cores: list[Core], cut: float) -> list[list[Any]]:
    """Per data set: clean and poison cores, their separations, and how many reach ``cut``."""
    return split_summary(cores, lambda c: c.separation,
                         (("clean rows", lambda c: not c.poison), ("poison", lambda c: c.poison)),
                         cut)


def main(argv: list[str] | None = None) -> int:
    """Measure the cores of the cached cells and write ``bench/parts/dense_cores.md``."""
    from acgate.core.clustering import DENSE_CORE_SEPARATION
    from bench.experiments import attack_matrix

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", action="append", help="glob over case names (repeatable)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--rows", type=int, default=20000, help="MNIST-scale subset size")
    args = parser.parse_args(argv)
    patterns = args.cases or list(DEFAULT_CASES)
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = [c for c in attack_matrix.all_cases()
             if any(fnmatch.fnmatch(c.name, p) for p in patterns)]
    cores: list[Core] = []
    skipped = []
    for case in cases:
        for seed in seeds:
            found = cell_cores(case, seed, args.rows)
            if found is None:
                skipped.append(f"{case.name} s{seed}")
                continue
            cores.extend(found)
            print(f"{case.name} seed {seed}: {len(found)} cores", flush=True)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python bench/dense_cores.py", *(shlex.quote(a) for a in given)])
    clean_top = sorted((c for c in cores if not c.poison), key=lambda c: -c.separation)[:8]
    poison_low = sorted((c for c in cores if c.poison), key=lambda c: c.separation)[:8]
    detail = [[c.cell, c.seed, c.label, c.class_rows, c.rows, c.poison_rows, c.separation]
              for c in [*clean_top, *poison_low]]
    text = (
        "## dense_cores (issue 18: how far the classes' dense cores stand apart)\n\n"
        "Every dense core (HDBSCAN in the whitened PCA-10 activations, as "
        "`acgate.core.clustering.dense_core_candidates` finds them, at most 20% of the class) of "
        "every class of at least 1,000 rows in the attack matrix's cells with cached proxy "
        "activations; separation: the core's rows against the rest of the class along the "
        "direction from the class's centre to the core, in pooled standard deviations. A core "
        "is poison when at least half its rows are. The cut "
        f"`DENSE_CORE_SEPARATION` = {DENSE_CORE_SEPARATION:g}: a core at or above it is judged "
        "by every rule of exclusionary reclassification (README, step 5).\n\n"
        f"command: `{command}` (with `ACGATE_BENCH_CACHE` set)  \n{machine_line(1)}\n\n"
        + markdown_table(["data", "cores of", "cores", "cells", "separation",
                          f">= {DENSE_CORE_SEPARATION:g}"], summary_rows(cores,
                                                                        DENSE_CORE_SEPARATION))
        + "\nThe clean cores that stand apart most and the poison cores that stand apart "
          "least:\n\n"
        + markdown_table(["cell", "seed", "class", "class rows", "core rows", "poison rows",
                          "separation"], detail)
        + (f"\nSkipped (no cached activations): {len(skipped)} cells.\n" if skipped else ""))
    write_text_atomic(PART, text)
    print(f"wrote {PART}")
    return 0
