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


def test_a_version_is_tagged_with_its_scan_verdict_and_no_alias_moves(store, make_result,
                                                                      register_version):
    from acgate.mlflow import SCAN_TAGS, tag_verdict

    _, uri, client = store
    digest = hashlib.sha256(b"the training file").hexdigest()  # conftest's TRAIN_SHA256
    version = register_version(client, "verdict-tagged", sha256=digest)
    poisoned = log_scan(make_result(poisoned=(1,)), tracking_uri=uri,
                        experiment="registry-scans", dataset_sha256=digest)

    tags = tag_verdict(uri, model_name="verdict-tagged", model_version=version,
                       scan_run_id=poisoned)

    expected = {"acgate.scan.verdict": "poisoned", "acgate.scan.run_id": poisoned,
                "acgate.scan.dataset_sha256": digest, "acgate.scan.poisoned_classes": "[1]"}
    assert tags == expected and set(tags) == set(SCAN_TAGS)
    stored = client.get_model_version("verdict-tagged", version)
    assert {key: stored.tags.get(key) for key in SCAN_TAGS} == expected
    assert "champion" not in (client.get_registered_model("verdict-tagged").aliases or {})
    # A later clean scan's tags replace the poisoned one's.
    clean = log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="registry-scans",
                     dataset_sha256=digest)
    tag_verdict(uri, model_name="verdict-tagged", model_version=version, scan_run_id=clean)
    stored = client.get_model_version("verdict-tagged", version)
    assert stored.tags["acgate.scan.verdict"] == "clean"
    assert stored.tags["acgate.scan.run_id"] == clean
    assert stored.tags["acgate.scan.poisoned_classes"] == "[]"
    # A scan that could not judge a class is not clean: its verdict is tagged as it is.
    incomplete = log_scan(make_result(poisoned=(), skipped=(2,)), tracking_uri=uri,
                          experiment="registry-scans", dataset_sha256=digest)
    tag_verdict(uri, model_name="verdict-tagged", model_version=version,
                scan_run_id=incomplete)
    assert client.get_model_version("verdict-tagged", version).tags[
        "acgate.scan.verdict"] == "incomplete"


def test_verdict_tagging_refuses_what_is_not_a_finished_scan(store, make_result,
                                                             register_version):
    from acgate.mlflow import tag_verdict

    _, uri, client = store
    version = register_version(client, "verdict-refused")
    scan = log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="registry-scans",
                    dataset_sha256="ab" * 32)
    with pytest.raises(ValueError, match="reading model 'verdict-refused' version 99"):
        tag_verdict(uri, model_name="verdict-refused", model_version="99", scan_run_id=scan)
    with pytest.raises(ValueError, match="reading scan run"):
        tag_verdict(uri, model_name="verdict-refused", model_version=version,
                    scan_run_id="0" * 32)
    training = _training_run(client)  # a run, but not a scan run
    with pytest.raises(ValueError, match="not an acgate scan run"):
        tag_verdict(uri, model_name="verdict-refused", model_version=version,
                    scan_run_id=training)
    unfinished = client.create_run(client.get_run(scan).info.experiment_id,
                                   tags={"acgate.kind": "scan", "acgate.status": "running"})
    with pytest.raises(ValueError, match="did not finish"):
        tag_verdict(uri, model_name="verdict-refused", model_version=version,
                    scan_run_id=unfinished.info.run_id)
    assert not any(key.startswith("acgate.scan.") for key in
                   client.get_model_version("verdict-refused", version).tags)
