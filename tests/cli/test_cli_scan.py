"""``acgate scan`` and ``acgate detect`` end to end on real digits (real proxy training)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from acgate.cli import EXIT_CLEAN, EXIT_POISON

SCAN_FILES = ("activations.parquet", "samples.parquet", "classes.parquet", "report.json",
              "report.html")


def test_scan_of_poisoned_digits_exits_3_and_writes_every_file(poisoned_cli_scan):
    run = poisoned_cli_scan
    assert run.code == EXIT_POISON, run.stderr
    for name in SCAN_FILES:
        assert (run.out / name).is_file(), name
    assert "verdict: POISONED" in run.stdout
    report = json.loads((run.out / "report.json").read_text())
    assert report["verdict"] == "poisoned"
    # The detection target at 33% is asserted in test_cli_digits_quality (>= 7 classes, as
    # bench/RESULTS.md reports it): 7 or 8 of the 10 poisoned classes, by CPU (Intel / AMD).
    assert len(report["poisoned_classes"]) >= 7
    samples = pq.read_table(run.out / "samples.parquet").to_pandas()
    assert len(samples) == report["n_samples"] == pq.ParquetFile(
        run.out / "activations.parquet").metadata.num_rows
    assert int(samples["is_poison"].sum()) == report["n_flagged"]
    classes = pq.read_table(run.out / "classes.parquet").to_pandas()
    assert sorted(classes["label"]) == list(range(10))
    html = (run.out / "report.html").read_text()
    assert "<html" in html.lower() and "poison" in html.lower()
    # Nothing but the output folder was left next to it (no staging folders); the local MLflow
    # store and its lock file sit there too.
    store = {"mlflow.db", ".mlflow.db.lock", "mlartifacts"}
    assert sorted(p.name for p in run.out.parent.iterdir() if p.name not in store) == ["scan"]


def test_scan_with_sqlite_tracking_creates_a_run(poisoned_cli_scan):
    import mlflow

    run = poisoned_cli_scan
    assert run.code == EXIT_POISON
    client = mlflow.MlflowClient(tracking_uri=run.tracking_uri)
    experiment = client.get_experiment_by_name("cli-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id in run.stdout


def test_scan_of_clean_digits_exits_0_and_flags_no_class(clean_cli_scan):
    run = clean_cli_scan
    assert run.code == EXIT_CLEAN, run.stderr
    report = json.loads((run.out / "report.json").read_text())
    assert report["verdict"] == "clean"
    assert report["poisoned_classes"] == []
    assert report["n_flagged"] == 0
    assert "verdict: CLEAN" in run.stdout
    assert not (run.out / "report.html").exists()  # --no-report


def test_no_mlflow_creates_no_tracking_store(clean_cli_scan):
    # Without --no-mlflow the CLI would create ./mlruns in the working folder.
    assert clean_cli_scan.cwd_after == ()
    assert "mlflow run" not in clean_cli_scan.stdout


def test_detect_on_the_activations_file(poisoned_cli_scan, poisoned_digits, run_cli, tmp_path):
    out = tmp_path / "detect"
    run = run_cli(["detect", poisoned_cli_scan.out / "activations.parquet", "--out", out,
                   "--analysis", "size-silhouette"])
    report = json.loads((out / "report.json").read_text())
    assert run.code == (EXIT_POISON if report["verdict"] == "poisoned" else EXIT_CLEAN)
    assert run.code == EXIT_POISON, run.stdout + run.stderr
    assert report["info"]["params"]["analysis"] == "size-silhouette"
    assert report["n_samples"] == len(poisoned_digits(0.33))
    for name in ("samples.parquet", "classes.parquet", "report.json"):
        assert (out / name).is_file()
    # The same activations and settings give the same flags on a second run.
    again = run_cli(["detect", poisoned_cli_scan.out / "activations.parquet", "--out",
                     tmp_path / "again", "--analysis", "size-silhouette"])
    assert again.code == run.code
    second = json.loads((tmp_path / "again" / "report.json").read_text())
    assert second["flagged_indices"] == report["flagged_indices"]


def test_detect_refuses_exre(poisoned_cli_scan, run_cli, tmp_path):
    run = run_cli(["detect", poisoned_cli_scan.out / "activations.parquet", "--out",
                   tmp_path / "x", "--analysis", "exre"])
    assert run.code == 2
    assert "needs the data and a model" in run.stderr
    assert not (tmp_path / "x").exists()


def test_same_seed_cli_and_library_scans_flag_the_same_rows(poisoned_cli_scan, digits_scan):
    samples = pq.read_table(poisoned_cli_scan.out / "samples.parquet").to_pandas()
    cli_flags = np.sort(samples.loc[samples["is_poison"], "index"].to_numpy())
    np.testing.assert_array_equal(cli_flags, digits_scan(0.33).result.flagged_indices)


def test_scan_outcome_names_every_file_it_wrote(digits_scan):
    """``ScanOutcome.files``: each name points at a file of the output folder (the demo prints
    ``files["report.html"]``; the proxy folder is model.pt + model.json)."""
    outcome = digits_scan(0.33)
    expected = {"samples", "classes", "flagged", "report", "scan", "activations.parquet",
                "model.pt", "model.json"}
    assert expected <= set(outcome.files), sorted(outcome.files)
    for name, path in outcome.files.items():
        assert path.parent == outcome.out_dir and path.is_file(), (name, path)
    scan = json.loads(outcome.files["scan"].read_text())
    assert scan["verdict"] == outcome.result.verdict
    assert scan["dataset_sha256"] == outcome.dataset_sha256
