"""``acgate scan PARTITION --baseline SCAN``: a new partition judged without retraining (issue 22).

Real data and real training: the baseline is the full ``acgate scan`` of the clean scikit-learn
digits (the session's ``clean_cli_scan``, verdict clean); the partition is a seeded stratified
10% of those images, arriving clean, poisoned all-to-one (BadNets patch, every other class ->
one target, 5% of the partition), or shifted (inverted images: only a full scan can judge them).
The baseline's proxy saw these images unpatched, so the clean partition is an easy pass here;
held-out partitions of MNIST and Fashion-MNIST are measured in ``bench/RESULTS.md``
("incremental"), and a held-out digits split scans with a false alarm in its baseline on some
seeds (small classes), which an incremental scan refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acgate.core import precision_recall_f1
from acgate.errors import EXIT_BAD_INPUT, EXIT_POISON

PARTITION_SHARE = 0.1
TARGET = 3


def _subset(dataset, rows):
    from acgate.io.datasets import ImageDataset

    return ImageDataset(images=dataset.images[rows], labels=dataset.labels[rows],
                        metadata=dict(dataset.metadata), name="digits-part")


@pytest.fixture(scope="module")
def split(poisoned_digits, tmp_path_factory):
    """The clean partition, its poisoned and inverted twins, as Parquet files."""
    from sklearn.model_selection import train_test_split

    from acgate.io.datasets import write_image_dataset
    from acgate.io.poison import poison_image_dataset

    digits = poisoned_digits(None)
    _, new = train_test_split(np.arange(len(digits)), test_size=PARTITION_SHARE,
                              stratify=digits.labels, random_state=0)
    folder = tmp_path_factory.mktemp("incremental")
    partition = _subset(digits, np.sort(new))
    poisoned = poison_image_dataset(partition, rate=0.05, all_to_one=TARGET, rate_of="data",
                                    seed=0)
    inverted = _subset(digits, np.sort(new))
    object.__setattr__(inverted, "images", 1.0 - inverted.images)
    return {"clean": write_image_dataset(partition, folder / "clean.parquet"),
            "poisoned": write_image_dataset(poisoned, folder / "poisoned.parquet"),
            "inverted": write_image_dataset(inverted, folder / "inverted.parquet"),
            "truth": np.asarray(poisoned.columns["is_poison"], bool), "folder": folder}


@pytest.fixture(scope="module")
def baseline(clean_cli_scan):
    assert clean_cli_scan.code == 0, clean_cli_scan.stdout + clean_cli_scan.stderr
    return clean_cli_scan.out


def _incremental(run_cli, split, baseline, kind, *extra):
    out = split["folder"] / f"scan-{kind}-{len(extra)}"
    run = run_cli(["scan", split[kind], "--baseline", baseline, "--out", out, "--no-mlflow",
                   "--json", *extra])
    return run, json.loads(run.stdout) if run.stdout.strip().startswith("{") else None, out


def test_a_clean_partition_passes_without_retraining(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "clean")
    assert run.code == 0, run.stderr
    assert summary["mode"] == "incremental" and summary["verdict"] == "clean"
    scan = json.loads((out / "scan.json").read_text())
    assert scan["mode"] == "incremental"
    assert scan["baseline"]["folder"] == str(Path(baseline).resolve())
    assert "train_proxy" not in summary["seconds"]
    assert not (out / "model.pt").exists()  # no proxy of its own: the baseline's was used
    assert (out / "report.html").is_file()


def test_poison_only_in_the_partition_is_found(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "poisoned")
    assert run.code == EXIT_POISON, run.stderr
    assert summary["mode"] == "incremental"
    assert summary["poisoned_classes"] == [TARGET]
    samples = pd.read_parquet(out / "samples.parquet")
    metrics = precision_recall_f1(samples["is_poison"].to_numpy(), split["truth"])
    assert metrics["f1"] >= 0.8, metrics  # 8x8: the 2px patch hides part of some digits


def test_a_partition_that_moved_too_far_is_scanned_in_full(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "inverted")
    assert summary is not None, run.stderr
    assert summary["mode"] == "full"
    assert "farther from the baseline" in summary["shift_reason"]
    assert (out / "model.pt").is_file()  # a proxy trained on the partition itself
    assert json.loads((out / "scan.json").read_text())["shift_reason"] == summary["shift_reason"]


def test_without_fallback_the_shifted_incremental_verdict_is_kept(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "inverted", "--no-fallback")
    assert summary["mode"] == "incremental"
    assert json.loads((out / "scan.json").read_text())["shifted"] is True


def test_a_baseline_that_was_not_accepted_is_refused(run_cli, split, poisoned_cli_scan):
    out = split["folder"] / "refused"
    run = run_cli(["scan", split["clean"], "--baseline", poisoned_cli_scan.out, "--out", out,
                   "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "verdict 'poisoned'" in run.stderr and "accepted (clean) baseline" in run.stderr
    assert not out.exists()


def test_a_folder_that_is_no_scan_is_refused(run_cli, split):
    out = split["folder"] / "refused-2"
    run = run_cli(["scan", split["clean"], "--baseline", split["folder"], "--out", out,
                   "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "not a complete acgate scan folder" in run.stderr
    assert not out.exists()


def test_no_fallback_needs_a_baseline(run_cli, split):
    run = run_cli(["scan", split["clean"], "--out", split["folder"] / "x", "--no-mlflow",
                   "--no-fallback"])
    assert run.code == EXIT_BAD_INPUT
    assert "--no-fallback needs --baseline" in run.stderr


def test_the_incremental_scan_is_an_mlflow_run_like_a_full_one(run_cli, split, baseline):
    import mlflow

    out = split["folder"] / "tracked"
    uri = f"sqlite:///{split['folder'] / 'mlflow.db'}"
    run = run_cli(["scan", split["poisoned"], "--baseline", baseline, "--out", out,
                   "--tracking-uri", uri, "--experiment", "incremental"])
    assert run.code == EXIT_POISON, run.stderr
    assert "mode: incremental" in run.stdout
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("incremental")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.data.params["analysis"] == "incremental"
    assert logged.data.tags["acgate.verdict"] == "poisoned"
