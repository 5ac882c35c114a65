"""The incremental pipeline, for real (kfp SubprocessRunner): a clean full run publishes its
baseline to MLflow, and the incremental pipeline judges new partitions against it (issue 22).

Chain: the full pipeline on accepted digits (the split of ``tests/conftest.py``
``digits_partitions``) ends clean, so ``publish_baseline`` logs ``runs:/<scan run>/baseline``;
the incremental pipeline, given that URI, finds poison that arrives only in the partition (the
same rows ``acgate scan --baseline`` flags with the same baseline) and passes a clean one,
saying which mode ran. Marked slow (a full run of its own, ~95 s): the default suite runs the
incremental pipeline against the baseline the ``publish_baseline`` component logs in
``tests/kfp/test_kfp_components.py`` (a baseline trained on every digit, so its partitions'
rows are not unseen: this test's held-out split is the one that says a clean partition of new
rows passes).
"""

import json

import numpy as np
import pandas as pd
import pytest

import pipeline
from acgate.core import precision_recall_f1

SEED = 3  # the split's: the accepted data scans clean with it


@pytest.fixture
def one_thread(monkeypatch):
    """Pipeline subprocesses train with one torch thread, like the in-process reference scan."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_a_clean_full_run_publishes_the_baseline_the_incremental_pipeline_judges_against(
        tmp_path, digits_partitions, one_thread, mlflow_store):
    from acgate.scan import ScanConfig, run_incremental_scan

    uri, client = mlflow_store
    split = digits_partitions
    full = pipeline.run_locally(tmp_path / "full", dataset_uri=str(split["accepted"]),
                                seed=SEED, mlflow_tracking_uri=uri)
    assert full["verdict"] == "clean"
    baseline = f"runs:/{full['run_id']}/baseline"
    published = sorted(a.path for a in client.list_artifacts(full["run_id"], "baseline"))
    assert published == ["baseline/model.json", "baseline/model.pt",
                         "baseline/reference.parquet", "baseline/scan.json"]

    poisoned = pipeline.run_locally(tmp_path / "poisoned", dataset_uri=str(split["poisoned"]),
                                    baseline_uri=baseline, mlflow_tracking_uri=uri,
                                    fail_on_poisoned=False)
    assert (poisoned["verdict"], poisoned["mode"]) == ("poisoned", "incremental")
    flags = pd.read_parquet(poisoned["samples"])["is_poison"].to_numpy()
    assert precision_recall_f1(flags, split["truth"])["f1"] >= 0.9
    # The same rows as the CLI's incremental scan against the same published baseline.
    cli = run_incremental_scan(split["poisoned"], tmp_path / "cli", baseline,
                               ScanConfig(seed=SEED), tracking_uri=uri, report=False)
    assert cli.mode == "incremental"
    assert np.array_equal(flags, cli.result.is_poison)
    run = client.get_run(poisoned["run_id"])
    assert run.data.params["scan.mode"] == "incremental"
    assert run.data.params["scan.baseline"] == baseline
    cleaned = list((tmp_path / "poisoned").glob("**/repair/cleaned_dataset"))
    assert len(cleaned) == 1  # the partition was repaired before anyone appends it
    assert run.data.params["dataset_uri"] == str(split["poisoned"])  # not the staged copy

    clean = pipeline.run_locally(tmp_path / "clean", dataset_uri=str(split["clean"]),
                                 baseline_uri=baseline, mlflow_tracking_uri=uri)
    assert (clean["verdict"], clean["mode"]) == ("clean", "incremental")
    assert not list((tmp_path / "clean").glob("**/repair"))
    scan = json.loads(client.download_artifacts(clean["run_id"], "scan.json", str(tmp_path))
                      and (tmp_path / "scan.json").read_text())
    assert scan["mode"] == "incremental" and scan["baseline"]["folder"] == baseline
