import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from acgate.core.result import ClassReport, DetectionResult, RunInfo
from acgate.io.results import (
    proxy_metrics,
    read_classes,
    read_flagged,
    read_report,
    read_samples,
    write_result,
)


def _result():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    is_poison = np.array([False, False, False, False, True, True, False, False])
    classes = (
        ClassReport(0, 3, 2, (2, 1), None, 1 / 3, 0.05, None, None, "clean", "low silhouette",
                    scores={"silhouette": 0.05}, thresholds={"silhouette": 0.1}),
        ClassReport(1, 4, 2, (2, 2), 1, 0.5, 0.4, 0.0, 0, "poisoned", "ExRe l/p=0",
                    scores={"silhouette": 0.4, "exre": 0.0}, thresholds={"silhouette": 0.1}),
        ClassReport(2, 1, 0, (), None, None, float("nan"), None, None, "skipped",
                    "class too small"),
    )
    return DetectionResult(
        sample_ids=np.arange(10, 18),
        labels=labels,
        segments=labels,
        clusters=np.array([0, 0, 1, 0, 1, 1, 0, -1]),
        is_poison=is_poison,
        poison_score=np.linspace(0, 1, 8),
        suspected_source=np.where(is_poison, 0, -1),
        classes=classes,
        info=RunInfo(params={"reducer": "ica", "n_components": np.int64(10)},
                     versions={"acgate": "0.1.0"}, timings={"reduce": 0.01},
                     warnings=("class 2 too small",), extra={"fingerprint": "abc"}),
    )


def test_write_and_read_back(tmp_path):
    result = _result()
    paths = write_result(result, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "classes.parquet", "flagged.parquet", "report.json", "samples.parquet"]
    assert set(paths) == {"samples", "classes", "flagged", "report"}

    samples = read_samples(paths["samples"])
    pd.testing.assert_frame_equal(samples, result.to_frame())
    assert str(samples["suspected_source"].dtype) == "Int64"

    classes = read_classes(paths["classes"])
    assert classes["label"].tolist() == [0, 1, 2]
    assert classes["verdict"].tolist() == ["clean", "poisoned", "skipped"]
    assert list(classes["cluster_sizes"][1]) == [2, 2]
    assert classes["score_exre"].iloc[1] == 0.0 and np.isnan(classes["score_exre"].iloc[0])

    flagged = read_flagged(paths["flagged"])
    assert list(flagged.columns) == ["index", "label", "suspected_source", "poison_score"]
    assert flagged["index"].tolist() == [14, 15]
    assert flagged["suspected_source"].tolist() == [0, 0]

    report = read_report(paths["report"])
    assert report["verdict"] == "poisoned"
    assert report["flagged_indices"] == [14, 15]
    assert report["classes"][2]["silhouette"] is None  # NaN -> null, strict JSON
    assert report["info"]["params"]["n_components"] == 10
    expected = result.to_dict()
    expected["classes"][2]["silhouette"] = None
    expected["info"]["params"]["n_components"] = 10
    assert report == json.loads(json.dumps(expected))


def test_schema_tags(tmp_path):
    paths = write_result(_result(), tmp_path)
    for name in ("samples", "classes", "flagged"):
        assert pq.read_schema(paths[name]).metadata[b"acgate.schema"] == f"{name}/1".encode()
    with pytest.raises(ValueError, match=r"classes\.parquet is an acgate 'classes' file"):
        read_samples(paths["classes"])


def test_rewrite_replaces_only_own_files(tmp_path):
    (tmp_path / "report.html").write_text("keep me")
    write_result(_result(), tmp_path)
    clean = DetectionResult(
        sample_ids=[0, 1], labels=[0, 0], segments=[0, 0], clusters=[0, 1],
        is_poison=[False, False], poison_score=[0.1, 0.2], suspected_source=[-1, -1],
        classes=(ClassReport(0, 2, 2, (1, 1), None, 0.5, 0.0, None, None, "clean", "ok"),),
    )
    write_result(clean, tmp_path)
    assert (tmp_path / "report.html").read_text() == "keep me"
    assert read_report(tmp_path / "report.json")["verdict"] == "clean"
    assert len(read_flagged(tmp_path / "flagged.parquet")) == 0
    assert len(read_samples(tmp_path / "samples.parquet")) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_result_without_classes(tmp_path):
    empty = DetectionResult(
        sample_ids=[], labels=[], segments=[], clusters=[], is_poison=[], poison_score=[],
        suspected_source=[], classes=(),
    )
    paths = write_result(empty, tmp_path)
    assert len(read_classes(paths["classes"])) == 0
    assert len(read_samples(paths["samples"])) == 0
    assert read_report(paths["report"])["n_samples"] == 0


def test_bad_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"report\.json is not a valid JSON report"):
        read_report(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        read_report(path)
    path.write_text('{"classes": []}')
    with pytest.raises(ValueError, match="has no 'verdict' entry"):
        read_report(path)
    with pytest.raises(FileNotFoundError):
        read_report(tmp_path / "missing.json")


def test_samples_missing_column_and_wrong_type(tmp_path):
    frame = _result().to_frame()
    path = tmp_path / "s.parquet"
    frame.drop(columns=["poison_score"]).to_parquet(path)
    with pytest.raises(ValueError, match=r"s\.parquet has no column 'poison_score'"):
        read_samples(path)
    frame.assign(is_poison=frame["is_poison"].astype(int)).to_parquet(path)
    with pytest.raises(TypeError, match=r"s\.parquet: column 'is_poison' must be boolean"):
        read_samples(path)


def test_proxy_metrics_name_the_known_numbers():
    assert proxy_metrics(None) == {}
    assert proxy_metrics({"train_accuracy": 1, "final_loss": 0.1, "epochs": 30}) == {
        "proxy_train_accuracy": 1.0}
    assert proxy_metrics({"train_accuracy": 0.9, "attack_success": 0.25,
                          "attack_success_rows": 40}) == {"proxy_train_accuracy": 0.9,
                                                          "proxy_attack_success": 0.25}
    assert proxy_metrics({"train_accuracy": float("nan"), "attack_success": None}) == {}
