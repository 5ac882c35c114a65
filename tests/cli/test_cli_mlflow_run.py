"""A real poisoned-digits scan tracked to a real sqlite MLflow store: metrics and artifacts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow


def _artifact_paths(client, run_id, path=None):
    paths = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            paths.extend(_artifact_paths(client, run_id, info.path))
        else:
            paths.append(info.path)
    return paths


def test_poisoned_scan_run_has_per_class_metrics_tags_and_artifacts(poisoned_cli_scan):
    client = mlflow.MlflowClient(tracking_uri=poisoned_cli_scan.tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=5
    )
    assert len(runs) == 1
    run = runs[0]
    metrics = run.data.metrics
    for label in range(10):
        assert f"silhouette/{label}" in metrics
        assert f"size_ratio/{label}" in metrics
        assert f"flagged/{label}" in metrics
        assert f"poisoned/{label}" in metrics
    assert any(name.startswith("exre/") for name in metrics)
    assert sum(metrics[f"flagged/{c}"] for c in range(10)) == metrics["n_flagged"] > 0
    assert run.data.tags["acgate.verdict"] == "poisoned"
    assert run.data.params["analysis"] == "exre"
    # Named after the dataset and the time, not MLflow's random words.
    assert re.fullmatch(r"scan digits-rate0\.33-seed0\.parquet \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ",
                        run.info.run_name), run.info.run_name
    # The run spans the scan (it starts when the scan does), not only its own logging.
    timings = json.loads((poisoned_cli_scan.out / "scan.json").read_text())["timings"]
    duration_s = (run.info.end_time - run.info.start_time) / 1000
    assert duration_s >= sum(timings.values()), (duration_s, timings)
    artifacts = _artifact_paths(client, run.info.run_id)
    for name in ("samples.parquet", "classes.parquet", "flagged.parquet", "report.html",
                 "report.json"):
        assert name in artifacts, artifacts
    pngs = [a for a in artifacts if a.startswith("plots/") and a.endswith(".png")]
    assert "plots/flagged.png" in pngs
    assert any("projection" in a for a in pngs)
    # The tables as JSON the MLflow UI previews (log_table), beside the Parquet files.
    classes = json.loads(Path(client.download_artifacts(run.info.run_id,
                                                        "tables/classes.json")).read_text())
    assert classes["columns"][:3] == ["class", "verdict", "rows"] and len(classes["data"]) == 10
    flagged = json.loads(Path(client.download_artifacts(run.info.run_id,
                                                        "tables/flagged.json")).read_text())
    assert len(flagged["data"]) == metrics["n_flagged"]
    local = client.download_artifacts(run.info.run_id, "plots/flagged.png")
    with open(local, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_report_names_the_mlflow_run_it_is_logged_in(poisoned_cli_scan, tmp_path):
    client = mlflow.MlflowClient(tracking_uri=poisoned_cli_scan.tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    cell = f'<td id="mlflow-run">{run.info.run_id}</td>'
    assert cell in (Path(poisoned_cli_scan.out) / "report.html").read_text(encoding="utf-8")
    logged = next(p for p in _artifact_paths(client, run.info.run_id)
                  if p.endswith("report.html"))
    copy = Path(client.download_artifacts(run.info.run_id, logged, str(tmp_path)))
    assert cell in copy.read_text(encoding="utf-8")
