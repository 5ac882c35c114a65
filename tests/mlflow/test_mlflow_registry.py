"""Registering a trained model for the gate in one call (library and ``acgate register``)."""

from __future__ import annotations

import hashlib
import json

import pytest

from acgate.cli import main
from acgate.mlflow import TRAINING_DATA_SHA256_TAG, promote, register_model_version
from acgate.mlflow.tracking import log_scan


def _training_run(client, *, with_model=True):
    """A finished training run that logged a model folder ``model/`` (as a training script
    does with its framework's save function and ``log_artifacts``)."""
    experiment = client.get_experiment_by_name("registry-training")
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment("registry-training"))
    run = client.create_run(experiment_id, run_name="train")
    if with_model:
        client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_a_registered_version_is_promoted_after_a_clean_scan_of_its_data(store, make_result,
                                                                        tmp_path):
    _, uri, client = store
    train = tmp_path / "train.parquet"
    train.write_bytes(b"the bytes the model was trained on")
    digest = hashlib.sha256(train.read_bytes()).hexdigest()
    run_id = _training_run(client)

    version = register_model_version(uri, model_name="registry-model", run_id=run_id,
                                     training_data_sha256=digest)

    registered = client.get_model_version("registry-model", version)
    assert registered.tags[TRAINING_DATA_SHA256_TAG] == digest
    assert registered.run_id == run_id and registered.source.endswith("/model")
    scan = log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="registry-scans",
                    dataset_sha256=digest)
    decision = promote(tracking_uri=uri, run_id=scan, model_name="registry-model",
                       model_version=version)
    assert decision.promoted, decision.reasons
    # A second registration is a new version of the same model.
    assert int(register_model_version(uri, model_name="registry-model", run_id=run_id,
                                      training_data_sha256=digest)) == int(version) + 1


def test_registration_refuses_what_the_gate_could_not_check(store):
    _, uri, client = store
    digest = "ab" * 32
    with pytest.raises(ValueError, match="SHA-256"):
        register_model_version(uri, model_name="m", run_id=_training_run(client),
                               training_data_sha256="not-a-digest")
    with pytest.raises(ValueError, match="logged nothing under 'model'"):
        register_model_version(uri, model_name="m", run_id=_training_run(client,
                                                                         with_model=False),
                               training_data_sha256=digest)
    with pytest.raises(ValueError, match="reading run"):
        register_model_version(uri, model_name="m", run_id="0" * 32,
                               training_data_sha256=digest)
    assert client.search_registered_models("name = 'm'") == []


def test_acgate_register_then_acgate_gate(store, make_result, tmp_path, capsys):
    _, uri, client = store
    train = tmp_path / "train.parquet"
    train.write_bytes(b"another training file")
    digest = hashlib.sha256(train.read_bytes()).hexdigest()
    code = main(["register", "--tracking-uri", uri, "--model-name", "cli-registered",
                 "--run-id", _training_run(client), "--training-data", str(train)])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["training_data_sha256"] == digest
    scan = log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="registry-scans",
                    dataset_sha256=digest)
    code = main(["gate", "--tracking-uri", uri, "--model-name", "cli-registered",
                 "--model-version", printed["model_version"], "--run-id", scan])
    assert code == 0, capsys.readouterr().out
