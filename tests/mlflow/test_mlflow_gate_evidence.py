"""The gate binds a scan to the model's training data and refuses edited evidence.

Everything runs on a real SQLite MLflow store; the tampering is done the way a user with write
access would do it: through the MLflow client (re-logged metrics, edited tags, a replaced
artifact).
"""

import hashlib
import json
import time
import urllib.parse
from pathlib import Path

import pytest

from acgate.errors import EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_INFRASTRUCTURE, EXIT_POISON
from acgate.mlflow import OUTCOME_EXIT_CODES, GateDecision, exit_code, promote
from acgate.mlflow.tracking import default_artifact_location, log_repair, log_scan

TRAIN = hashlib.sha256(b"the training file").hexdigest()  # conftest.register_version's default
OTHER = hashlib.sha256(b"another file").hexdigest()


@pytest.fixture
def name(request):
    """A registered-model name of this test's own."""
    return f"evidence-{request.node.name}"[:100].replace("[", "-").replace("]", "")


def _scan(uri, result, **kwargs):
    kwargs.setdefault("dataset_sha256", TRAIN)
    return log_scan(result, tracking_uri=uri, experiment="evidence-test",
                    dataset_uri="s3://bucket/train.parquet", **kwargs)


def _gate(uri, run_id, name, version, **kwargs):
    return promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version,
                   **kwargs)


def _aliases(client, name):
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def _refused(decision, *fragments, outcome="refused"):
    assert not decision.promoted
    assert decision.outcome == outcome, decision.reasons
    text = " | ".join(decision.reasons)
    for fragment in fragments:
        assert fragment in text, decision.reasons


# ------------------------------------------------------------------------ digest binding


def test_matching_version_is_promoted_and_what_was_checked_is_written(
        store, make_result, register_version, name):
    _, uri, client = store
    version = register_version(client, name, default_artifact_location(uri))
    run_id = _scan(uri, make_result(poisoned=()))

    decision = _gate(uri, run_id, name, version)

    assert decision.promoted and decision.outcome == "promoted", decision.reasons
    assert decision.exit_code == EXIT_CLEAN
    assert decision.dataset_sha256 == decision.training_data_sha256 == TRAIN
    assert decision.scan_verdict == "clean"
    assert _aliases(client, name) == {"champion": version}
    tags = client.get_model_version(name, version).tags
    assert tags["acgate.gate.outcome"] == "promoted"
    assert tags["acgate.gate.checked_run"] == run_id
    assert tags["acgate.gate.dataset_sha256"] == TRAIN
    assert tags["acgate.gate.training_data_sha256"] == TRAIN
    assert tags["acgate.gate.verdict"] == "clean"
    assert tags["acgate.gate.alias"] == "champion"
    assert tags["acgate.gate.checked_at"] == decision.checked_at
    assert TRAIN in tags["acgate.gate.reasons"]
    assert tags["acgate.verdict"] == "pass" and tags["acgate.run_id"] == run_id
    as_json = json.loads(json.dumps(decision.to_dict()))
    assert as_json["outcome"] == "promoted" and as_json["exit_code"] == 0


def test_version_trained_on_other_data_is_refused_naming_both_digests(
        store, make_result, register_version, name):
    """The probe: a clean scan of one file must not promote a model trained on another."""
    _, uri, client = store
    version = register_version(client, name, sha256=OTHER)
    run_id = _scan(uri, make_result(poisoned=()))  # a clean scan of TRAIN

    decision = _gate(uri, run_id, name, version)

    _refused(decision, OTHER, TRAIN, "does not cover this model's training data")
    assert decision.exit_code == EXIT_POISON
    assert _aliases(client, name) == {}
    tags = client.get_model_version(name, version).tags
    assert tags["acgate.gate.outcome"] == "refused"
    assert tags["acgate.gate.dataset_sha256"] == TRAIN
    assert tags["acgate.gate.training_data_sha256"] == OTHER
    assert tags["acgate.verdict"] == "fail"


def test_version_without_a_digest_is_refused_with_how_to_register_it(
        store, make_result, register_version, name):
    _, uri, client = store
    version = register_version(client, name, sha256=None)
    run_id = _scan(uri, make_result(poisoned=()))

    decision = _gate(uri, run_id, name, version)

    _refused(decision, "has no training-data digest", "acgate.training_data_sha256",
             "set_model_version_tag", "docs/gate.md")
    assert _aliases(client, name) == {}


@pytest.mark.parametrize("how", ["run-tag", "dataset-input"])
def test_digest_on_the_training_run_is_accepted(store, make_result, register_version, name,
                                                how):
    _, uri, client = store
    version = register_version(client, name, how=how)
    run_id = _scan(uri, make_result(poisoned=()))
    decision = _gate(uri, run_id, name, version)
    assert decision.promoted, decision.reasons
    assert decision.training_data_sha256 == TRAIN


def test_disagreeing_training_digests_are_refused(store, make_result, register_version, name):
    _, uri, client = store
    version = register_version(client, name, how="dataset-input")  # the run says TRAIN
    client.set_model_version_tag(name, version, "acgate.training_data_sha256", OTHER)
    run_id = _scan(uri, make_result(poisoned=()))
    _refused(_gate(uri, run_id, name, version), "2 different training-data digests")
    assert _aliases(client, name) == {}


def test_scan_without_a_dataset_digest_is_refused(store, make_result, register_version, name):
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(poisoned=()), dataset_sha256=None)
    _refused(_gate(uri, run_id, name, version), "has no dataset_sha256 param",
             "re-scan the training data")


def test_edited_dataset_digest_tag_is_refused(store, make_result, register_version, name):
    _, uri, client = store
    version = register_version(client, name, sha256=OTHER)
    run_id = _scan(uri, make_result(poisoned=()))
    # The param cannot be changed (MLflow refuses); the tag can, and must then disagree.
    client.set_tag(run_id, "acgate.dataset_sha256", OTHER)
    _refused(_gate(uri, run_id, name, version), "tag acgate.dataset_sha256 is", OTHER,
             "does not cover")
    assert _aliases(client, name) == {}


# ------------------------------------------------------------------------ tampering


@pytest.fixture
def poisoned_scan(store, make_result, register_version, name):
    """A scan finding class 1 poisoned, and a version trained on the scanned file."""
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(classes=(0, 1, 2), poisoned=(1,)))
    assert not _gate(uri, run_id, name, version).promoted
    return uri, client, run_id, version


def test_relogged_poisoned_metric_is_refused(poisoned_scan, name):
    uri, client, run_id, version = poisoned_scan
    client.log_metric(run_id, "poisoned/1", 0)  # now the latest value says clean

    decision = _gate(uri, run_id, name, version)

    _refused(decision, "metric poisoned/1=0 disagrees with acgate/classes.json",
             "metric poisoned/1 was logged 2 times")
    assert 1 in decision.failing_classes
    assert _aliases(client, name) == {}


def test_consistently_edited_tags_and_metrics_are_still_refused(poisoned_scan, name):
    """Re-log every poisoned metric and rewrite every tag: classes.json and history disagree."""
    uri, client, run_id, version = poisoned_scan
    client.log_metric(run_id, "poisoned/1", 0)
    client.log_metric(run_id, "flagged/1", 0)
    client.log_metric(run_id, "n_poisoned_classes", 0)
    client.log_metric(run_id, "n_flagged", 0)
    client.set_tag(run_id, "acgate.verdict", "clean")
    client.set_tag(run_id, "acgate.poisoned_classes", "[]")

    decision = _gate(uri, run_id, name, version)

    _refused(decision, "tag acgate.verdict='clean' disagrees",
             "tag acgate.poisoned_classes='[]' disagrees", "was logged 2 times")
    assert _aliases(client, name) == {}


def test_class_dropped_from_the_class_list_is_refused(poisoned_scan, name):
    uri, client, run_id, version = poisoned_scan
    client.set_tag(run_id, "acgate.classes", "[0, 2]")
    client.set_tag(run_id, "acgate.verdict", "clean")
    client.set_tag(run_id, "acgate.poisoned_classes", "[]")
    _refused(_gate(uri, run_id, name, version), "tag acgate.classes='[0, 2]' disagrees")
    assert _aliases(client, name) == {}


def test_edited_verdict_tag_is_refused(poisoned_scan, name):
    uri, client, run_id, version = poisoned_scan
    client.set_tag(run_id, "acgate.verdict", "clean")
    _refused(_gate(uri, run_id, name, version), "tag acgate.verdict='clean' disagrees")


def test_metric_relogged_with_an_old_timestamp_is_caught_by_its_history(
        store, make_result, register_version, name):
    """A re-log that does not change the latest value is still a second history entry."""
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(poisoned=()))
    client.log_metric(run_id, "skipped/2", 0, timestamp=1, step=0)
    _refused(_gate(uri, run_id, name, version), "metric skipped/2 was logged 2 times")


def test_relogged_metric_with_a_new_timestamp_is_caught_without_history(
        store, make_result, register_version, name):
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(poisoned=()))
    client.log_metric(run_id, "silhouette/0", 0.05, timestamp=int(time.time() * 1000) + 5000)
    _refused(_gate(uri, run_id, name, version), "metric silhouette/0 was logged again")


def test_replaced_classes_artifact_is_refused(store, make_result, register_version, name,
                                              tmp_path):
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(classes=(0, 1, 2), poisoned=(1,)))
    forged = tmp_path / "classes.json"
    forged.write_text(json.dumps({"schema": "acgate.classes/1", "classes": []}))
    client.log_artifact(run_id, str(forged), artifact_path="acgate")  # overwrites it
    _refused(_gate(uri, run_id, name, version), "acgate/classes.json has SHA-256",
             "was changed after the scan")


def test_run_without_the_classes_artifact_is_refused(store, make_result, register_version,
                                                     name):
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(poisoned=()))
    root = client.get_run(run_id).info.artifact_uri  # file:// under the store's folder
    (Path(urllib.parse.urlparse(root).path) / "acgate" / "classes.json").unlink()
    _refused(_gate(uri, run_id, name, version), "has no acgate/classes.json artifact")


def test_incomplete_scan_passes_only_with_allow_skipped(store, make_result, register_version,
                                                        name):
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(poisoned=(), skipped=(2,)))
    assert client.get_run(run_id).data.tags["acgate.verdict"] == "incomplete"
    _refused(_gate(uri, run_id, name, version), "class 2: skipped")
    assert _gate(uri, run_id, name, version, allow_skipped=True).promoted


def test_a_store_writer_can_forge_a_whole_run(store, make_result, register_version, name):
    """The limit written in docs/gate.md: whoever can write runs can log a fake clean scan.

    The gate checks that the evidence of a run is consistent and unedited, not who logged it:
    a writer who logs a complete clean scan claiming the poisoned file's digest gets it
    promoted. Write access to the store must be restricted to the scan pipeline.
    """
    _, uri, client = store
    version = register_version(client, name)
    forged = _scan(uri, make_result(poisoned=()))  # "clean", claims TRAIN's digest
    assert _gate(uri, forged, name, version).promoted


# ------------------------------------------------------------------------ outcomes


def test_outcomes_map_to_exit_codes():
    assert OUTCOME_EXIT_CODES == {"promoted": EXIT_CLEAN, "refused": EXIT_POISON,
                                  "bad_input": EXIT_BAD_INPUT,
                                  "unavailable": EXIT_INFRASTRUCTURE}
    assert exit_code("unavailable") == 4
    with pytest.raises(ValueError, match="'nope'"):
        exit_code("nope")
    assert GateDecision(promoted=False, reasons=("x",)).outcome == "refused"
    assert GateDecision(promoted=True, reasons=("x",)).outcome == "promoted"
    with pytest.raises(ValueError, match="contradicts"):
        GateDecision(promoted=True, reasons=(), outcome="refused")


def test_bad_input_outcomes(store, make_result, register_version, name, tmp_path):
    _, uri, client = store
    version = register_version(client, name)
    run_id = _scan(uri, make_result(poisoned=()))

    unknown_run = _gate(uri, "0" * 32, name, version)
    _refused(unknown_run, "scan run '000", "not found", outcome="bad_input")
    assert unknown_run.exit_code == EXIT_BAD_INPUT
    _refused(_gate(uri, "not a run id!", name, version), "not found", outcome="bad_input")
    _refused(_gate(uri, run_id, name, 99), "version 99 not found", outcome="bad_input")
    _refused(_gate(uri, run_id, "no-such-model", 1), "not found", outcome="bad_input")
    repair_run = log_repair({"strategy": "relabel"}, tracking_uri=uri, scan_run_id=run_id)
    _refused(_gate(uri, repair_run, name, version), "'repair' run, not a scan run",
             outcome="bad_input")
    _refused(_gate(f"sqlite:///{tmp_path / 'missing.db'}", run_id, name, version),
             "does not exist", outcome="bad_input")
    assert not (tmp_path / "missing.db").exists()
    assert _aliases(client, name) == {}
    # The version records the failed check (it exists, so the gate can say so).
    assert client.get_model_version(name, version).tags["acgate.gate.outcome"] == "bad_input"


@pytest.mark.parametrize("field", ["overlap", "confidence", "tail_clump"])
def test_a_metric_an_older_document_has_no_field_for_must_be_absent(make_result, field):
    """A scan whose document predates a field never logged its metric: one logged later (the
    gate's replay would read it) disagrees, while a newer document's value is compared."""
    from acgate.io.results import result_metrics
    from acgate.mlflow.evidence import check_run_against_document, classes_document
    from acgate.mlflow.tracking import CLASSES_TAG, POISONED_CLASSES_TAG, VERDICT_TAG

    result = make_result(classes=(0, 1, 2), poisoned=(), suspicious={2: (0.24, 0.18, 0.4)},
                         class_scores={2: {"source_share": 0.9}})
    document = classes_document(result, dataset_sha256=TRAIN, metrics_timestamp_ms=1)
    metrics = {key: (value, 1, 0) for key, value in result_metrics(result).items()}
    tags = {CLASSES_TAG: "[0, 1, 2]", VERDICT_TAG: "clean", POISONED_CLASSES_TAG: "[]"}

    def problems(entries_without_field: bool, forged: dict) -> list[str]:
        checked = json.loads(json.dumps(document))
        if entries_without_field:
            for entry in checked["classes"]:
                entry.pop(field)
        return check_run_against_document(
            checked, tags=tags, metrics={**metrics, **forged}, classes_tag=CLASSES_TAG,
            verdict_tag=VERDICT_TAG, poisoned_classes_tag=POISONED_CLASSES_TAG)[0]

    assert problems(True, {}) == []
    forged = {f"{field}/2": (0.05, 2, 7)}
    assert any(f"metric {field}/2=0.05 is logged" in p for p in problems(True, forged))
    assert any(f"metric {field}/2=0.05 is logged" in p for p in problems(False, forged))
