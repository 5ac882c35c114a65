"""The per-class clustering file the ``cluster`` component writes: stable candidates survive the
round trip through Parquet, and a file whose candidates disagree with its metadata is refused
naming the artifact."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic import mode_with_nested_poison

from acgate.core import cluster_class
from acgate.stages import pipeline_config, read_clustering, write_clustering


def _stable_clustering():
    x = mode_with_nested_poison(seed=0)
    return cluster_class(x, label=3, positions=np.arange(1000, 1600), n_clusters="stable")


def test_stable_candidates_round_trip(tmp_path):
    clustering = _stable_clustering()
    assert any(c.nested for c in clustering.candidates)  # a row sits in two candidates
    path = write_clustering(clustering, tmp_path / "c.parquet")
    back = read_clustering(path)
    assert len(back.candidates) == len(clustering.candidates)
    for got, want in zip(back.candidates, clustering.candidates, strict=True):
        np.testing.assert_array_equal(got.members, want.members)
        assert (got.k, got.nested) == (want.k, want.nested)
        assert got.stability == pytest.approx(want.stability)
    two_means = cluster_class(np.random.default_rng(1).normal(size=(100, 4)), label=0,
                              positions=np.arange(100), n_clusters=2)
    plain = read_clustering(write_clustering(two_means, tmp_path / "plain.parquet"))
    assert plain.candidates is None
    assert "candidates" not in pq.read_table(tmp_path / "plain.parquet").column_names


def test_a_dense_core_candidate_round_trips_as_one(tmp_path):
    import dataclasses

    from acgate.core.clustering import CandidateCluster

    clustering = _stable_clustering()
    dense = CandidateCluster(np.arange(40), 2, 1.0, separation=5.2, core=31,
                             core_separation=4.4)
    alone = CandidateCluster(np.arange(50, 80), 2, 1.0, separation=4.6, core=30, alone=True,
                             core_separation=4.6)
    clustering = dataclasses.replace(clustering,
                                     candidates=(*clustering.candidates, dense, alone))
    back = read_clustering(write_clustering(clustering, tmp_path / "c.parquet"))
    assert [c.to_dict() for c in back.candidates[-2:]] == [dense.to_dict(), alone.to_dict()]
    assert back.candidates[-1].alone and back.candidates[-2].separated_core
    assert all(c.core is None for c in back.candidates[:-2])


def test_candidates_that_disagree_with_the_metadata_are_refused(tmp_path):
    path = write_clustering(_stable_clustering(), tmp_path / "c.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"acgate.clustering"])
    meta["candidates"] = meta["candidates"][:1]  # rows still name the later candidates
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata(
        {b"acgate.clustering": json.dumps(meta)}), bad)
    with pytest.raises(ValueError, match=r"input artifact 'clusterings'.*'candidates'"):
        read_clustering(bad)
    missing = tmp_path / "missing.parquet"
    pq.write_table(table.drop_columns(["candidates"]), missing)
    with pytest.raises(ValueError, match=r"input artifact 'clusterings'.*candidates"):
        read_clustering(missing)


@pytest.mark.parametrize(("text", "expected"), [("", None), ("2", 2), ("stable", "stable"),
                                                ("auto", "auto")])
def test_component_n_clusters_text_is_parsed(text, expected):
    assert pipeline_config(n_clusters=text).n_clusters == expected
