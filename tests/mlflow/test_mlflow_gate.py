import hashlib
import json
import time

import pytest

from acgate.mlflow.gate import GateDecision, promote
from acgate.mlflow.tracking import default_artifact_location, default_tracking_uri, log_scan

#: The digest conftest's ``register_version`` records by default: the "training file".
TRAIN_SHA256 = hashlib.sha256(b"the training file").hexdigest()

MODEL = "digits-cnn"


@pytest.fixture
def model(store, register_version, request):
    """A fresh registered model name with one real version; returns (name, version)."""
    _, uri, client = store
    name = f"{MODEL}-{request.node.name}"[:100].replace("[", "-").replace("]", "")
    return name, register_version(client, name, default_artifact_location(uri))


def _scan(uri, result, **kwargs):
    kwargs.setdefault("dataset_sha256", TRAIN_SHA256)
    return log_scan(result, tracking_uri=uri, experiment="gate-test", **kwargs)


def test_clean_scan_moves_the_alias_and_tags_the_version(store, model, make_result):
    _, uri, client = store
    name, version = model
    run_id = _scan(uri, make_result(poisoned=()))

    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version)

    assert isinstance(decision, GateDecision)
    assert decision.promoted, decision.reasons
    assert decision.failing_classes == ()
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
    tags = client.get_model_version(name, version).tags
    assert tags["acgate.verdict"] == "pass"
    assert tags["acgate.run_id"] == run_id
    assert json.loads(json.dumps(decision.to_dict()))["promoted"] is True


def test_poisoned_scan_is_refused_and_leaves_the_alias(store, model, register_version,
                                                     make_result):
    _, uri, client = store
    name, old_version = model
    clean_run = _scan(uri, make_result(poisoned=()))
    assert promote(tracking_uri=uri, run_id=clean_run, model_name=name,
                   model_version=old_version).promoted
    new_version = register_version(client, name)
    poisoned_run = _scan(uri, make_result(classes=(0, 1, 2, 3), poisoned=(1, 3)))

    decision = promote(tracking_uri=uri, run_id=poisoned_run, model_name=name,
                       model_version=new_version)

    assert not decision.promoted
    assert decision.failing_classes == (1, 3)
    assert any("class 1: judged poisoned" in reason for reason in decision.reasons)
    assert str(client.get_model_version_by_alias(name, "champion").version) == old_version
    tags = client.get_model_version(name, new_version).tags
    assert tags["acgate.verdict"] == "fail"
    assert json.loads(tags["acgate.failing_classes"]) == [1, 3]
    assert tags["acgate.run_id"] == poisoned_run


@pytest.mark.parametrize(
    ("exre", "promoted"),
    [(1.6, True), (0.4, False), (None, False)],
    ids=["exre-clears", "exre-confirms", "no-exre"],
)
def test_thresholds_fail_a_tight_small_cluster_unless_exre_clears_it(
    store, model, make_result, exre, promoted
):
    _, uri, client = store
    name, version = model
    # Class 2 was judged clean by the scan, but its numbers look like poison under the
    # stricter gate thresholds. Like a real scan, it records a source share with its l/p.
    run_id = _scan(uri, make_result(poisoned=(), suspicious={2: (0.24, 0.18, exre)},
                                    class_scores={2: {"source_share": 0.9}}))

    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version,
                       silhouette_threshold=0.15, size_threshold=0.35)

    assert decision.promoted is promoted, decision.reasons
    if not promoted:
        assert decision.failing_classes == (2,)
        assert "silhouette 0.240 >= 0.15 and size ratio 0.180 <= 0.35" in decision.reasons[0]
        assert client.get_registered_model(name).aliases == {}
    # Without thresholds only the scan's own verdict counts.
    assert promote(tracking_uri=uri, run_id=run_id, model_name=name,
                   model_version=version).promoted


def test_skipped_class_fails_unless_allowed(store, model, make_result):
    _, uri, client = store
    name, version = model
    run_id = _scan(uri, make_result(poisoned=(), skipped=(2,)))

    refused = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version,
                      silhouette_threshold=0.1, size_threshold=0.35)
    assert not refused.promoted
    assert refused.failing_classes == (2,)
    assert "skipped" in refused.reasons[0]
    assert client.get_registered_model(name).aliases == {}

    allowed = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version,
                      silhouette_threshold=0.1, size_threshold=0.35, allow_skipped=True)
    assert allowed.promoted, allowed.reasons
    tags = client.get_model_version(name, version).tags
    assert tags["acgate.verdict"] == "pass"
    assert "acgate.failing_classes" not in tags  # the stale fail tag is gone


# --- fails closed -----------------------------------------------------------------------


def _assert_refused(decision, client, name, version, match):
    assert not decision.promoted
    assert any(match in reason for reason in decision.reasons), decision.reasons
    assert client.get_registered_model(name).aliases == {}


@pytest.mark.parametrize("run_id", ["0" * 32, None, ""], ids=["unknown", "none", "empty"])
def test_missing_run_fails_closed(store, model, run_id):
    _, uri, client = store
    name, version = model
    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version)
    _assert_refused(decision, client, name, version,
                    "not found" if run_id else "no scan run id")
    assert client.get_model_version(name, version).tags["acgate.verdict"] == "fail"


def test_failed_run_fails_closed(store, model, make_result, tmp_path):
    _, uri, client = store
    name, version = model
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(Exception):
        log_scan(make_result(poisoned=()), tracking_uri=uri, experiment="gate-broken",
                 artifact_location=(blocker / "mlartifacts").as_uri())
    experiment = client.get_experiment_by_name("gate-broken")
    (run,) = client.search_runs([experiment.experiment_id])

    decision = promote(tracking_uri=uri, run_id=run.info.run_id, model_name=name,
                       model_version=version)

    _assert_refused(decision, client, name, version, "has status FAILED, not FINISHED")
    assert any("acgate.status='failed'" in reason for reason in decision.reasons)


def _hand_logged_run(client, *, tags, metrics):
    experiment = client.get_experiment_by_name("gate-test")
    run = client.create_run(experiment.experiment_id, tags=tags)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


COMPLETE = {"acgate.status": "complete", "acgate.verdict": "clean"}


def test_deleted_run_fails_closed(store, model, make_result):
    _, uri, client = store
    name, version = model
    run_id = _scan(uri, make_result(poisoned=()))
    client.delete_run(run_id)
    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version)
    _assert_refused(decision, client, name, version, "is deleted")


def test_inconsistent_verdict_tag_fails_closed(store, model, make_result):
    _, uri, client = store
    name, version = model
    _scan(uri, make_result(poisoned=()))
    run_id = _hand_logged_run(
        client,
        tags={**COMPLETE, "acgate.verdict": "poisoned", "acgate.classes": "[0]"},
        metrics={"poisoned/0": 0, "skipped/0": 0},
    )
    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version)
    _assert_refused(decision, client, name, version, "inconsistent")


def test_missing_metric_fails_closed(store, model, make_result):
    _, uri, client = store
    name, version = model
    _scan(uri, make_result(poisoned=()))  # makes sure the experiment exists
    run_id = _hand_logged_run(
        client,
        tags={**COMPLETE, "acgate.classes": "[0, 1]"},
        metrics={"poisoned/0": 0, "skipped/0": 0, "skipped/1": 0},  # poisoned/1 missing
    )
    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version)
    _assert_refused(decision, client, name, version, "poisoned/1 missing")
    assert decision.failing_classes == (1,)

    # With thresholds, silhouette and size ratio become required too (a real scan whose
    # class 0 has no size ratio, so the metric is not logged).
    complete = _scan(uri, make_result(classes=(0,), poisoned=(),
                                      suspicious={0: (0.02, None, None)}))
    assert "size_ratio/0" not in client.get_run(complete).data.metrics
    assert promote(tracking_uri=uri, run_id=complete, model_name=name,
                   model_version=version).promoted
    client.delete_registered_model_alias(name, "champion")
    decision = promote(tracking_uri=uri, run_id=complete, model_name=name,
                       model_version=version, silhouette_threshold=0.1, size_threshold=0.35)
    _assert_refused(decision, client, name, version, "size_ratio/0 missing")


def test_run_without_complete_tag_or_class_list_fails_closed(store, model, make_result):
    _, uri, client = store
    name, version = model
    _scan(uri, make_result(poisoned=()))
    metrics = {"poisoned/0": 0, "skipped/0": 0}
    unfinished = _hand_logged_run(client, tags={"acgate.verdict": "clean", "acgate.classes": "[0]"},
                                  metrics=metrics)
    _assert_refused(
        promote(tracking_uri=uri, run_id=unfinished, model_name=name, model_version=version),
        client, name, version, "acgate.status=None",
    )
    foreign = _hand_logged_run(client, tags=COMPLETE, metrics=metrics)
    _assert_refused(
        promote(tracking_uri=uri, run_id=foreign, model_name=name, model_version=version),
        client, name, version, "no valid acgate.classes tag",
    )


def test_missing_model_version_fails_closed(store, model, make_result):
    _, uri, client = store
    name, version = model
    run_id = _scan(uri, make_result(poisoned=()))
    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=99)
    _assert_refused(decision, client, name, version, "version 99 not found")


def test_unreachable_server_fails_closed_fast(free_port, make_result):
    start = time.monotonic()
    decision = promote(tracking_uri=f"http://127.0.0.1:{free_port}", run_id="0" * 32,
                       model_name=MODEL, model_version=1, connect_timeout_s=2)
    assert not decision.promoted
    assert "unreachable" in decision.reasons[0]
    assert time.monotonic() - start < 10


def test_missing_sqlite_store_fails_closed_and_creates_nothing(tmp_path):
    uri = default_tracking_uri(tmp_path / "nowhere")
    decision = promote(tracking_uri=uri, run_id="0" * 32, model_name=MODEL, model_version=1)
    assert not decision.promoted
    assert "does not exist" in decision.reasons[0]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_name": ""}, "model_name"),
        ({"model_version": "latest"}, "model_version"),
        ({"model_version": 0}, "model_version"),
        ({"silhouette_threshold": 1.5}, "silhouette_threshold"),
        ({"size_threshold": float("nan")}, "size_threshold"),
        ({"alias": ""}, "alias"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    arguments = {"tracking_uri": "sqlite:///unused.db", "run_id": "r", "model_name": MODEL,
                 "model_version": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        promote(**arguments)
