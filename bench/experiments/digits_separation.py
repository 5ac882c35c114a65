"""``digits_separation``: where poisoned rows gather, in the proxy's activations and in pixels.

Issue 18's digits cases stay below target (``bench/RESULTS.md`` "attack_matrix"): on the 8x8
scikit-learn digits an all-to-one attack puts 18 poisoned rows (1%) into a target class of
~200, and the default scan rarely forms a candidate of them. This section asks whether the
proxy's activations gather them at all. Per attack-matrix cell (its cached proxy activations
under ``$ACGATE_BENCH_CACHE``, made by ``python bench/attack_matrix.py --reuse-activations``)
and per poisoned class: the share of each poisoned row's 5 nearest neighbours in the class that
are poisoned too (chance: the class's poison share), in the class's first 10 principal
directions of (a) the proxy's last-hidden-layer activations (the space the scan clusters) and
(b) the images' pixels; and the best single principal direction's AUROC in (a). MNIST 20k
cells of the same attacks are the comparison. Nothing here decides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, table_header

#: Attack-matrix cases measured, all seeds the matrix runs (digits 5, MNIST 3).
CASES = (
    "digits/patch-a2o-1pct", "digits/patch-a2o-3pct", "digits/blend-a2o-1pct",
    "digits/sig-a2o-1pct", "digits/checker-topleft-a2o-1pct", "digits/dot-rowcol-a2o-3pct",
    "digits/warp-a2o-1pct", "digits/patch-3src-10pct", "digits/patch-a2a-10pct",
    "digits/blend-a2a-10pct",
    "mnist/patch-a2o-1pct", "mnist/blend-a2o-1pct", "mnist/sig-a2o-1pct",
    "mnist/warp-a2o-1pct",
)
NEIGHBOURS = 5
COMPONENTS = 10

INTRO = (
    "Where the poisoned rows of a class gather (module docstring of "
    "`bench/experiments/digits_separation.py`): per cell and poisoned class, the share of each "
    f"poisoned row's {NEIGHBOURS} nearest neighbours in its class that are poisoned too (chance "
    "is the class's poison share), in the class's first "
    f"{COMPONENTS} principal directions of the proxy's last-hidden-layer activations (the space "
    "the scan clusters) and of the images' pixels, and the best single principal direction's "
    "AUROC in the activations; mean over the cell's seeds and poisoned classes, with the "
    "smallest. The proxies are the attack matrix's cached ones (the default proxy of the "
    "scan).")


def neighbour_purity(points: np.ndarray, poisoned: np.ndarray,
                     neighbours: int = NEIGHBOURS) -> float:
    """Mean share of each poisoned row's nearest neighbours (itself excluded) that are poisoned."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=neighbours + 1).fit(points).kneighbors(
        points[poisoned], return_distance=False)[:, 1:]
    return float(poisoned[index].mean())


def principal(values: np.ndarray) -> np.ndarray:
    """The rows in their first :data:`COMPONENTS` principal directions (seeded)."""
    from sklearn.decomposition import PCA

    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    return PCA(min(COMPONENTS, values.shape[1], len(values)), random_state=0).fit_transform(values)


def best_direction_auroc(points: np.ndarray, poisoned: np.ndarray) -> float:
    """The AUROC of the principal direction that best separates the poisoned rows (either sign)."""
    from sklearn.metrics import roc_auc_score

    scores = [roc_auc_score(poisoned, points[:, j]) for j in range(points.shape[1])]
    return float(max(max(s, 1.0 - s) for s in scores))


def _cell(case: Any, seed: int) -> list[tuple[float, float, float, float]]:
    """Per poisoned class of one cell: (poison share, purity activations, purity pixels, AUROC)."""
    from acgate.io.activations import read_activations
    from acgate.scan import ScanConfig
    from bench.experiments.redraw import aligned_truth, cached_activations

    dataset, cached = cached_activations(case, seed, ScanConfig(seed=seed))
    table = read_activations(cached)
    truth = aligned_truth(dataset, table)
    images = np.asarray(dataset.images)[np.asarray(table.indices)]
    labels = np.asarray(table.labels)
    out = []
    for label in np.unique(labels[truth]):
        rows = labels == label
        poisoned = truth[rows]
        activations = principal(table.activations[rows])
        out.append((float(poisoned.mean()), neighbour_purity(activations, poisoned),
                    neighbour_purity(principal(images[rows]), poisoned),
                    best_direction_auroc(activations, poisoned)))
    return out


def section(settings: BenchSettings) -> str:
    """One row per case: its seeds' poisoned classes, mean (smallest)."""
    from bench.experiments.attack_matrix import DEFAULT_SEEDS, all_cases

    cases = {case.name: case for case in all_cases()}
    rows = []
    for name in CASES:
        seeds = DEFAULT_SEEDS.get(name.split("/")[0], (0, 1, 2))
        found = np.array([v for seed in seeds for v in _cell(cases[name], seed)])
        rows.append([name, len(seeds), len(found), f"{found[:, 0].mean():.2f}",
                     f"{found[:, 1].mean():.2f} ({found[:, 1].min():.2f})",
                     f"{found[:, 2].mean():.2f} ({found[:, 2].min():.2f})",
                     f"{found[:, 3].mean():.2f} ({found[:, 3].min():.2f})"])
    return ("## digits_separation (issue 18: where poisoned rows gather, activations against "
            "pixels)\n\n" f"{INTRO}\n\n" + table_header(settings) + "\n"
            + markdown_table(["case", "seeds", "poisoned classes", "poison share of the class",
                              f"poisoned among {NEIGHBOURS} neighbours, activations",
                              f"poisoned among {NEIGHBOURS} neighbours, pixels",
                              "best direction AUROC, activations"], rows))


__all__ = ["CASES", "best_direction_auroc", "neighbour_purity", "principal", "section"]
