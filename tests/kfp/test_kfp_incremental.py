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


import pytest

import pipeline

SEED = 3  # the split's: the accepted data scans clean with it


@pytest.mark.slow
def test_a_clean_full_run_publishes_the_baseline_the_incremental_pipeline_judges_against(
        tmp_path, digits_partitions, one_thread, mlflow_store, incremental_pipeline_runs):
    uri, client = mlflow_store
    split = digits_partitions
    full = pipeline.run_locally(tmp_path / "full", dataset_uri=str(split["accepted"]),
                                seed=SEED, mlflow_tracking_uri=uri)
    assert full["verdict"] == "clean"
    baseline = f"runs:/{full['run_id']}/baseline"
    published = sorted(a.path for a in client.list_artifacts(full["run_id"], "baseline"))
    assert published == ["baseline/model.json", "baseline/model.pt",
                         "baseline/reference.parquet", "baseline/scan.json"]

    incremental_pipeline_runs(baseline, uri, split, tmp_path, seed=SEED)
