"""The MLflow environment variables every MLflow user sets: ``MLFLOW_TRACKING_URI`` and
``MLFLOW_EXPERIMENT_NAME`` are honoured by ``scan``, ``repair`` and ``gate`` when the flags are not
given; the flags win over them; the local SQLite store is the default only when both are unset."""

from __future__ import annotations

import json

import mlflow
import pytest


def _runs(uri: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    return [(experiments[r.info.experiment_id], r)
            for r in client.search_runs(list(experiments), max_results=10)]


def test_scan_tracks_to_the_environments_store_and_experiment(run_cli, digits_parquet, tmp_path,
                                                              monkeypatch):
    env_uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "nightly-data")
    run = run_cli(["scan", digits_parquet(None), "--out", tmp_path / "scan", "--no-report"])
    assert run.code == 0, run.stderr
    runs = _runs(env_uri)
    assert [name for name, _ in runs] == ["nightly-data"]
    assert runs[0][1].data.tags["acgate.verdict"] == "clean"
    assert not (tmp_path / "mlruns").exists()  # the local default was not used


def test_the_flags_win_over_the_environment(run_cli, digits_parquet, tmp_path, monkeypatch):
    env_uri = f"sqlite:///{tmp_path / 'env.db'}"
    flag_uri = f"sqlite:///{tmp_path / 'flag.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    run = run_cli(["scan", digits_parquet(None), "--out", tmp_path / "scan", "--no-report",
                   "--tracking-uri", flag_uri, "--experiment", "from-flag"])
    assert run.code == 0, run.stderr
    assert [name for name, _ in _runs(flag_uri)] == ["from-flag"]
    assert not (tmp_path / "env.db").exists()


def test_gate_needs_a_tracking_uri_from_the_flag_or_the_environment(run_cli, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["gate", "--model-name", "m", "--model-version", "1", "--run-id", "0" * 32]
    run = run_cli(args)
    assert run.code == 2 and "MLFLOW_TRACKING_URI" in run.stderr


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_gate_reads_the_store_the_environment_names(run_cli, poisoned_cli_scan, monkeypatch,
                                                    how):
    """The poisoned scan's run is found in the store either way: the gate refuses it."""
    run_id = _runs(poisoned_cli_scan.tracking_uri)[0][1].info.run_id
    args = ["gate", "--model-name", "never-registered", "--model-version", "1",
            "--run-id", run_id]
    if how == "flag":
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        args += ["--tracking-uri", poisoned_cli_scan.tracking_uri]
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", poisoned_cli_scan.tracking_uri)
    run = run_cli(args)
    decision = json.loads(run.stdout)
    assert run.code in (2, 3) and not decision["promoted"], decision
    assert "MLFLOW_TRACKING_URI" not in run.stderr
