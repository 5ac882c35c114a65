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
