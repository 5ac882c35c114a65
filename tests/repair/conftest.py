"""Shared fixtures for the repair tests: digits split clean, the train part poisoned, scanned."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from threads import torch_threads

from acgate.io.datasets import dataset_fingerprint, write_image_dataset
from acgate.io.loaders import load_digits_dataset
from acgate.io.poison import poison_image_dataset
from acgate.io.results import write_result
from acgate.repair import holdout_split
from acgate.scan import ScanConfig, detect_table, extract_to_parquet, make_retrain, train_proxy
from acgate.stages import save_proxy


@dataclass(frozen=True)
class Scanned:
    folder: Path
    dataset_path: Path
    test_path: Path
    samples_path: Path
    model_path: Path
    poisoned: object
    result: object


@pytest.fixture(scope="session")
def scanned(tmp_path_factory) -> Scanned:
    """Digits: 25% clean test split; train part poisoned at 33% (seed 0), scanned with ExRe.

    The scan is the library's own stages (train proxy, extract, detect with exclusionary
    reclassification, write_result) plus the ``scan.json`` that ``run_scan`` writes, so the
    proxy's weights can be kept for the repair.
    """
    folder = tmp_path_factory.mktemp("repair")
    train, test = holdout_split(load_digits_dataset(), test_size=0.25, seed=0)
    poisoned = poison_image_dataset(train, rate=0.33, seed=0)
    dataset_path = write_image_dataset(poisoned, folder / "poisoned.parquet")
    test_path = write_image_dataset(test, folder / "test.parquet")
    config = ScanConfig(seed=0)
    with torch_threads(1):
        model, _ = train_proxy(poisoned, config)
        save_proxy(model, poisoned, config, folder / "proxy")  # model.pt + model.json
        model_path = folder / "proxy" / "model.pt"
        table = extract_to_parquet(model, poisoned, folder / "activations.parquet", config)
        result = detect_table(table, config, retrain_and_predict=make_retrain(poisoned, config))
    scan_dir = folder / "scan"
    write_result(result, scan_dir)
    (scan_dir / "scan.json").write_text(json.dumps(
        {"dataset": str(dataset_path), "fingerprint": dataset_fingerprint(poisoned)}))
    return Scanned(folder=folder, dataset_path=dataset_path, test_path=test_path,
                   samples_path=scan_dir / "samples.parquet", model_path=model_path,
                   poisoned=poisoned, result=result)

