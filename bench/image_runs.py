"""A trained proxy's activations bundled with the poisoner's ground truth, and scoring them.

A *run* is the dict :func:`image_run` / :func:`digits_run` return: ``dataset``, ``truth``
(``is_poison``), ``source`` (true source class), ``activations``, ``predictions``, ``config``
(the :class:`acgate.scan.ScanConfig`), ``timings``, ``model`` and ``retrain`` (a memoised
``retrain_and_predict``). :func:`detect_on` judges a run's activations with any detector
setting; :func:`scores` compares the result with the truth.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchSettings

#: Rates of the digits experiments (``None``: the unpoisoned run).
DIGITS_RATES = (0.10, 0.15, 0.33, None)
#: The classes merged into one class "7+" (the paper's multimodal experiments).
MERGED_7PLUS = (7, 8, 9)


def digits_seeds(settings: BenchSettings) -> tuple[int, ...]:
    """Seeds of the digits experiments (one in quick mode)."""
    return (0,) if settings.quick else (0, 1, 2, 3, 4)


def digits_rates(settings: BenchSettings) -> tuple[float | None, ...]:
    """Rates of the digits experiments (10% and clean in quick mode)."""
    return (0.10, None) if settings.quick else DIGITS_RATES


def memoised_retrain(retrain: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Cache a ``retrain_and_predict`` callable by (train mask, query) content."""
    cache: dict[str, np.ndarray] = {}

    def wrapped(train_mask: np.ndarray, query_positions: np.ndarray) -> np.ndarray:
        key = hashlib.sha256(np.asarray(train_mask, dtype=bool).tobytes()
                             + np.asarray(query_positions, dtype=np.int64).tobytes()).hexdigest()
        if key not in cache:
            cache[key] = retrain(train_mask, query_positions)
        return cache[key]

    return wrapped


def _ground_truth(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(is_poison, source label)`` from the poisoner's columns; a clean dataset otherwise."""
    if "is_poison" in dataset.columns:
        return (np.asarray(dataset.columns["is_poison"], dtype=bool),
                np.asarray(dataset.columns["source_label"], dtype=np.int64))
    return np.zeros(len(dataset), dtype=bool), np.asarray(dataset.labels)


def _activation_cache(dataset: Any, seed: int, threads: int) -> Path | None:
    """``$ACGATE_BENCH_CACHE/<fingerprint>.npz`` when that variable names a folder, else None.

    Experiments that train the same default proxy on the same data (beyond_mnist, candidates,
    multimodal, mnist) then train it once; the cached file holds the activations, the
    predictions and the measured training / extraction seconds.
    """
    folder = os.environ.get("ACGATE_BENCH_CACHE")
    if not folder:
        return None
    from acgate.io.datasets import dataset_fingerprint

    key = hashlib.sha256(f"{dataset_fingerprint(dataset)}/seed={seed}/torch-threads="
                         f"{threads}".encode()).hexdigest()[:24]
    return Path(folder) / f"{key}.npz"


def image_run(dataset: Any, *, threads: int, seed: int = 0, cache: bool = True
              ) -> dict[str, Any]:
    """Train the default proxy on ``dataset`` and bundle what ``detect_on`` / ``scores`` need.

    Args:
        dataset: An image dataset; its ``is_poison`` / ``source_label`` columns (when present)
            are the ground truth, else it counts as clean.
        threads: Torch threads of this process (part of the activation-cache key: the same
            proxy trained with other threads gives other activations).
        seed: The proxy's seed.
        cache: Use ``$ACGATE_BENCH_CACHE`` when it is set (then ``model`` may be ``None``).

    Returns:
        The run (see the module docstring); ``timings`` has "train proxy" and "extract".
    """
    from acgate.scan import ScanConfig, make_retrain, train_proxy
    from acgate.torch.extract import extract_activations

    truth, source = _ground_truth(dataset)
    config = ScanConfig(seed=seed)
    cache_path = _activation_cache(dataset, seed, threads) if cache else None
    model = None
    if cache_path is not None and cache_path.is_file():
        stored = np.load(cache_path)
        activations, predictions = stored["activations"], stored["predictions"]
        timings = {"train proxy": float(stored["train_seconds"]),
                   "extract": float(stored["extract_seconds"])}
    else:
        clock = time.perf_counter()
        model, _ = train_proxy(dataset, config)
        timings = {"train proxy": time.perf_counter() - clock}
        clock = time.perf_counter()
        activations, predictions = extract_activations(model, dataset.images)
        timings["extract"] = time.perf_counter() - clock
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            temp = cache_path.with_name(f".{cache_path.stem}.{os.getpid()}.npz")
            np.savez(temp, activations=activations, predictions=predictions,
                     train_seconds=timings["train proxy"], extract_seconds=timings["extract"])
            os.replace(temp, cache_path)
    return {"dataset": dataset, "truth": truth, "source": source, "activations": activations,
            "predictions": predictions, "config": config, "timings": timings, "model": model,
            "retrain": memoised_retrain(make_retrain(dataset, config))}


@functools.cache
def digits_run(rate: float | None, seed: int, epochs: int | None = None) -> dict[str, Any]:
    """Poisoned digits + trained proxy + activations + retrain callable.

    Memoised on its arguments: the digits experiments of one process share each proxy (and
    its memoised retrains).

    Args:
        rate: BadNets all-to-all rate (share of each target class); ``None``: unpoisoned.
        seed: Seed of the poison and the proxy.
        epochs: Proxy epochs (``None``: the ScanConfig default).

    Returns:
        The run; ``timings`` has "load_poison", "train_proxy" and "extract".
    """
    from acgate.io.loaders import load_digits_dataset
    from acgate.io.poison import poison_image_dataset
    from acgate.scan import ScanConfig, make_retrain, train_proxy
    from acgate.torch.extract import extract_activations

    timings = {}
    clock = time.perf_counter()
    dataset = load_digits_dataset()
    if rate is not None:
        dataset = poison_image_dataset(dataset, rate=rate, seed=seed)
    truth, source = _ground_truth(dataset)
    timings["load_poison"] = time.perf_counter() - clock
    config = ScanConfig(seed=seed, epochs=epochs)
    clock = time.perf_counter()
    model, _ = train_proxy(dataset, config)
    timings["train_proxy"] = time.perf_counter() - clock
    clock = time.perf_counter()
    activations, predictions = extract_activations(model, dataset.images)
    timings["extract"] = time.perf_counter() - clock
    return {"dataset": dataset, "truth": truth, "source": source, "activations": activations,
            "predictions": predictions, "timings": timings, "config": config,
            "retrain": memoised_retrain(make_retrain(dataset, config))}


def detector_inputs(run: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for ``detect`` completed with the run's retrain, seed and predictions."""
    kwargs = dict(kwargs)
    if kwargs.get("analysis") in ("exre", "auto"):
        kwargs.setdefault("retrain_and_predict", run["retrain"])
    kwargs.setdefault("random_state", run["config"].seed)
    # The proxy's predictions, as a scan passes them (the natural-confusion test uses them).
    kwargs.setdefault("predictions", run.get("predictions"))
    return kwargs


def detect_on(run: dict[str, Any], **kwargs: Any) -> tuple[Any, float]:
    """Run ``acgate.core.detect`` on a run's activations; returns (result, wall seconds)."""
    from acgate.core.detect import detect

    kwargs = detector_inputs(run, kwargs)
    start = time.perf_counter()
    result = detect(run["activations"], run["dataset"].labels, **kwargs)
    return result, time.perf_counter() - start


def scores(result: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Overall and per-class flag metrics, classes flagged, source accuracy."""
    from acgate.core import flag_metrics

    metrics = flag_metrics(result, run["truth"])
    hit = np.asarray(result.is_poison) & run["truth"]
    n_hit = int(hit.sum())
    source_ok = int((np.asarray(result.suspected_source)[hit] == run["source"][hit]).sum())
    return {**metrics["overall"], "per_class": metrics["per_class"],
            "classes": tuple(result.poisoned_classes),
            "source_accuracy": source_ok / n_hit if n_hit else float("nan")}


def quality_cell(result: Any, run: dict[str, Any], rate: float | None) -> str:
    """``F1`` for a poisoned run, ``n flagged (classes)`` for the clean run."""
    s = scores(result, run)
    if rate is None:
        return f"{len(s['classes'])} {list(s['classes'])}"
    return f"{s['f1']:.3f}"


def merge_7plus(dataset: Any, name: str | None = None) -> Any:
    """``dataset`` with 7, 8 and 9 relabelled 7 ("7+"); ``name`` defaults to ``<name>-7plus``."""
    from acgate.io.datasets import ImageDataset

    labels = np.asarray(dataset.labels).copy()
    labels[np.isin(labels, MERGED_7PLUS)] = MERGED_7PLUS[0]
    return ImageDataset(images=dataset.images, labels=labels, metadata=dict(dataset.metadata),
                        name=name or f"{dataset.name}-7plus")


def merge_zero_and_one(dataset: Any) -> Any:
    """Digits 0 and 1 relabelled as one class, the others shifted down by one (no poison)."""
    from acgate.io.datasets import ImageDataset

    labels = dataset.labels.copy()
    labels[labels == 1] = 0
    labels = np.where(labels > 1, labels - 1, labels)
    return ImageDataset(images=dataset.images, labels=labels, name="digits-0+1")
