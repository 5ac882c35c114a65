"""The gate's re-check replays the scan's own one-source rule on the numbers the run recorded.

With ``silhouette_threshold`` / ``size_threshold`` the gate re-judges a class the scan cleared
when its cluster is as tight and small as those thresholds say. It clears the class only when
exclusionary reclassification's one-source rule (``acgate.core.analyses.one_source_verdict``),
replayed on ``exre/<c>``, ``source_share/<c>`` and ``confusion/<c>`` with the thresholds the scan
recorded for the class, clears it. Every test logs a real scan run with ``log_scan`` into the
shared SQLite store and gates a real model version.
"""

import hashlib

import pytest

from acgate.mlflow.gate import promote
from acgate.mlflow.tracking import default_artifact_location, log_scan

TRAIN = hashlib.sha256(b"the training file").hexdigest()  # conftest.register_version's default

#: Class 2's cluster: silhouette 0.24, 18% of the class. The gate thresholds below make it
#: tight and small enough to be re-judged.
CLUSTER = (0.24, 0.18)
GATE = {"silhouette_threshold": 0.15, "size_threshold": 0.35}
TIGHT_SMALL = "class 2: silhouette 0.240 >= 0.15 and size ratio 0.180 <= 0.35"
#: A left-out candidate that goes 90% to one class, surely, at a confusion under the cut: poison
#: by the one-source rule unless the held-out overlap clears it.
SURE_ONE_SOURCE = {"source_share": 0.9, "confusion": 0.01, "confidence": 0.95, "typicality": 0.3}


@pytest.fixture
def model(store, register_version, request):
    """A fresh registered model with one version trained on the scanned file: (name, version)."""
    _, uri, client = store
    name = f"replay-{request.node.name}"[:100].replace("[", "-").replace("]", "")
    return name, register_version(client, name, default_artifact_location(uri))


def _gate_class_2(store, model, make_result, *, exre, scores, thresholds=None, params=None):
    """Scan with class 2 cleared by the scan (l/p ``exre``, ``scores``); gate it with GATE."""
    _, uri, _ = store
    name, version = model
    result = make_result(poisoned=(), suspicious={2: (*CLUSTER, exre)}, class_scores={2: scores},
                         thresholds=thresholds, params=params)
    run_id = log_scan(result, tracking_uri=uri, experiment="replay-test", dataset_sha256=TRAIN)
    return promote(tracking_uri=uri, run_id=run_id, model_name=name, model_version=version,
                   **GATE)


def _assert_promoted(decision, store, model):
    _, _, client = store
    name, version = model
    assert decision.promoted, decision.reasons
    assert decision.failing_classes == ()
    assert str(client.get_model_version_by_alias(name, "champion").version) == version


def _assert_refused(decision, store, model, *fragments):
    _, _, client = store
    name, _ = model
    assert not decision.promoted
    assert decision.outcome == "refused", decision.reasons
    assert decision.failing_classes == (2,), decision.reasons
    (reason,) = decision.reasons
    assert reason.startswith(TIGHT_SMALL), reason
    for fragment in fragments:
        assert fragment in reason, reason
    assert client.get_registered_model(name).aliases == {}


# ------------------------------------------------------------------------ the one-source rule


def test_low_lp_with_a_scattered_source_share_is_cleared(store, model, make_result):
    """l/p 0.40 < 1 but only 30% went to one other class (< the recorded 50%): not poison.

    The gate used to refuse every l/p below 1; the scan's rule clears it.
    """
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={"source_share": 0.3})
    _assert_promoted(decision, store, model)


def test_low_lp_with_one_source_is_refused_quoting_the_rule(store, model, make_result):
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={"source_share": 0.8})
    _assert_refused(decision, store, model,
                    "not cleared by the scan's one-source rule on the recorded numbers",
                    "l/p = 0.40 (< 1), 80% of it in one other class (>= 50%)")


@pytest.mark.parametrize(
    ("confusion", "promoted"), [(0.2, True), (0.01, False)], ids=["natural", "not-natural"],
)
def test_recorded_confusion_over_its_threshold_is_a_natural_overlap(
        store, model, make_result, confusion, promoted):
    """One source, but the proxy itself confuses the two classes (>= the recorded 0.03)."""
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={"source_share": 0.9, "confusion": confusion})
    if promoted:
        _assert_promoted(decision, store, model)
    else:
        _assert_refused(decision, store, model,
                        "90% of it in one other class (>= 50%)",
                        "the proxy confuses the two classes at 0.010 (< 0.03)")


@pytest.mark.parametrize(
    ("sureness", "promoted"),
    [({"confidence": 0.6, "typicality": 0.3}, True),
     ({"confidence": 0.95, "typicality": 0.01}, True),
     ({"confidence": 0.95, "typicality": 0.3}, False)],
    ids=["hesitant", "atypical", "sure"],
)
def test_recorded_confidence_and_typicality_are_replayed(store, model, make_result, sureness,
                                                         promoted):
    """A large class's candidate sent to one source hesitantly or atypically was cleared."""
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={"source_share": 0.9, "confusion": 0.01, **sureness})
    if promoted:
        _assert_promoted(decision, store, model)
    else:
        _assert_refused(decision, store, model, "mean confidence there 0.95 (>= 0.9)",
                        "median typicality there 0.30 (>= 0.05)")


@pytest.mark.parametrize(
    ("overlap", "promoted"),
    [({"overlap": 0.05, "overlap_median": 0.006}, True),
     ({"overlap": 0.05, "overlap_median": 0.02}, False),
     ({"overlap": 0.05}, False),
     ({"overlap": 0.05, "overlap_median": 0.006, "typicality": 0.35}, False)],
    ids=["natural", "other-tails-too", "no-median", "natural-but-typical-of-the-source"],
)
def test_recorded_held_out_overlap_is_replayed(store, model, make_result, overlap, promoted):
    """The source's tail went to class 2 held out: cleared only at both recorded cuts, and only
    for rows at the source's edge (look-alikes: recorded typicality under 0.3)."""
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={**SURE_ONE_SOURCE, "typicality": 0.2, **overlap})
    if promoted:
        _assert_promoted(decision, store, model)
    elif "typicality" in overlap:
        _assert_refused(decision, store, model, "a natural overlap), but the rows sent there "
                        "sit inside the source (median typicality 0.35 >= 0.3)")
    else:
        _assert_refused(decision, store, model, "90% of it in one other class (>= 50%)",
                        "median typicality there 0.20 (>= 0.05)")


@pytest.mark.parametrize(("typicality", "promoted"), [(0.2, True), (0.35, False)])
def test_recorded_confusion_and_overlap_together_are_replayed(store, model, make_result,
                                                              typicality, promoted):
    """Confusion 0.02 and held-out overlap 0.02 (median 0), each below its cut 0.03 but above
    half of it: together a natural overlap, for look-alikes only."""
    scores = {**SURE_ONE_SOURCE, "confusion": 0.02, "overlap": 0.02, "overlap_median": 0.0,
              "typicality": typicality}
    decision = _gate_class_2(store, model, make_result, exre=0.4, scores=scores)
    if promoted:
        _assert_promoted(decision, store, model)
    else:
        _assert_refused(decision, store, model, "together a natural overlap, but the rows sent "
                        "there sit inside the source (median typicality 0.35 >= 0.3)")


@pytest.mark.parametrize(("class_entry", "params_overlap", "share", "promoted"), [
    ({"overlap": 0.1}, None, 0.05, False),
    (None, 0.1, 0.05, False),
    ({}, 0.1, 0.05, False),
    (None, None, 0.031, True),
], ids=["class-entry", "params", "entry-without-it-params", "recorded-nowhere-0.03"])
def test_the_recorded_overlap_threshold_is_used(store, model, make_result, scan_thresholds,
                                                scan_params, class_entry, params_overlap, share,
                                                promoted):
    """The scan's own overlap cut (here 0.1, over the recorded 0.05) is replayed: the class's,
    else the run param. A scan made before the cut was a setting records it nowhere and was
    judged with 0.03 (whatever today's default is): cleared at 0.031."""
    thresholds = {2: {}} if class_entry is None else {2: {**scan_thresholds, **class_entry}}
    params = (scan_params if params_overlap is None
              else {**scan_params, "overlap_threshold": params_overlap})
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={**SURE_ONE_SOURCE, "typicality": 0.2, "overlap": share,
                                     "overlap_median": 0.004},
                             thresholds=thresholds, params=params)
    if promoted:
        _assert_promoted(decision, store, model)
    else:
        _assert_refused(decision, store, model, "goes to class 2 at 0.050, the other tails at a "
                        "median 0.004 (< the larger of 0.1 and 6.5 x that)")


@pytest.mark.parametrize(("recorded", "fragment"), [
    ({"overlap": -1.0}, "are not valid thresholds (overlap_threshold must be in [0.0, 2.0]"),
    ({"confusion": 5.0}, "are not valid thresholds (confusion_threshold must be in"),
], ids=["negative", "out-of-range"])
def test_a_recorded_threshold_a_scan_would_refuse_is_not_replayed(
        store, model, make_result, scan_thresholds, recorded, fragment):
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={"source_share": 0.9, "confusion": 0.01},
                             thresholds={2: {**scan_thresholds, **recorded}})
    _assert_refused(decision, store, model, "the scan's one-source rule cannot be replayed",
                    fragment)


@pytest.mark.parametrize(
    ("exre_threshold", "promoted"), [(0.5, True), (1.0, False)], ids=["recorded-0.5", "1"],
)
def test_the_recorded_exre_threshold_is_used_not_1(store, model, make_result, scan_thresholds,
                                                   exre_threshold, promoted):
    decision = _gate_class_2(store, model, make_result, exre=0.7,
                             scores={"source_share": 0.9},
                             thresholds={2: {**scan_thresholds, "exre": exre_threshold}})
    if promoted:
        _assert_promoted(decision, store, model)
    else:
        _assert_refused(decision, store, model, "l/p = 0.70 (< 1), 90% of it")


def test_the_smaller_source_share_threshold_applies(store, model, make_result,
                                                    scan_thresholds):
    """The run does not record whether the candidate was a sub-cluster: never more lenient."""
    decision = _gate_class_2(store, model, make_result, exre=0.4,
                             scores={"source_share": 0.4},
                             thresholds={2: {**scan_thresholds, "nested_source_share": 0.3}})
    _assert_refused(decision, store, model, "40% of it in one other class (>= 30%)")


# ------------------------------------------------------------- where the thresholds come from


def test_the_class_thresholds_in_classes_json_win_over_the_run_params(
        store, model, make_result, scan_thresholds, scan_params):
    """Per-class (e.g. calibrated) thresholds: the params hold the global ones."""
    decision = _gate_class_2(store, model, make_result, exre=0.7,
                             scores={"source_share": 0.9},
                             thresholds={2: {**scan_thresholds, "exre": 0.5}},
                             params={**scan_params, "exre_threshold": 1.0})
    _assert_promoted(decision, store, model)


def test_without_class_thresholds_the_run_params_are_used(store, model, make_result,
                                                          scan_params):
    """A classes.json without the class's thresholds (an older scan): the run params."""
    decision = _gate_class_2(store, model, make_result, exre=0.7,
                             scores={"source_share": 0.9}, thresholds={2: {}},
                             params={**scan_params, "exre_threshold": 0.5})
    _assert_promoted(decision, store, model)


def test_thresholds_recorded_nowhere_refuse_instead_of_defaults(store, model, make_result,
                                                                scan_params):
    params = {k: v for k, v in scan_params.items()
              if k not in ("exre_threshold", "confusion_threshold")}
    decision = _gate_class_2(store, model, make_result, exre=1.6,
                             scores={"source_share": 0.1}, thresholds={2: {}}, params=params)
    _assert_refused(decision, store, model, "the scan's one-source rule cannot be replayed",
                    "the run params have no finite exre_threshold, confusion_threshold")


# ------------------------------------------------------------------------ missing numbers


def test_a_missing_source_share_refuses_naming_the_metric(store, model, make_result):
    decision = _gate_class_2(store, model, make_result, exre=0.4, scores={})
    _assert_refused(decision, store, model, "l/p = 0.40 (< 1)",
                    "no metric source_share/2 in the scan run")


def test_a_missing_exre_refuses_naming_the_metric(store, model, make_result):
    decision = _gate_class_2(store, model, make_result, exre=None,
                             scores={"source_share": 0.1})
    _assert_refused(decision, store, model, "no ExRe score to clear it (no metric exre/2")


# ------------------------------------------------------------------------ tamper evidence


def test_a_relogged_source_share_disagrees_with_classes_json(store, model, make_result):
    """The numbers the rule replays are in the digested classes.json: re-logging one refuses."""
    _, uri, client = store
    name, version = model
    result = make_result(poisoned=(), suspicious={2: (*CLUSTER, 0.4)},
                         class_scores={2: {"source_share": 0.8}})
    run_id = log_scan(result, tracking_uri=uri, experiment="replay-test", dataset_sha256=TRAIN)
    client.log_metric(run_id, "source_share/2", 0.3)  # would clear the class

    decision = promote(tracking_uri=uri, run_id=run_id, model_name=name,
                       model_version=version, **GATE)

    assert not decision.promoted
    text = " | ".join(decision.reasons)
    assert "metric source_share/2=0.3 disagrees with acgate/classes.json (0.8)" in text, text
    assert client.get_registered_model(name).aliases == {}
