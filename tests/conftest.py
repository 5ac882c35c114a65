"""Shared fixtures: one torch thread during tests, and cached poisoned-digits datasets and scans.

Training collapses when two torch threads spin on the two shared cores, so every test (and
the session fixtures that train) runs with ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from threads import torch_threads

#: Test files that take about a minute or more, heaviest first (under ``make test`` on a loaded
#: 2-core machine: the nightly re-scan 305 s, the 4-shard poisoned run 153 s, then 149, 97 s
#: ...; the nightly re-scan has a file of its own so that the two longest tests can run on
#: different workers). They start first, so that under ``make test`` (``-n 2 --dist
#: loadfile``: a file runs whole on one worker) no worker is left with one of them at the end
#: while the other idles; the order inside a file is kept.
HEAVY_FILES_FIRST = (
    "tests/kfp/test_kfp_nightly.py",
    "tests/kfp/test_kfp_local_run.py",
    "tests/beyond/test_beyond_attack_matrix.py",
    "tests/mlflow/test_mlflow_outages.py",
    "tests/reliability/test_rel_faults.py",
    "tests/kfp/test_kfp_components.py",
    "tests/cli/test_cli_incremental.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run :data:`HEAVY_FILES_FIRST` first (a stable sort: every other test keeps its place)."""
    rank = {name: position for position, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


#: The interpreter's print and the root logger's level, as the session started.
_PRINT = builtins.print
_ROOT_LEVEL = logging.getLogger().level


@pytest.fixture(autouse=True)
def _print_and_root_logger_restored() -> Iterator[None]:
    # kfp 2.17's local runner swaps builtins.print for an indenting one, and the root logger's
    # handlers for one writing to the sys.stdout of that moment, around each task, from the
    # threads that run parallel tasks, and can leave them swapped (pipeline.run_locally
    # restores both; tests that call kfp.local directly may not): a later CLI test on the same
    # worker would then read "    " before its output, or "--- Logging error ---" from a
    # handler whose stream (an earlier test's captured stdout) is closed.
    yield
    builtins.print = _PRINT
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if type(handler.formatter).__module__ == "kfp.local.logging_utils":
            root.removeHandler(handler)
            root.setLevel(_ROOT_LEVEL)  # kfp's INFO came with it


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


#: The incremental tests' split of digits: seed 3 (digits' small classes raise a false alarm in
#: the accepted data's own scan on seeds 0, 1, 2 and 4, and such a baseline is refused), 10%
#: held out as the new partition, its poison all-to-one into class 3 at 5% of the partition.
PARTITION_SEED, PARTITION_SHARE, PARTITION_TARGET = 3, 0.1, 3


def _digits_subset(dataset, rows, images=None):
    from acgate.io.datasets import ImageDataset

    return ImageDataset(images=dataset.images[rows] if images is None else images,
                        labels=dataset.labels[rows], metadata=dict(dataset.metadata),
                        name="digits-part")


@pytest.fixture(scope="session")
def digits_partitions(poisoned_digits, tmp_path_factory) -> dict[str, object]:
    """Accepted digits (90%), the new partition and its poisoned, inverted and resized twins.

    Parquet files under ``"accepted"``, ``"clean"``, ``"poisoned"``, ``"inverted"``, ``"9x9"``;
    ``"truth"``: the poisoned partition's poison rows; ``"folder"``: where they are.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from acgate.io.datasets import write_image_dataset
    from acgate.io.poison import poison_image_dataset

    digits = poisoned_digits(None)
    kept, new = train_test_split(np.arange(len(digits)), test_size=PARTITION_SHARE,
                                 stratify=digits.labels, random_state=PARTITION_SEED)
    kept, new = np.sort(kept), np.sort(new)
    folder = tmp_path_factory.mktemp("incremental")
    partition = _digits_subset(digits, new)
    poisoned = poison_image_dataset(partition, rate=0.05, all_to_one=PARTITION_TARGET,
                                    rate_of="data", seed=PARTITION_SEED)
    padded = np.pad(digits.images[new], ((0, 0), (0, 0), (0, 1), (0, 1)))
    inverted = _digits_subset(digits, new, 1.0 - digits.images[new])
    return {"accepted": write_image_dataset(_digits_subset(digits, kept),
                                            folder / "accepted.parquet"),
            "clean": write_image_dataset(partition, folder / "clean.parquet"),
            "poisoned": write_image_dataset(poisoned, folder / "poisoned.parquet"),
            "inverted": write_image_dataset(inverted, folder / "inverted.parquet"),
            "9x9": write_image_dataset(_digits_subset(digits, new, padded),
                                       folder / "9x9.parquet"),
            "truth": np.asarray(poisoned.columns["is_poison"], bool), "folder": folder}


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
