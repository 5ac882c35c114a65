"""Real local pipeline runs (kfp SubprocessRunner, no venv, no network).

The poisoned run is the one unmarked end-to-end test (~90 s on 2 cores: every task is a fresh
Python process); the clean run is marked slow.
"""

import numpy as np
import pandas as pd
import pytest

import pipeline
from components.gate.component import gate


@pytest.fixture
def one_thread(monkeypatch):
    """Pipeline subprocesses train with one torch thread, like the in-process reference scan."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_poisoned_run_equals_scan_and_is_not_promoted(tmp_path, digits_parquet, one_thread,
                                                      mlflow_store, register_version,
                                                      alias_version):
    from acgate.scan import ScanConfig, run_scan

    uri, client = mlflow_store
    version = register_version(client, "digits-poisoned")
    data = digits_parquet(0.33, 0)
    outputs = pipeline.run_locally(tmp_path / "root", dataset_uri=str(data), epochs=3, seed=0,
                                   mlflow_tracking_uri=uri, model_name="digits-poisoned",
                                   model_version=version)
    reference = run_scan(data, tmp_path / "scan", ScanConfig(seed=0, epochs=3), report=False)
    samples = pd.read_parquet(outputs["samples"])
    flagged = np.sort(samples["index"][samples["is_poison"]].to_numpy())
    assert outputs["verdict"] == "poisoned" == reference.result.verdict
    assert len(flagged) > 0
    np.testing.assert_array_equal(flagged, reference.result.flagged_indices)
    # The gate sits under the clean branch: it did not run, the alias is not set ...
    assert alias_version(client, "digits-poisoned") is None
    assert not list((tmp_path / "root").glob("*/gate"))
    # ... and asked directly with this run, it refuses.
    with pytest.raises(RuntimeError, match="gate refused"):
        gate.python_func(run_id=outputs["run_id"], model_name="digits-poisoned",
                         model_version=version, mlflow_tracking_uri=uri)
    assert alias_version(client, "digits-poisoned") is None
    # The poisoned branch repaired the data.
    cleaned = list((tmp_path / "root").glob("*/repair/cleaned_dataset"))
    assert len(cleaned) == 1 and cleaned[0].stat().st_size > 0
    # ... and logged the repair as a child of the scan's MLflow run.
    children = client.search_runs(
        [client.get_run(outputs["run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{outputs['run_id']}'")
    assert len(children) == 1
    repair_run = children[0]
    assert repair_run.data.tags["acgate.kind"] == "repair"
    assert repair_run.data.metrics["n_relabelled"] + repair_run.data.metrics["n_removed"] > 0
    logged = [a.path for a in client.list_artifacts(repair_run.info.run_id, "repair")]
    assert "repair/repair.json" in logged and "repair/repair.html" in logged


@pytest.mark.slow
def test_clean_run_promotes(tmp_path, digits_parquet, one_thread, mlflow_store,
                            register_version, alias_version):
    uri, client = mlflow_store
    version = register_version(client, "digits-clean")
    outputs = pipeline.run_locally(tmp_path / "root", dataset_uri=str(digits_parquet(None)),
                                   epochs=30, seed=0, mlflow_tracking_uri=uri,
                                   model_name="digits-clean", model_version=version)
    assert outputs["verdict"] == "clean"
    assert alias_version(client, "digits-clean") == version
    assert not list((tmp_path / "root").glob("*/repair"))


def test_failing_step_fails_the_run(tmp_path):
    with pytest.raises(RuntimeError, match="train-proxy"):
        pipeline.run_locally(tmp_path / "root", dataset_uri=str(tmp_path / "missing.parquet"),
                             epochs=1)
