"""``multimodal``: the paper's "7+" experiments on real MNIST (a multimodal class).

Run by ``python bench/run.py --only multimodal``. Digits 7, 8 and 9 are merged into one
class "7+" (label 7; the data then has 8 classes, 0-7), then BadNets poison (inverted
bottom-right patch, 10% of the target class) is added in three ways, as in the paper:

* ``0 <- 7+``: class 0 poisoned with triggered 7s, 8s and 9s;
* ``7+ <- 6``: the multimodal class poisoned with triggered 6s;
* ``7+ <- 4, 5, 6``: the multimodal class poisoned from three sources (evenly split).

Each run is judged by the default scan (proxy 2 epochs, PCA 10, stable candidates with
sub-clusters, exclusionary reclassification) and by the previous default (2-means, source share
0.47) on the same activations, plus an unpoisoned run of the merged data: a multimodal class
must not be flagged for its modes. Paper: ~100% accuracy and F1 in every experiment; issue
target: F1 >= 0.95.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import BenchSettings, markdown_table, table_header
from bench.image_runs import MERGED_7PLUS, detect_on, image_run, merge_7plus, scores

RATE = 0.10
#: (label in the tables, detect settings): the default and the previous default.
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("stable (default)", {}),
    ("2-means, share 0.47 (previous default)",
     {"n_clusters": 2, "source_share_threshold": 0.47, "confusion_threshold": 2.0}),
)
RUNS: tuple[tuple[str, list[tuple[int, int]] | None], ...] = (
    ("0 <- 7+", [(7, 0)]),
    ("7+ <- 6", [(6, 7)]),
    ("7+ <- 4, 5, 6", [(4, 7), (5, 7), (6, 7)]),
    ("unpoisoned (7+ merged)", None),
)


def merged_mnist() -> Any:
    """MNIST 60k with 7, 8 and 9 relabelled 7 ("7+")."""
    from acgate.io.loaders import load_mnist

    return merge_7plus(load_mnist(), name="mnist-7plus")


def section(settings: BenchSettings) -> str:
    """One default scan per run; poison F1, classes flagged, the 7+ class's report."""
    import torch

    from acgate.io.poison import poison_image_dataset

    torch.set_num_threads(settings.threads)
    rows, class_rows = [], []
    lowest: dict[Any, float] = {}
    clean_flags: dict[Any, list[int]] = {}
    for name, pairs in RUNS:
        clock = time.perf_counter()
        dataset = merged_mnist()
        if pairs is not None:
            dataset = poison_image_dataset(dataset, rate=RATE, pairs=pairs, seed=0)
        run = image_run(dataset, threads=settings.threads)
        truth = run["truth"]
        for k, settings in VARIANTS:
            result, _ = detect_on(run, analysis="auto", **settings)
            s = scores(result, run)
            seconds = time.perf_counter() - clock
            if pairs is not None:
                lowest[k] = min(lowest.get(k, 1.0), s["f1"])
                targets = sorted({t for _, t in pairs})
                target_f1 = ", ".join(f"{t}: {s['per_class'][t]['f1']:.3f}" for t in targets)
            else:
                clean_flags[k] = list(s["classes"])
                target_f1 = "-"
            rows.append([name, k, len(dataset), int(truth.sum()), s["precision"], s["recall"],
                         s["f1"], target_f1, s["source_accuracy"],
                         f"{len(s['classes'])} {list(s['classes'])}", seconds])
            for report in result.classes:
                if report.label in (0, MERGED_7PLUS[0]):
                    class_rows.append([
                        name, k, "7+" if report.label == MERGED_7PLUS[0] else report.label,
                        report.n_samples, list(report.cluster_sizes),
                        "-" if report.silhouette is None else f"{report.silhouette:.3f}",
                        "-" if report.exre_score is None else f"{report.exre_score:.2f}",
                        report.verdict, report.reason])
            print(f"multimodal {name} ({k}): F1 {s['f1']:.3f}, flagged {s['classes']}, "
                  f"{seconds:.0f} s", flush=True)
    met = {k: lowest[k] >= 0.95 and not clean_flags[k] for k in lowest}
    verdict = ", ".join(f"{k}: {'met' if ok else '**MISSED**'} (lowest F1 {lowest[k]:.3f}, "
                        f"clean run flags {clean_flags[k] or 'none'})" for k, ok in met.items())
    return (
        "## multimodal (real MNIST, 7 + 8 + 9 merged into \"7+\", BadNets 10%, default scan)\n\n"
        f"Target from the issue: F1 >= 0.95 on every 7+ run and no class flagged on the "
        f"unpoisoned merged data -> {verdict}. Candidates: the default (stable clusters at the "
        "smallest k that has any, plus stable sub-clusters inside them) and the previous "
        "default (the 2-means small cluster, source share 0.47, no confusion test). Source "
        "accuracy = share of correctly flagged "
        "poison whose suspected source is the true source (for `0 <- 7+` the true source is "
        "the merged label 7). Seconds: cumulative for the run (proxy, extraction, both "
        "detections).\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["run", "candidates", "rows", "poison rows", "precision",
                          "recall", "F1",
                          "target class F1", "source acc.", "classes flagged",
                          "seconds (scan)"], rows)
        + "\nClass 0 and the 7+ class in each run (cluster sizes at the candidates' level, "
          "silhouette, exclusionary-reclassification l/p, verdict and reason):\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["run", "candidates", "class", "rows", "cluster sizes",
                          "silhouette",
                          "exre l/p", "verdict", "reason"], class_rows))
