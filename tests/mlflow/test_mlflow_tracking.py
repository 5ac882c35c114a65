import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from acgate.errors import InfrastructureError
from acgate.mlflow.tracking import (
    default_artifact_location,
    default_tracking_uri,
    log_scan,
    make_client,
)

DIGEST = hashlib.sha256(b"digits.parquet bytes").hexdigest()


def _artifacts_dir(tmp_path: Path, result) -> Path:
    folder = tmp_path / "scan"
    (folder / "plots").mkdir(parents=True)
    result.to_frame().to_parquet(folder / "samples.parquet")
    (folder / "report.json").write_text(json.dumps(result.to_dict()))
    (folder / "report.html").write_text("<html><body>report</body></html>")
    (folder / "plots" / "silhouette.png").write_bytes(b"\x89PNG fake")
    (folder / "mlflow.db").write_bytes(b"not an artifact")  # must not be logged
    return folder


def _artifact_paths(client, run_id, path=None):
    paths = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            paths.extend(_artifact_paths(client, run_id, info.path))
        else:
            paths.append(info.path)
    return sorted(paths)


def test_default_tracking_uri_is_absolute_sqlite(tmp_path):
    uri = default_tracking_uri(tmp_path / "out")
    assert uri == f"sqlite:///{(tmp_path / 'out').resolve()}/mlflow.db"
    assert default_artifact_location(uri) == (tmp_path / "out" / "mlartifacts").resolve().as_uri()
    assert default_artifact_location("http://127.0.0.1:5000") is None


def test_log_scan_records_params_metrics_tags_and_artifacts(store, tmp_path, make_result):
    out_dir, uri, client = store
    result = make_result(classes=(0, 1, 2, 3), poisoned=(1,), skipped=(3,),
                         suspicious={2: (0.2, 0.3, 1.7)})
    artifacts = _artifacts_dir(tmp_path, result)
    gx_results = {"dataset": {"success": True, "results": []},
                  "activations": {"success": True, "results": []}}

    run_id = log_scan(
        result, tracking_uri=uri, experiment="tracking-test", artifacts_dir=artifacts,
        dataset_uri="file:///data/digits.parquet", dataset_fingerprint="sha256:abc",
        params={"reducer": "ica", "proxy_epochs": 3}, gx_results=gx_results, run_name="scan-1",
        dataset_sha256=DIGEST.upper(),  # normalised to lowercase
    )

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "scan-1"
    # MLflow 3's UI opens the experiment in its classic runs view, not the GenAI one.
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    params = run.data.params
    assert params["reducer"] == "ica"
    assert params["proxy_epochs"] == "3"
    assert params["n_components"] == "10"
    assert params["dataset_uri"] == "file:///data/digits.parquet"
    assert params["dataset_fingerprint"] == "sha256:abc"
    assert params["dataset_sha256"] == DIGEST
    assert params["seed"] == "0"
    assert params["acgate_version"]

    metrics = run.data.metrics
    assert metrics["poisoned/1"] == 1 and metrics["poisoned/0"] == 0
    assert metrics["skipped/3"] == 1 and metrics["skipped/1"] == 0
    assert metrics["silhouette/1"] == pytest.approx(0.31)
    assert metrics["size_ratio/1"] == pytest.approx(0.2)
    assert metrics["exre/1"] == pytest.approx(0.1)
    assert metrics["exre/2"] == pytest.approx(1.7)
    assert "exre/0" not in metrics  # ExRe did not run for class 0
    assert metrics["source_share/1"] == pytest.approx(0.9)
    assert metrics["confusion/1"] == pytest.approx(0.004)
    assert "confusion/2" not in metrics
    assert "silhouette/3" not in metrics and "size_ratio/3" not in metrics
    assert metrics["flagged/1"] == int(result.is_poison[result.labels == 1].sum()) == 4
    assert metrics["flagged/0"] == 0
    assert metrics["n_samples"] == 80
    assert metrics["n_flagged"] == 4
    assert metrics["n_poisoned_classes"] == 1

    tags = run.data.tags
    assert tags["acgate.status"] == "complete"
    assert tags["acgate.verdict"] == "poisoned"
    assert json.loads(tags["acgate.classes"]) == [0, 1, 2, 3]
    assert json.loads(tags["acgate.poisoned_classes"]) == [1]
    assert json.loads(tags["acgate.suspected_sources"]) == {"1": 0}
    assert json.loads(tags["acgate.near_miss_classes"]) == []  # (acgate.review's own tests)
    assert tags["acgate.gx_success"] == "true"
    assert tags["acgate.kind"] == "scan"
    assert tags["acgate.dataset_sha256"] == DIGEST

    # The scanned file is a dataset input of the run, with its full digest.
    (scanned,) = run.inputs.dataset_inputs
    input_tags = {tag.key: tag.value for tag in scanned.tags}
    assert input_tags == {"mlflow.data.context": "scan", "acgate.dataset_sha256": DIGEST}
    assert scanned.dataset.name == "digits.parquet"
    assert scanned.dataset.digest == DIGEST[:36]  # MLflow caps the digest field at 36
    assert json.loads(scanned.dataset.source) == {"uri": "file:///data/digits.parquet"}

    paths = _artifact_paths(client, run_id)
    assert paths == sorted([
        "acgate/classes.json", "acgate/result.json", "gx/results.json", "plots/silhouette.png",
        "report.html", "report.json", "samples.parquet", "tables/classes.json",
        "tables/flagged.json",
    ])
    # The per-class table, byte for byte what the digest tag says.
    classes_file = Path(client.download_artifacts(run_id, "acgate/classes.json", str(tmp_path)))
    data = classes_file.read_bytes()
    assert hashlib.sha256(data).hexdigest() == tags["acgate.classes_sha256"]
    table = json.loads(data)
    assert table["schema"] == "acgate.classes/1"
    assert table["dataset_sha256"] == DIGEST and table["verdict"] == "poisoned"
    assert [(c["label"], c["verdict"], c["n_flagged"], c["skipped"]) for c in table["classes"]] \
        == [(0, "clean", 0, False), (1, "poisoned", 4, False), (2, "clean", 0, False),
            (3, "skipped", 0, True)]
    assert table["classes"][1]["suspected_source"] == 0
    assert table["classes"][3]["silhouette"] is None
    assert {m.timestamp for m in run.data._metric_objs} == {table["metrics_timestamp_ms"]}
    # Artifacts land under <out_dir>/mlartifacts, not ./mlruns.
    local = Path(client.download_artifacts(run_id, "gx/results.json", str(tmp_path)))
    assert json.loads(local.read_text())["dataset"]["success"] is True
    summary = json.loads(Path(client.download_artifacts(run_id, "acgate/result.json",
                                                         str(tmp_path))).read_text())
    assert summary["verdict"] == "poisoned" and summary["n_flagged"] == 4
    assert summary["flagged_indices"] == [36, 37, 38, 39]
    assert [c["verdict"] for c in summary["classes"]] == ["clean", "poisoned", "clean", "skipped"]
    assert run.info.artifact_uri.startswith((out_dir / "mlartifacts").resolve().as_uri())
    assert list((out_dir / "mlartifacts").rglob("samples.parquet"))
    roundtrip = pd.read_parquet(
        client.download_artifacts(run_id, "samples.parquet", str(tmp_path))
    )
    assert roundtrip["is_poison"].sum() == 4


def test_clean_result_is_tagged_clean(store, make_result):
    _, uri, client = store
    run_id = log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="tracking-test")
    run = client.get_run(run_id)
    tags = run.data.tags
    assert tags["acgate.verdict"] == "clean"
    assert json.loads(tags["acgate.poisoned_classes"]) == []
    assert "acgate.gx_success" not in tags
    # Without a digest nothing claims one (the gate refuses such a run).
    assert "dataset_sha256" not in run.data.params and "acgate.dataset_sha256" not in tags
    assert not run.inputs.dataset_inputs


def test_a_rescan_is_a_child_of_the_scan_whose_data_was_repaired(store, make_result):
    from acgate.mlflow import promote
    from acgate.mlflow.tracking import RESCAN_OF_TAG

    _, uri, client = store
    scan = log_scan(make_result(), tracking_uri=uri, experiment="rescans",
                    dataset_sha256=DIGEST)
    rescan = log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="rescans",
                      dataset_sha256="cd" * 32, rescan_of=scan)
    tags = client.get_run(rescan).data.tags
    assert tags[RESCAN_OF_TAG] == scan == tags["mlflow.parentRunId"]
    assert tags["acgate.kind"] == "scan" and tags["acgate.status"] == "complete"
    assert RESCAN_OF_TAG not in client.get_run(scan).data.tags
    # Still a whole scan run: the gate reads it like any other (here: no such model).
    assert promote(tracking_uri=uri, run_id=rescan, model_name="none",
                   model_version=1).outcome == "bad_input"


def test_gx_reports_are_logged_and_summarised(store, tmp_path, make_result):
    from acgate.gx.suites import ValidationReport  # a dataclass: no GX import needed

    _, uri, client = store
    failed = ValidationReport(
        stage="activations", success=False, n_rows=3,
        results=({"expectation": "expect_column_values_to_be_in_set",
                  "column": "activation_finite", "success": False, "observed": "1 of 3",
                  "result": {"unexpected_count": 1, "observed_value": float("nan")}},),
    )
    run_id = log_scan(make_result(), tracking_uri=uri, experiment="tracking-test",
                      gx_results={"activations": failed})
    assert client.get_run(run_id).data.tags["acgate.gx_success"] == "false"
    logged = json.loads(Path(client.download_artifacts(run_id, "gx/results.json",
                                                       str(tmp_path))).read_text())
    assert logged["activations"]["n_failed"] == 1
    assert logged["activations"]["results"][0]["result"]["observed_value"] == "nan"


def test_run_that_fails_midway_ends_failed_without_complete_tag(store, tmp_path, make_result):
    _, uri, client = store
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the artifact root's parent folder should be")
    with pytest.raises(Exception):
        log_scan(make_result(), tracking_uri=uri, experiment="broken-artifacts",
                 artifact_location=(blocker / "mlartifacts").as_uri())
    experiment = client.get_experiment_by_name("broken-artifacts")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["acgate.status"] == "failed"
    assert run.data.metrics["poisoned/1"] == 1  # it got midway


def test_invalid_input_is_refused_before_a_run_exists(store, tmp_path, make_result):
    _, uri, client = store
    result = make_result()
    with pytest.raises(ValueError, match="'reducer' is 'ica' in result.info.params but 'pca'"):
        log_scan(result, tracking_uri=uri, experiment="refused", params={"reducer": "pca"})
    with pytest.raises(ValueError, match="not a valid MLflow name"):
        log_scan(result, tracking_uri=uri, experiment="refused", params={"bad|name": 1})
    with pytest.raises(ValueError, match="is not a folder"):
        log_scan(result, tracking_uri=uri, experiment="refused",
                 artifacts_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        log_scan(result, tracking_uri=uri, experiment="refused",
                 gx_results={"dataset": {"observed": {1, 2}}})
    with pytest.raises(ValueError, match="dataset_sha256 must be a SHA-256.*'abc'"):
        log_scan(result, tracking_uri=uri, experiment="refused", dataset_sha256="abc")
    with pytest.raises(ValueError, match="metric 'n_flagged' is the scan result's own"):
        log_scan(result, tracking_uri=uri, experiment="refused", metrics={"n_flagged": 0})
    with pytest.raises(ValueError, match="metric 'proxy_attack_success' must be a finite"):
        log_scan(result, tracking_uri=uri, experiment="refused",
                 metrics={"proxy_attack_success": float("nan")})
    assert client.get_experiment_by_name("refused") is None


def test_more_metrics_are_logged_with_the_result(store, make_result):
    _, uri, client = store
    run_id = log_scan(make_result(), tracking_uri=uri, experiment="tracking-test",
                      metrics={"proxy_train_accuracy": 1.0, "proxy_attack_success": 0.25})
    run = client.get_run(run_id)
    assert run.data.metrics["proxy_attack_success"] == 0.25
    assert run.data.metrics["proxy_train_accuracy"] == 1.0
    assert run.data.tags["acgate.status"] == "complete"


def test_unreachable_server_raises_connection_error_fast(free_port, make_result):
    with pytest.raises(ConnectionError, match="unreachable") as caught:
        log_scan(make_result(), tracking_uri=f"http://127.0.0.1:{free_port}",
                 connect_timeout_s=2)
    assert isinstance(caught.value, InfrastructureError)  # exit 4 in the CLI


def test_make_client_rejects_empty_uri():
    with pytest.raises(ValueError, match="tracking_uri"):
        make_client("")


def test_near_miss_classes_are_tagged(store, make_result):
    import dataclasses

    _, uri, client = store
    result = make_result(classes=(0, 1, 2), poisoned=(1,))
    close = ("cluster of k = 3 (stability 0.97), 9.0% of the class, left out of a retrain: 2 "
             "classified as 2, 40 as class 7; l/p = 0.05 (< 1), 48% of it in class 7 (< 50%) "
             "-> legitimate")
    classes = tuple(dataclasses.replace(c, reason=close) if c.label == 2 else c
                    for c in result.classes)
    run_id = log_scan(dataclasses.replace(result, classes=classes), tracking_uri=uri,
                      experiment="near-miss")
    assert json.loads(client.get_run(run_id).data.tags["acgate.near_miss_classes"]) == [2]
