"""The ActivationClustering estimator, the result's tables and dict, and flag_metrics."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone

from acgate.core import ActivationClustering, detect, flag_metrics, precision_recall_f1


def test_get_and_set_params():
    est = ActivationClustering(reducer="ica", random_state=4)
    params = est.get_params()
    assert params["reducer"] == "ica" and params["random_state"] == 4
    assert set(params) == {"reducer", "n_components", "n_clusters", "analysis", "size_threshold",
                           "silhouette_threshold", "exre_threshold", "source_share_threshold",
                           "nested_source_share_threshold", "confusion_threshold",
                           "overlap_threshold", "redraw_components", "segment_by",
                           "min_class_size", "random_state"}
    assert est.set_params(n_components=6, analysis="distance") is est
    assert est.get_params()["n_components"] == 6
    assert est.analysis == "distance"
    # A clone built from get_params has the same parameters.
    assert ActivationClustering(**est.get_params()).get_params() == est.get_params()


def test_it_is_a_scikit_learn_estimator_whose_params_are_its_init_arguments():
    assert isinstance(ActivationClustering(), BaseEstimator)
    init = inspect.signature(ActivationClustering.__init__).parameters
    names = {name for name, p in init.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(ActivationClustering().get_params()) == names
    assert set(init) - names == {"self"}
    # Every parameter of the estimator is a keyword argument of detect (fit passes them all).
    assert names <= set(inspect.signature(detect).parameters)


def test_clone_round_trips_the_parameters_and_is_unfitted(planted):
    est = ActivationClustering(analysis="size-silhouette", n_components=6, random_state=3,
                               size_threshold=0.3).fit(planted.activations, planted.labels)
    copy = clone(est)
    assert copy is not est
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "result_") and not hasattr(copy, "is_poison_")
    assert "n_components=6" in repr(copy)  # BaseEstimator's repr shows the non-defaults


def test_unknown_param_is_an_error():
    est = ActivationClustering()
    with pytest.raises(ValueError, match=r"Invalid parameter 'n_component'"):
        est.set_params(n_component=5)
    assert est.n_components == 10


@pytest.mark.parametrize("analysis", ["size-silhouette", "robust"])
def test_fit_after_clone_gives_identical_flags(planted, analysis):
    est = ActivationClustering(analysis=analysis, random_state=5)
    first = est.fit(planted.activations, planted.labels)
    again = clone(est).fit(planted.activations, planted.labels)
    np.testing.assert_array_equal(again.is_poison_, first.is_poison_)
    np.testing.assert_array_equal(again.poison_score_, first.poison_score_)
    np.testing.assert_array_equal(again.suspected_source_, first.suspected_source_)
    expected = detect(planted.activations, planted.labels, analysis=analysis, random_state=5)
    np.testing.assert_array_equal(again.is_poison_, expected.is_poison)
    assert again.result_.info.params["random_state"] == 5
    assert first.is_poison_[planted.is_poison].mean() > 0.5  # it found the planted cluster


def test_init_does_not_validate_but_fit_does(planted):
    est = ActivationClustering(reducer="umap")  # stored only
    with pytest.raises(ValueError, match=r"reducer must be one of"):
        est.fit(planted.activations, planted.labels)


def test_fit_predict_and_score_samples(planted):
    est = ActivationClustering(analysis="size-silhouette")
    flags = est.fit_predict(planted.activations, planted.labels)
    expected = detect(planted.activations, planted.labels, analysis="size-silhouette")

    np.testing.assert_array_equal(flags, expected.is_poison)
    np.testing.assert_array_equal(flags, planted.is_poison)
    np.testing.assert_array_equal(est.labels_, expected.clusters)
    np.testing.assert_array_equal(est.result_.flagged_indices, planted.poison_ids)
    scores = est.score_samples()
    np.testing.assert_allclose(scores, -expected.poison_score)
    np.testing.assert_allclose(est.score_samples(planted.activations), scores)
    # IsolationForest convention: lower is more abnormal.
    assert scores[flags].max() < scores[~flags & (planted.labels == 2)].min()


def test_score_samples_errors(planted):
    with pytest.raises(ValueError, match=r"not fitted"):
        ActivationClustering().score_samples()
    est = ActivationClustering().fit(planted.activations, planted.labels)
    with pytest.raises(ValueError, match=r"X has 3 rows, the fit had 800"):
        est.score_samples(planted.activations[:3])


def test_fit_passes_sample_ids_and_retrain(planted, nearest_centroid_retrain):
    ids = np.arange(len(planted.labels)) + 1000
    retrain = nearest_centroid_retrain(planted.activations, planted.labels)
    est = ActivationClustering().fit(planted.activations, planted.labels, sample_ids=ids,
                                     retrain_and_predict=retrain)
    assert est.result_.info.params["analysis"] == "exre"
    np.testing.assert_array_equal(est.result_.flagged_indices, planted.poison_ids + 1000)


@pytest.fixture(scope="module")
def result(planted):
    x = np.concatenate([planted.activations, planted.activations[:4] + 30.0])
    y = np.concatenate([planted.labels, np.full(4, 5)])
    return detect(x, y, analysis="distance")


def test_to_frame(result):
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["index", "label", "segment", "cluster", "is_poison",
                                   "poison_score", "suspected_source"]
    assert len(frame) == result.n_samples == 804
    np.testing.assert_array_equal(frame["is_poison"].to_numpy(), result.is_poison)
    assert str(frame["suspected_source"].dtype) == "Int64"
    assert frame.loc[~frame["is_poison"], "suspected_source"].isna().all()
    assert (frame.loc[frame["is_poison"], "suspected_source"] == 0).all()
    assert frame["poison_score"].between(0, 1).all()


def test_classes_frame(result):
    frame = result.classes_frame()
    assert list(frame["label"]) == [0, 1, 2, 3, 5]
    assert list(frame["verdict"]) == ["clean", "clean", "poisoned", "clean", "skipped"]
    row = frame.set_index("label").loc[2]
    assert row["suspected_source"] == 0
    assert row["threshold_size"] == pytest.approx(0.35)
    assert "score_distance_ratio" in frame.columns
    assert pd.isna(frame.set_index("label").loc[5, "suspicious_cluster"])


def test_to_dict_is_json_serialisable(result):
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "poisoned"
    assert data["n_samples"] == 804
    assert data["poisoned_classes"] == [2]
    assert data["skipped_classes"] == [5]
    assert data["flagged_indices"] == result.flagged_indices.tolist()
    assert data["n_flagged"] == 30
    assert data["info"]["params"]["analysis"] == "distance"
    assert set(data["info"]["versions"]) == {"acgate", "numpy", "scikit-learn"}
    assert [c["label"] for c in data["classes"]] == [0, 1, 2, 3, 5]


def test_result_arrays_are_read_only(result):
    with pytest.raises(ValueError, match="read-only"):
        result.is_poison[0] = True


def test_flag_metrics(planted):
    result = detect(planted.activations, planted.labels, analysis="size-silhouette")
    metrics = flag_metrics(result, planted.is_poison)
    assert metrics["overall"]["f1"] == 1.0
    assert metrics["overall"]["tp"] == 30
    by_label = {row["label"]: row for row in metrics["per_class"]}
    assert set(by_label) == {0, 1, 2, 3}
    assert by_label[2]["n_poison"] == 30 and by_label[0]["n_poison"] == 0
    # Half the truth missed: recall 0.5.
    truth = planted.is_poison.copy()
    extra = np.flatnonzero(~truth)[:30]
    truth[extra] = True
    worse = flag_metrics(result, truth)["overall"]
    assert worse["recall"] == pytest.approx(0.5)
    assert worse["precision"] == 1.0
    assert worse["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"is_poison has 3 values; the result has 800"):
        flag_metrics(result, [True, False, True])


def test_precision_recall_f1_conventions():
    none = np.zeros(4, dtype=bool)
    assert precision_recall_f1(none, none)["f1"] == 1.0
    truth = np.array([True, False, False, False])
    m = precision_recall_f1(none, truth)
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 0.0, 0.0)
    m = precision_recall_f1(np.array([True, True, False, False]), truth)
    assert (m["precision"], m["recall"]) == (0.5, 1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"shape"):
        precision_recall_f1(none, truth[:3])
