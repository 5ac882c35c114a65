"""Shared fixtures: one torch thread during tests, and cached poisoned-digits datasets and scans.

Training collapses when two torch threads spin on the two shared cores, so every test (and
the session fixtures that train) runs with ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from threads import torch_threads


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_session() -> Iterator[None]:
    # Session-scoped so that session fixtures that train (set up before any function-scoped
    # fixture) run with one thread too.
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def poisoned_digits() -> Callable[..., object]:
    """Factory ``poisoned_digits(rate, seed=0)``: BadNets-poisoned scikit-learn digits (cached).

    ``rate=None`` (or 0) gives the clean digits. The returned ``ImageDataset`` is shared: do
    not modify it. Poisoned datasets carry the ground truth in ``columns["is_poison"]``.
    """
    from acgate.io.loaders import load_digits_dataset
    from acgate.io.poison import poison_image_dataset

    cache: dict[tuple[float | None, int], object] = {}

    def make(rate: float | None = 0.33, seed: int = 0):
        key = (rate or None, seed)
        if key not in cache:
            clean = load_digits_dataset()
            cache[key] = clean if not rate else poison_image_dataset(clean, rate=rate, seed=seed)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def digits_parquet(poisoned_digits, tmp_path_factory) -> Callable[..., Path]:
    """Factory ``digits_parquet(rate, seed=0)``: the dataset written once as a Parquet file."""
    from acgate.io.datasets import write_image_dataset

    folder = tmp_path_factory.mktemp("digits-data")
    cache: dict[tuple[float | None, int], Path] = {}

    def make(rate: float | None = 0.33, seed: int = 0) -> Path:
        key = (rate or None, seed)
        if key not in cache:
            path = folder / f"digits-rate{rate or 0}-seed{seed}.parquet"
            write_image_dataset(poisoned_digits(rate, seed), path)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def digits_scan(digits_parquet, tmp_path_factory) -> Callable[..., object]:
    """Factory ``digits_scan(rate, seed=0)``: a full library scan (real proxy training and
    exclusionary-reclassification retrain, no MLflow, no HTML report), run once per key.

    Returns the :class:`acgate.scan.ScanOutcome`.
    """
    from acgate.scan import ScanConfig, run_scan

    cache: dict[tuple[float | None, int], object] = {}

    def make(rate: float | None = 0.33, seed: int = 0):
        key = (rate or None, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"scan-rate{rate or 0}-seed{seed}") / "out"
            with torch_threads(1):
                cache[key] = run_scan(digits_parquet(rate, seed), out, ScanConfig(seed=seed),
                                      tracking_uri=None, report=False)
        return cache[key]

    return make
