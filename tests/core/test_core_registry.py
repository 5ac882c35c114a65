"""The analyzer registry drives choices, resolution, evidence checks and dispatch; the seed of
analyze is explicit; the clustering's stability depth is a parameter."""

from __future__ import annotations

import dataclasses
from typing import get_args

import numpy as np
import pytest
from synthetic import mode_with_nested_poison

from acgate.core import analyses, cluster_classes, detect
from acgate.core.analyses import (
    ANALYSES,
    ANALYZERS,
    AnalysisName,
    Analyzer,
    PerClassJudge,
    analyze_size,
    describe_analyses,
)
from acgate.core.clustering import cluster_class, stable_candidates
from acgate.core.detect import (
    analyze,
    resolve_analysis,
    resolve_n_clusters,
    resolve_settings,
)
from acgate.core.evidence import EVIDENCE_KINDS, ClassJudgement, Evidence


def test_the_choices_are_the_registry_and_the_literal_agrees():
    assert ANALYSES == tuple(ANALYZERS)
    assert set(get_args(AnalysisName)) == set(ANALYSES)
    for name, analyzer in ANALYZERS.items():
        assert analyzer.name == name
        assert analyzer.needs | analyzer.uses <= set(EVIDENCE_KINDS)
        assert analyzer.summary and callable(analyzer.judge)


def test_exre_is_an_entry_like_the_others_and_declares_its_retrain():
    exre = ANALYZERS["exre"]
    assert exre.needs == {"retrain"} and exre.uses == {"predictions"}
    assert (exre.size_threshold, exre.n_clusters) == (0.45, "stable")
    assert all(not ANALYZERS[name].needs - {"activations"} for name in ANALYSES
               if name != "exre")


def test_the_docs_are_generated_from_the_registry():
    text = describe_analyses()
    for name, analyzer in ANALYZERS.items():
        assert f"``{name}`` — {analyzer.summary}" in text
    assert "retrain_and_predict" in text
    assert text in analyses.__doc__


def _spy(calls):
    def judge(clusterings, evidence):
        calls.append(evidence)
        return ANALYZERS["size"].judge(clusterings, evidence)

    return judge


def test_validation_resolution_and_dispatch_read_the_declaration(monkeypatch, planted):
    calls = []
    monkeypatch.setitem(ANALYZERS, "needs-predictions", Analyzer(
        "needs-predictions", _spy(calls), "a test analyzer",
        needs=frozenset({"predictions"}), size_threshold=0.3))
    with pytest.raises(ValueError, match=r"analysis='needs-predictions' needs predictions"):
        resolve_analysis("needs-predictions", None)
    assert resolve_analysis("needs-predictions", None, planted.labels) == "needs-predictions"
    assert resolve_n_clusters(None, "needs-predictions") == 2
    with pytest.raises(ValueError, match=r"needs predictions"):
        detect(planted.activations, planted.labels, analysis="needs-predictions")
    _, thresholds = resolve_settings("needs-predictions", None, size_threshold=None,
                                     silhouette_threshold=0.1, exre_threshold=1.0,
                                     predictions=planted.labels)
    assert thresholds.size == 0.3  # the declared default size cut
    detected = detect(planted.activations, planted.labels, analysis="needs-predictions",
                      predictions=planted.labels, random_state=7)
    assert len(calls) == 1 and detected.info.params["size_threshold"] == 0.3

    ids = np.arange(len(planted.labels))
    clusterings = cluster_classes(planted.activations, planted.labels, ids)
    result = analyze(planted.activations, planted.labels, clusterings, sample_ids=ids,
                     segments=planted.labels, analysis="needs-predictions",
                     predictions=planted.labels, random_state=7)
    assert len(calls) == 2 and isinstance(calls[1], Evidence)
    assert calls[1].random_state == 7 and calls[1].kinds == {"activations", "predictions"}
    assert result.info.params["analysis"] == "needs-predictions"


def test_exre_dispatches_through_its_entry(monkeypatch, planted, nearest_centroid_retrain):
    calls = []
    monkeypatch.setitem(ANALYZERS, "exre", dataclasses.replace(ANALYZERS["exre"],
                                                               judge=_spy(calls)))
    retrain = nearest_centroid_retrain(planted.activations, planted.labels)
    result = detect(planted.activations, planted.labels, retrain_and_predict=retrain)
    assert result.info.params["analysis"] == "exre"
    assert len(calls) == 1 and calls[0].retrain_and_predict is retrain
    assert calls[0].thresholds.size == 0.45


def test_missing_retrain_names_the_evidence_and_the_possible_analyses():
    with pytest.raises(ValueError, match=r"analysis='exre' needs retrain_and_predict \(a "
                                         r"callable.*choose another analysis from "
                                         r"\['size-silhouette'"):
        resolve_analysis("exre", None)


def test_a_per_class_judge_skips_skipped_classes_and_uses_class_thresholds(planted):
    ids = np.arange(len(planted.labels))
    clusterings = cluster_classes(planted.activations, planted.labels, ids)
    skipped = dataclasses.replace(clusterings[0], skipped_reason="too small")
    evidence = Evidence(activations=planted.activations, labels=planted.labels,
                        thresholds=analyses.Thresholds(), random_state=0,
                        class_thresholds={2: analyses.Thresholds(size=0.1)})
    judgements = PerClassJudge(analyze_size)([skipped, *clusterings[1:]], evidence)
    assert set(judgements) == {1, 2, 3}
    assert all(isinstance(j, ClassJudgement) for j in judgements.values())
    assert not judgements[2].is_poisoned  # 15% > its own size cut of 10%


@pytest.fixture(scope="module")
def halves(planted):
    ids = np.arange(len(planted.labels))
    clusterings = cluster_classes(planted.activations, planted.labels, ids, random_state=2)
    return ids, clusterings


def test_analyze_needs_an_explicit_seed(planted, halves):
    ids, clusterings = halves
    args = (planted.activations, planted.labels, clusterings)
    kwargs = {"sample_ids": ids, "segments": planted.labels, "analysis": "robust"}
    with pytest.raises(ValueError, match=r"analyze needs random_state"):
        analyze(*args, **kwargs)
    with pytest.raises(ValueError, match=r"random_state=1 contradicts"):
        analyze(*args, **kwargs, random_state=1, params={"random_state": 2})
    with pytest.raises(TypeError, match=r"random_state must be an integer"):
        analyze(*args, **kwargs, random_state="2")
    explicit = analyze(*args, **kwargs, random_state=2)
    recorded = analyze(*args, **kwargs, params={"random_state": 2})  # the stages' call
    np.testing.assert_array_equal(explicit.is_poison, recorded.is_poison)
    np.testing.assert_array_equal(explicit.poison_score, recorded.poison_score)
    assert explicit.info.params["random_state"] == 2
    via_detect = detect(planted.activations, planted.labels, analysis="robust", n_clusters=2,
                        random_state=2)
    np.testing.assert_array_equal(explicit.poison_score, via_detect.poison_score)


def test_stability_depth_is_passed_to_the_stable_search():
    x = mode_with_nested_poison()
    positions = np.arange(len(x))
    for depth in (1, 2):
        clustering = cluster_class(x, label=0, positions=positions, n_clusters="stable",
                                   directions=False, stability_depth=depth)
        _, _, expected, _ = stable_candidates(clustering.reduced, random_state=0,
                                              size_threshold=0.45, depth=depth)
        assert [c.members.tolist() for c in clustering.candidates] == \
            [c.members.tolist() for c in expected]
    via_classes = cluster_classes(x, np.zeros(len(x), dtype=np.int64), positions,
                                  n_clusters="stable", stability_depth=2)
    direct = cluster_class(x, label=0, positions=positions, n_clusters="stable",
                           stability_depth=2)
    assert [c.members.tolist() for c in via_classes[0].candidates] == \
        [c.members.tolist() for c in direct.candidates]
    with pytest.raises(ValueError, match=r"stability_depth must be >= 1"):
        cluster_class(x, label=0, positions=positions, n_clusters="stable", stability_depth=0)
