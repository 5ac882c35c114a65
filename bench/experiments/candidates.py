"""``candidates``: which clusters exclusionary reclassification judges, and how.

The table that chose the defaults.

Run by ``python bench/run.py --only candidates``. ``ACGATE_BENCH_CANDIDATE_RUNS=a,b`` runs only
those runs (to split them over processes); each run's rows are kept in
``bench/parts/candidates/<run>.json`` and the section is rebuilt from every run present.

Every run trains the default proxy once and judges the same activations with each variant:

* ``2-means, share 0.47`` — the previous default (2-means small cluster within the 0.45 cut,
  source share 0.47, no confusion test);
* ``stable, no sub-clusters`` — stable candidates (``n_clusters="stable"``) with sub-clusters
  effectively off (a sub-cluster must go 100% to one class), source share 0.47, no confusion
  test;
* ``stable + sub-clusters`` — the same with sub-clusters judged at source share 0.7;
* ``stable + sub-clusters + confusion, share 0.47`` — adds the natural-confusion test (0.03);
* ``default`` — the same at source share 0.5: what ships;
* ``share 0.47, 2-level stability`` — the 0.47 row with clusters required to keep their
  boundary at k + 1 and k + 2.

Digits: BadNets 5 / 10 / 15 / 33%, a blended trigger (alpha 0.1) at 15%, the unpoisoned data and
two clean classes merged under one label (0 + 1), seeds 0-4 (the seed draws the poison and
trains the proxy). MNIST-scale (seed 0): BadNets 2 / 5 / 10%, blend 0.1 at 10%, unpoisoned
MNIST and Fashion-MNIST, and the paper's "7+" runs (7, 8, 9 merged; see
:mod:`bench.experiments.multimodal`).

The stability depth is a parameter of the clustering (``cluster_classes(...,
stability_depth=...)``), not of ``detect``; :func:`detect_at_depth` therefore runs the steps of
``acgate.core.detect.detect`` itself with the public functions it is made of.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any

import numpy as np

from bench.common import BenchSettings, cached_runs, markdown_table, table_header
from bench.image_runs import detector_inputs, image_run, merge_zero_and_one, scores

#: Folder of the run records, under the settings' parts folder.
CACHE_NAME = "candidates"
DIGITS_SEEDS = (0, 1, 2, 3, 4)
DIGITS_KINDS = ("5%", "10%", "15%", "33%", "blend", "clean", "merged")
MNIST_RUNS = ("mnist-2%", "mnist-5%", "mnist-10%", "mnist-blend", "mnist-clean",
              "fashion-clean", "7+ 0<-7+", "7+ 7+<-6", "7+ 7+<-4+5+6", "7+ clean")
VARIANTS: tuple[tuple[str, dict[str, Any], int], ...] = (
    # name, detect keyword arguments, stability depth
    ("2-means, share 0.47 (previous default)",
     {"n_clusters": 2, "source_share_threshold": 0.47, "confusion_threshold": 2.0}, 1),
    ("stable, no sub-clusters", {"source_share_threshold": 0.47,
                                 "nested_source_share_threshold": 1.0, "confusion_threshold": 2.0},
     1),
    ("stable + sub-clusters", {"source_share_threshold": 0.47, "confusion_threshold": 2.0}, 1),
    ("stable + sub-clusters + confusion, share 0.47", {"source_share_threshold": 0.47}, 1),
    ("default: stable + sub-clusters + confusion, share 0.5", {}, 1),
    ("share 0.47, 2-level stability", {"source_share_threshold": 0.47}, 2),
)


def run_names() -> list[str]:
    """Every run, digits first."""
    return [f"digits-{kind}-s{seed}" for seed in DIGITS_SEEDS for kind in DIGITS_KINDS] + list(
        MNIST_RUNS)


def _digits(kind: str, seed: int) -> Any:
    from acgate.io.loaders import load_digits_dataset
    from acgate.io.poison import TriggerSpec, poison_image_dataset

    base = load_digits_dataset()
    if kind == "clean":
        return base
    if kind == "merged":
        return merge_zero_and_one(base)
    if kind == "blend":
        return poison_image_dataset(base, rate=0.15, seed=seed,
                                    trigger=TriggerSpec(kind="blend", alpha=0.1, seed=0))
    return poison_image_dataset(base, rate=float(kind.rstrip("%")) / 100, seed=seed)


def _mnist(name: str) -> Any:
    from acgate.io.loaders import load_fashion_mnist, load_mnist
    from acgate.io.poison import TriggerSpec, poison_image_dataset

    if name == "fashion-clean":
        return load_fashion_mnist()
    if name.startswith("7+"):
        from bench.experiments.multimodal import RUNS, merged_mnist

        pairs = {"7+ 0<-7+": RUNS[0][1], "7+ 7+<-6": RUNS[1][1], "7+ 7+<-4+5+6": RUNS[2][1],
                 "7+ clean": None}[name]
        merged = merged_mnist()
        return merged if pairs is None else poison_image_dataset(merged, rate=0.10, pairs=pairs,
                                                                 seed=0)
    mnist = load_mnist()
    if name == "mnist-clean":
        return mnist
    if name == "mnist-blend":
        return poison_image_dataset(mnist, rate=0.10, seed=0,
                                    trigger=TriggerSpec(kind="blend", alpha=0.1, seed=0))
    return poison_image_dataset(mnist, rate=float(name.split("-")[1].rstrip("%")) / 100, seed=0)


def detect_at_depth(activations: Any, labels: Any, *, stability_depth: int,
                    **settings: Any) -> Any:
    """``acgate.core.detect.detect`` with the clustering's stability depth as a parameter.

    The same steps as ``detect``: validate, ``resolve_settings``, ``resolve_n_clusters``,
    ``cluster_classes`` (here with ``stability_depth``), ``analyze``.

    Args:
        activations: Last-hidden-layer activations (n_samples x n_features).
        labels: Training label per sample.
        stability_depth: How many larger k a stable cluster must keep its boundary at.
        **settings: Keyword arguments of ``detect``; the ones not given take its defaults.

    Returns:
        The ``DetectionResult``.

    Raises:
        TypeError: A setting that is not a keyword argument of ``detect``.
        ValueError: Invalid inputs or settings, as ``detect`` raises them.
    """
    from acgate.core import validation
    from acgate.core.detect import (
        REDUCERS,
        SEGMENTS,
        analyze,
        cluster_classes,
        detect,
        detector_params,
        resolve_n_clusters,
        resolve_settings,
    )

    defaults = {name: parameter.default
                for name, parameter in inspect.signature(detect).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise TypeError(f"detect_at_depth: {unknown} are not keyword arguments of detect")
    given = {**defaults, **settings}
    start = time.perf_counter()
    x = validation.check_activations(activations)
    y = validation.check_labels(labels, x.shape[0])
    validation.check_class_count(y)
    ids = validation.check_sample_ids(given["sample_ids"], x.shape[0])
    reducer = validation.check_choice(given["reducer"], REDUCERS, name="reducer")
    segment_by = validation.check_choice(given["segment_by"], SEGMENTS, name="segment_by")
    n_components = validation.check_positive_int(given["n_components"], name="n_components")
    min_class_size = validation.check_positive_int(given["min_class_size"],
                                                   name="min_class_size")
    seed = validation.check_random_state(given["random_state"])
    retrain = given["retrain_and_predict"]
    analysis, thresholds = resolve_settings(
        given["analysis"], retrain, size_threshold=given["size_threshold"],
        silhouette_threshold=given["silhouette_threshold"],
        exre_threshold=given["exre_threshold"],
        source_share_threshold=given["source_share_threshold"],
        nested_source_share_threshold=given["nested_source_share_threshold"],
        confusion_threshold=given["confusion_threshold"],
        overlap_threshold=given["overlap_threshold"])
    n_clusters = resolve_n_clusters(given["n_clusters"], analysis, len(np.unique(y)))
    predictions = given["predictions"]
    if predictions is not None:
        predictions = validation.check_labels(predictions, x.shape[0], name="predictions")
    if segment_by == "prediction" and predictions is None:
        raise ValueError("segment_by='prediction' needs predictions (one per sample)")
    segments = predictions if segment_by == "prediction" else y
    params = detector_params(
        analysis, thresholds, reducer=reducer, n_components=n_components,
        n_clusters=n_clusters, segment_by=segment_by, min_class_size=min_class_size,
        random_state=seed, redraw_components=given["redraw_components"])
    validated = time.perf_counter()
    clusterings = cluster_classes(
        x, segments, ids, reducer=reducer, n_components=n_components, n_clusters=n_clusters,
        random_state=seed, min_class_size=min_class_size, size_threshold=thresholds.size,
        stability_depth=stability_depth)
    clustered = time.perf_counter()
    return analyze(
        x, y, clusterings, sample_ids=ids, segments=segments, analysis=analysis,
        thresholds=thresholds, class_thresholds=given["class_thresholds"],
        retrain_and_predict=retrain, predictions=predictions, params=params,
        redraw_components=given["redraw_components"],
        timings={"validate": validated - start, "cluster": clustered - validated})


def _one_run(settings: BenchSettings, name: str) -> dict[str, Any]:
    if name.startswith("digits-"):
        _, kind, seed_text = name.split("-")
        seed = int(seed_text[1:])
        run = image_run(_digits(kind, seed), threads=settings.threads, seed=seed)
    else:
        run = image_run(_mnist(name), threads=settings.threads)
    poisoned = bool(run["truth"].any())
    cells = {}
    for variant, kwargs, depth in VARIANTS:
        start = time.perf_counter()
        result = detect_at_depth(run["activations"], run["dataset"].labels,
                                 stability_depth=depth,
                                 **detector_inputs(run, {"analysis": "auto", **kwargs}))
        seconds = time.perf_counter() - start
        s = scores(result, run)
        cells[variant] = {"f1": s["f1"] if poisoned else None, "classes": list(s["classes"]),
                          "seconds": seconds}
        print(f"candidates {name} / {variant}: "
              f"{'F1 %.3f' % s['f1'] if poisoned else 'clean'} flagged {s['classes']}",
              flush=True)
    return {"poisoned": poisoned, "cells": cells, "header": table_header(settings),
            "proxy_seconds": sum(run["timings"].values())}


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "-"


def _summary(cached: dict[str, dict[str, Any]]) -> str:
    header = ["variant"] + [f"digits {k} F1 (mean / min)" for k in DIGITS_KINDS[:5]] + [
        "digits clean: flags (5 seeds)", "digits 0+1 merged: runs flagged",
        "MNIST 2 / 5 / 10% / blend F1", "7+ F1 (0<-7+, 7+<-6, 7+<-4+5+6)",
        "clean MNIST / Fashion / 7+: flags"]
    rows = []
    for variant, _, _ in VARIANTS:
        def cell(run: str) -> dict[str, Any] | None:
            return cached[run]["cells"][variant] if run in cached else None

        row: list[Any] = [variant]
        for kind in DIGITS_KINDS[:5]:
            f1s = [c["f1"] for s in DIGITS_SEEDS if (c := cell(f"digits-{kind}-s{s}"))]
            row.append(f"{_mean(f1s)} / {min(f1s):.3f}" if f1s else "-")
        clean = [c["classes"] for s in DIGITS_SEEDS if (c := cell(f"digits-clean-s{s}"))]
        row.append(f"{sum(len(c) for c in clean)} ({len(clean)} runs)")
        merged = [c["classes"] for s in DIGITS_SEEDS if (c := cell(f"digits-merged-s{s}"))]
        row.append(f"{sum(1 for c in merged if c)} of {len(merged)}")
        row.append(" / ".join(f"{c['f1']:.3f}" if (c := cell(r)) else "-" for r in (
            "mnist-2%", "mnist-5%", "mnist-10%", "mnist-blend")))
        row.append(" / ".join(f"{c['f1']:.3f}" if (c := cell(r)) else "-" for r in (
            "7+ 0<-7+", "7+ 7+<-6", "7+ 7+<-4+5+6")))
        row.append(" / ".join(str(c["classes"]) if (c := cell(r)) else "-" for r in (
            "mnist-clean", "fashion-clean", "7+ clean")))
        rows.append(row)
    return markdown_table(header, rows)


def _merged_headers(headers: list[str]) -> list[str]:
    """One command + machine block per distinct setting, with the date range of its runs."""
    by_setting: dict[str, list[str]] = {}
    for header in headers:
        match = re.search(r"; date (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", header)
        date = match.group(1) if match else "?"
        by_setting.setdefault(header.replace(f"; date {date} UTC", "", 1), []).append(date)
    merged = []
    for setting, dates in by_setting.items():
        when = f"; dates {min(dates)} - {max(dates)} UTC ({len(dates)} runs)"
        machine_end = setting.index("\n", setting.index("machine:"))
        line_end = machine_end - 2 if setting[machine_end - 2:machine_end] == "  " else machine_end
        merged.append(setting[:line_end] + when + setting[line_end:])
    return merged


def section(settings: BenchSettings) -> str:
    """Run the selected runs (env ``ACGATE_BENCH_CANDIDATE_RUNS``), merge with cached rows."""
    import torch

    torch.set_num_threads(settings.threads)
    names = run_names()
    cached = cached_runs(settings.parts_dir / CACHE_NAME, "ACGATE_BENCH_CANDIDATE_RUNS", names,
                         lambda name: _one_run(settings, name))
    detail_rows = []
    for name in names:
        if name not in cached:
            continue
        record = cached[name]
        detail_rows.append([name] + [
            (f"{c['f1']:.3f}" if record["poisoned"] else "clean") + f" {c['classes']}"
            for c in (record["cells"][v] for v, _, _ in VARIANTS)]
            + [record["proxy_seconds"]]
            + [record["cells"][VARIANTS[1][0]]["seconds"]])
    headers = _merged_headers([cached[n]["header"] for n in names if n in cached])
    missing = [n for n in names if n not in cached]
    return (
        "## candidates (which clusters exclusionary reclassification judges: the table that "
        "chose the defaults)\n\n"
        "Every run trains the default proxy once; each variant judges the same activations "
        "(exclusionary reclassification; `bench/experiments/candidates.py` describes the "
        "variants). "
        "Digits: 5 seeds (the seed draws the poison and trains the proxy); MNIST-scale: seed 0. "
        "Targets of the issues: digits F1 >= 0.9 at 10 / 15 / 33%, MNIST F1 >= 0.95 at 5% and "
        "on the 7+ runs, >= 0.9 on the blended trigger, and no class flagged in any clean run "
        "(clean digits, the 0 + 1 merge, clean MNIST, Fashion-MNIST, 7+ merged). Source share "
        "0.5 over 0.47: both flag the same rows in every MNIST-scale run but the unpoisoned 7+ "
        "one, where 0.47 flags class 7 (a false alarm blocks every scheduled run); on digits "
        "0.47 has the higher F1 and the same clean flags (`source_share`).\n\n"
        + "\n".join(headers) + "\n"
        + _summary(cached)
        + ("" if not missing else f"\nNot run yet: {', '.join(missing)}.\n")
        + "\nPer run: F1 (poisoned runs) or `clean`, then the classes flagged; last columns: "
          "proxy training + extraction seconds, and the detection seconds of the first stable "
          "variant (stable clustering + its retrain + analysis: what the default costs; the "
          "later stable variants reuse that retrain).\n\n"
        + markdown_table(["run"] + [v for v, _, _ in VARIANTS]
                         + ["proxy s", "stable detect s"], detail_rows))
