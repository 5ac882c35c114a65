"""Fixtures for the Kubeflow component and pipeline tests: repo root on sys.path, MLflow store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("kfp", reason="the kfp extra is needed for the pipeline tests")


def register_version(client, name: str, training_data_sha256: str | None = None) -> str:
    """Register a real (tiny) model version whose source is a logged artifact folder.

    ``training_data_sha256``: the SHA-256 of the file the model was trained on, set as the
    version tag the promotion gate compares with the scan's digest (as a training script does).
    """
    experiment = client.get_experiment_by_name("models")
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment("models"))
    run = client.create_run(experiment_id, run_name="train")
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id, "FINISHED")
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    if training_data_sha256 is not None:
        from acgate.mlflow import TRAINING_DATA_SHA256_TAG

        client.set_model_version_tag(name, str(version.version), TRAINING_DATA_SHA256_TAG,
                                     training_data_sha256)
    return str(version.version)


@pytest.fixture
def one_thread(monkeypatch):
    """Pipeline subprocesses train with one torch thread, like the in-process reference scan."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def mlflow_store(tmp_path):
    """A real SQLite tracking + registry store in ``tmp_path``: ``(uri, client)``."""
    from acgate.mlflow.tracking import default_tracking_uri, make_client

    uri = default_tracking_uri(tmp_path / "mlflow")
    client = make_client(uri)
    client.search_experiments()
    return uri, client


def alias_version(client, name: str, alias: str = "champion"):
    """The version an alias points at, or ``None``."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


@pytest.fixture(name="register_version")
def register_version_fixture():
    """The :func:`register_version` helper."""
    return register_version


@pytest.fixture(name="alias_version")
def alias_version_fixture():
    """The :func:`alias_version` helper."""
    return alias_version


def incremental_pipeline_runs(baseline: str, uri: str, split, tmp: Path, seed: int,
                              resolves_to: str | None = None) -> None:
    """Run the incremental pipeline for real against ``baseline`` and check what it judged.

    ``split``: ``digits_partitions``. The poisoned partition is flagged (F1 >= 0.9) exactly as
    ``acgate scan --baseline`` flags it, recorded in MLflow as an incremental scan of the
    partition's own URI, repaired, and the repaired partition rescanned against the baseline
    (clean); the clean partition passes and is not repaired. ``resolves_to``: the ``runs:/``
    URI a ``models:/`` baseline must resolve to.
    """
    import json

    import mlflow
    import numpy as np
    import pandas as pd

    import pipeline
    from acgate.core import precision_recall_f1
    from acgate.scan import ScanConfig, run_incremental_scan

    client = mlflow.MlflowClient(tracking_uri=uri)
    judged = pipeline.run_locally(tmp / "incremental", dataset_uri=str(split["poisoned"]),
                                  baseline_uri=baseline, mlflow_tracking_uri=uri,
                                  fail_on_poisoned=False)
    assert (judged["verdict"], judged["mode"]) == ("poisoned", "incremental")
    flags = pd.read_parquet(judged["samples"])["is_poison"].to_numpy()
    assert precision_recall_f1(flags, split["truth"])["f1"] >= 0.9
    cli = run_incremental_scan(split["poisoned"], tmp / "cli-incremental", baseline,
                               ScanConfig(seed=seed), tracking_uri=uri, report=False)
    assert cli.mode == "incremental"
    np.testing.assert_array_equal(flags, cli.result.is_poison)  # the same call, the same rows
    run = client.get_run(judged["run_id"])
    assert run.data.params["scan.mode"] == "incremental"
    assert run.data.params["scan.baseline"] == baseline
    assert run.data.params["dataset_uri"] == str(split["poisoned"])  # not the staged copy
    # The partition was repaired before anyone appends it, and the repaired partition judged
    # against the same baseline (no training): a child run of the scan's.
    assert len(list((tmp / "incremental").glob("**/repair/cleaned_dataset"))) == 1
    (rescanned,) = client.search_runs(
        [run.info.experiment_id], f"tags.`acgate.rescan_of` = '{judged['run_id']}'")
    assert rescanned.data.params["scan.mode"] == "incremental"
    # the very baseline the scan used: a models:/ alias is not resolved a second time
    assert rescanned.data.params["scan.baseline"] == (resolves_to or baseline)
    assert rescanned.data.tags["acgate.verdict"] == "clean"
    assert rescanned.data.tags["mlflow.parentRunId"] == judged["run_id"]
    passed = pipeline.run_locally(tmp / "incremental-clean", dataset_uri=str(split["clean"]),
                                  baseline_uri=baseline, mlflow_tracking_uri=uri)
    assert (passed["verdict"], passed["mode"]) == ("clean", "incremental")
    assert not list((tmp / "incremental-clean").glob("**/repair"))
    scan = json.loads((Path(client.download_artifacts(passed["run_id"], "scan.json", str(tmp)))
                       ).read_text())
    assert scan["mode"] == "incremental" and scan["baseline"]["folder"] == baseline
    assert scan["baseline"].get("resolved") == resolves_to


@pytest.fixture(name="incremental_pipeline_runs")
def incremental_pipeline_runs_fixture():
    """The :func:`incremental_pipeline_runs` helper."""
    return incremental_pipeline_runs
