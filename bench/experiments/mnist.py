"""``mnist``: real MNIST, BadNets 10 / 15 / 33% all-to-all, the default scan (paper Table 3).

Also an unpoisoned run, the paper's raw-pixel baseline, and per-class size ratios,
silhouettes and exclusionary-reclassification scores.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.common import BenchSettings, markdown_table, rate_name, table_header
from bench.image_runs import detect_on, image_run, scores

MNIST_RATES = (0.10, 0.15, 0.33, None)  # None: the unpoisoned run


def raw_pixel_baseline(dataset: Any, truth: np.ndarray) -> dict[str, Any]:
    """The paper's baseline: FastICA 10 + 2-means on the flattened images, smaller cluster."""
    from acgate.core import flag_metrics
    from acgate.core.detect import detect

    flat = np.asarray(dataset.images, dtype=np.float32).reshape(len(dataset), -1)
    start = time.perf_counter()
    result = detect(flat, dataset.labels, reducer="ica", n_components=10, n_clusters=2,
                    analysis="size", size_threshold=0.5, random_state=0)
    metrics = flag_metrics(result, truth)
    per_class_accuracy = [c["accuracy"] for c in metrics["per_class"]]
    return {**metrics["overall"], "seconds": time.perf_counter() - start,
            "mean_class_accuracy": float(np.mean(per_class_accuracy))}


def section(settings: BenchSettings) -> str:
    """Real MNIST, BadNets 10 / 15 / 33% all-to-all, default scan (paper Table 3).

    Also an unpoisoned run, the raw-pixel baseline, and per-class size ratios, silhouettes and
    ExRe scores.
    """
    import torch

    from acgate.io.loaders import load_mnist
    from acgate.io.poison import poison_image_dataset
    from acgate.torch.evaluate import clean_accuracy

    torch.set_num_threads(settings.threads)
    rows_overall, rows_class, rows_time, rows_table3, rows_raw = [], [], [], [], []
    clean_verdicts = ""
    test = load_mnist(split="test")
    for rate in MNIST_RATES:
        clock = time.perf_counter()
        dataset = load_mnist()
        if rate is not None:
            dataset = poison_image_dataset(dataset, rate=rate, seed=0)
        load_seconds = time.perf_counter() - clock
        # the trained model itself is needed for the test accuracy: no activation cache
        run = image_run(dataset, threads=settings.threads, cache=False)
        truth = run["truth"]
        timings = {"load": load_seconds, **run["timings"]}
        test_acc = clean_accuracy(run["model"], test.images, test.labels)
        result, seconds = detect_on(run, analysis="auto")
        analyze = result.info.timings.get("analyze", float("nan"))
        timings["cluster"] = seconds - analyze
        timings["analyze (incl. exre retrain)"] = analyze
        s = scores(result, run)
        rows_overall.append([rate_name(rate), len(dataset), test_acc, s["precision"],
                             s["recall"], s["f1"], s["source_accuracy"],
                             f"{len(s['classes'])} {list(s['classes'])}"])
        rows_class.append([rate_name(rate), "F1"] + [f"{c['f1']:.3f}" for c in s["per_class"]])
        rows_class.append([rate_name(rate), "accuracy"]
                          + [f"{c['accuracy']:.4f}" for c in s["per_class"]])
        rows_time.append([rate_name(rate)] + [timings[k] for k in (
            "load", "train proxy", "extract", "cluster", "analyze (incl. exre retrain)")])
        for report in result.classes:
            rows_table3.append([
                rate_name(rate), report.label,
                "-" if report.size_ratio is None else f"{report.size_ratio:.3f}",
                "-" if report.silhouette is None else f"{report.silhouette:.3f}",
                "-" if report.exre_score is None else f"{report.exre_score:.2f}",
                "-" if report.suspected_source is None else report.suspected_source,
                report.verdict])
        if rate is not None:
            raw = raw_pixel_baseline(dataset, truth)
            rows_raw.append([rate_name(rate), raw["mean_class_accuracy"], raw["precision"],
                             raw["recall"], raw["f1"], raw["seconds"], s["f1"]])
        if rate is None:
            clean_verdicts = "\n".join(f"- class {c.label}: {c.verdict} — {c.reason}"
                                       for c in result.classes)
        print(f"mnist {rate_name(rate)}: F1 {s['f1']:.3f}, flagged {s['classes']}", flush=True)
    poisoned = [r for r in rows_overall if r[0] != rate_name(None)]
    clean_row = [r for r in rows_overall if r[0] == rate_name(None)][0]
    n_clean_flagged = int(clean_row[7].split()[0])
    lowest = min(r[5] for r in poisoned)
    met = lowest >= 0.99 and n_clean_flagged == 0
    verdict = "met" if met else "**MISSED**"
    return (
        "## mnist (real MNIST 60k, BadNets 10 / 15 / 33% all-to-all, default scan, 2 epochs)\n\n"
        f"Target from the issue: F1 >= 0.99 at 10, 15 and 33% with no clean class flagged -> "
        f"{verdict} (lowest F1 {lowest:.3f}; classes flagged on unpoisoned MNIST: "
        f"{n_clean_flagged}). Per-class accuracy = share of the class's rows whose flag is "
        "right.\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["run", "rows", "proxy test acc.", "precision", "recall", "F1",
                          "source acc.", "classes flagged"], rows_overall)
        + "\nPer class (0-9):\n\n" + table_header(settings) + "\n"
        + markdown_table(["run", "metric"] + [str(c) for c in range(10)], rows_class)
        + "\nRaw-pixel baseline (the paper's: FastICA 10 + 2-means on the flattened 784 pixels, "
          "the smaller cluster of each class flagged; `detect(images, reducer='ica', "
          "analysis='size', size_threshold=0.5)`). Paper: 58.6% accuracy / 15.8% F1 at 10%, "
          "90.8% / 86.4% at 33%. Accuracy = mean over classes of the share of rows whose flag "
          "is right; last column: acgate's default scan on the same data.\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["run", "mean class accuracy", "precision", "recall", "F1", "seconds",
                          "acgate default F1"], rows_raw)
        + "\nPer class: share of the suspicious (else smallest) cluster, silhouette of the "
          "clustering it comes from (the candidates' k), exclusionary-reclassification l/p of the "
          "candidate (`-`: no stable candidate under the 0.45 size cut) and suspected source "
          "(the paper's Table 3 analogue: the paper reports size ratios <= .11 and silhouettes "
          "mostly >= .15 for poisoned classes).\n\n"
        + table_header(settings) + "\n"
        + markdown_table(["run", "class", "size ratio", "silhouette", "exre l/p",
                          "suspected source", "verdict"], rows_table3)
        + "\nWall seconds per stage:\n\n" + table_header(settings) + "\n"
        + markdown_table(["run", "load (+poison)", "train proxy", "extract", "cluster",
                          "analyze (incl. exre retrain)"], rows_time)
        + "\nVerdicts on unpoisoned MNIST:\n\n" + clean_verdicts + "\n")

