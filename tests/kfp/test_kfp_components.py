"""Each component's ``.python_func`` on real temp Parquet files (tiny digits, 3 epochs)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kfp import dsl

from components.analyze.component import analyze
from components.cluster.component import cluster
from components.dataset_digest.component import dataset_digest
from components.extract_activations.component import extract_activations
from components.gate.component import gate
from components.publish_baseline.component import publish_baseline
from components.train_proxy.component import train_proxy


def _artifact(kind, tmp_path, name):
    return kind(name=name, uri=str(tmp_path / name))


@pytest.fixture(scope="module")
def clean_chain(tmp_path_factory, digits_parquet):
    """train_proxy -> extract -> cluster per class, on the clean digits with the default 30
    epochs (after 10, a writing style of class 1 that looks like a 2 once left out is
    flagged; bench/RESULTS.md "candidates" lists the clean-run flags per seed)."""
    tmp = tmp_path_factory.mktemp("chain")
    dataset, model, metrics = (_artifact(dsl.Dataset, tmp, "dataset"),
                               _artifact(dsl.Model, tmp, "model"),
                               _artifact(dsl.Metrics, tmp, "train-metrics"))
    train_proxy.python_func(dataset_uri=str(digits_parquet(None)), dataset=dataset, model=model,
                            metrics=metrics, seed=0, epochs=30)
    activations = _artifact(dsl.Dataset, tmp, "activations")
    classes = extract_activations.python_func(dataset=dataset, model=model,
                                              activations=activations)
    clusterings = []
    for label in classes:
        out = _artifact(dsl.Dataset, tmp, f"clustering-{label}")
        cluster.python_func(activations=activations, label=label, clustering=out, seed=0)
        clusterings.append(out)
    return {"tmp": tmp, "dataset": dataset, "model": model, "metrics": metrics,
            "activations": activations, "classes": classes, "clusterings": clusterings}


def test_train_extract_cluster_outputs(clean_chain):
    assert clean_chain["classes"] == list(range(10))
    assert clean_chain["metrics"].metadata["epochs"] == 30
    assert 0.0 < clean_chain["metrics"].metadata["train_accuracy"] <= 1.0
    table = pq.read_table(clean_chain["clusterings"][3].path)
    assert table.column_names == ["position", "cluster", "reduced", "candidates"]
    assert clean_chain["clusterings"][3].metadata["label"] == 3
    assert sum(clean_chain["clusterings"][3].metadata["cluster_sizes"]) == table.num_rows


def test_cluster_fan_out_equals_detect(clean_chain):
    from acgate.core import cluster_classes
    from acgate.io.activations import read_activations
    from acgate.stages import read_clustering

    table = read_activations(clean_chain["activations"].path)
    # The pipeline's default: stable candidates with the exclusionary-reclassification cut.
    expected = cluster_classes(table.activations.astype(np.float64), table.labels,
                               table.indices, random_state=0, n_clusters="stable",
                               size_threshold=0.45)
    for want, artifact in zip(expected, clean_chain["clusterings"], strict=True):
        got = read_clustering(artifact.path)
        assert got.label == want.label
        np.testing.assert_array_equal(got.positions, want.positions)
        np.testing.assert_array_equal(got.clusters, want.clusters)
        np.testing.assert_array_equal(got.reduced, want.reduced)
        assert got.silhouette == want.silhouette
        assert len(got.candidates) == len(want.candidates)
        for got_candidate, want_candidate in zip(got.candidates, want.candidates, strict=True):
            np.testing.assert_array_equal(got_candidate.members, want_candidate.members)
            assert (got_candidate.k, got_candidate.nested) == (want_candidate.k,
                                                               want_candidate.nested)
            assert got_candidate.stability == pytest.approx(want_candidate.stability)


def test_analyze_and_gate_promote_clean_data(clean_chain, mlflow_store, register_version,
                                             alias_version, digits_partitions, monkeypatch,
                                             incremental_pipeline_runs):
    uri, client = mlflow_store
    tmp = clean_chain["tmp"]
    samples, classes = _artifact(dsl.Dataset, tmp, "samples"), _artifact(dsl.Dataset, tmp,
                                                                          "classes")
    metrics, report = _artifact(dsl.Metrics, tmp, "metrics"), _artifact(dsl.HTML, tmp, "report")
    out = analyze.python_func(
        activations=clean_chain["activations"], dataset=clean_chain["dataset"],
        clusterings=clean_chain["clusterings"], samples=samples, classes=classes,
        metrics=metrics, report=report, scan=_artifact(dsl.Artifact, tmp, "scan"),
        dataset_uri="digits-clean", seed=0, epochs=30, mlflow_tracking_uri=uri)
    frame = pd.read_parquet(samples.path)
    assert len(frame) == 1797 and out.n_flagged == int(frame["is_poison"].sum())
    assert out.verdict == "clean", pd.read_parquet(classes.path)[["label", "verdict", "reason"]]
    assert out.run_id and client.get_run(out.run_id).info.status == "FINISHED"
    assert metrics.metadata["poisoned/0"] == 0.0 and "n_flagged" in metrics.metadata
    assert "<html" in open(report.path, encoding="utf-8").read().lower()
    # the model was trained on the scanned file (the staged copy has its bytes)
    version = register_version(client, "digits-clean",
                               hashlib.sha256(open(clean_chain["dataset"].path, "rb").read())
                               .hexdigest())
    decision = gate.python_func(run_id=out.run_id, model_name="digits-clean",
                                model_version=version, mlflow_tracking_uri=uri)
    assert decision.promoted is True
    assert alias_version(client, "digits-clean") == version
    # The clean scan's baseline, for incremental scans: logged under the scan's run.
    baseline = _artifact(dsl.Artifact, tmp, "baseline")
    published = publish_baseline.python_func(
        scan=_artifact(dsl.Artifact, tmp, "scan"), samples=samples,
        activations=clean_chain["activations"], model=clean_chain["model"], baseline=baseline,
        scan_run_id=out.run_id, mlflow_tracking_uri=uri)
    assert published == f"runs:/{out.run_id}/baseline" == baseline.metadata["uri"]
    assert baseline.metadata["rows"] == 1797 and baseline.metadata["classes"] == list(range(10))
    assert json.loads(open(baseline.path + "/scan.json").read())["verdict"] == "clean"
    assert sorted(a.path for a in client.list_artifacts(out.run_id, "baseline")) == [
        "baseline/model.json", "baseline/model.pt", "baseline/reference.parquet",
        "baseline/scan.json"]
    # The incremental pipeline (the chart's pipeline.mode: incremental), run for real against
    # the alias the gate just moved: models:/ resolves to the baseline of the scan the gate
    # checked (that runs:/ URI); new partitions judged as acgate scan --baseline judges them.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    incremental_pipeline_runs("models:/digits-clean@champion", uri, digits_partitions, tmp,
                              seed=0, resolves_to=published)


def test_gate_fails_closed(mlflow_store, register_version, alias_version):
    uri, client = mlflow_store
    version = register_version(client, "m")
    with pytest.raises(RuntimeError, match="gate refused m v1"):
        gate.python_func(run_id="0123456789abcdef", model_name="m", model_version=version,
                         mlflow_tracking_uri=uri)
    with pytest.raises(RuntimeError, match="no mlflow_tracking_uri"):
        gate.python_func(run_id="", model_name="m", model_version=version,
                         mlflow_tracking_uri="")
    assert alias_version(client, "m") is None
    skipped = gate.python_func(run_id="", model_name=None, model_version=None)
    assert skipped.promoted is False and "nothing to promote" in skipped.reasons


# ------------------------------------------------------------------------------- bad input


def test_missing_activations_artifact_is_named(tmp_path):
    missing = dsl.Dataset(name="activations", uri=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"input artifact 'activations' .*does not exist"):
        cluster.python_func(activations=missing, label=0,
                            clustering=_artifact(dsl.Dataset, tmp_path, "c"))
    assert not (tmp_path / "c").exists()


def test_activations_without_column_names_artifact_and_column(tmp_path, clean_chain):
    part = next(Path(clean_chain["activations"].path).glob("segment=0/*.parquet"))
    table = pq.read_table(part)
    bad = tmp_path / "bad-activations"
    pq.write_table(table.drop_columns(["activation"]), bad)
    with pytest.raises(ValueError, match=r"input artifact 'activations'.*'activation'"):
        cluster.python_func(activations=dsl.Dataset(name="activations", uri=str(bad)), label=0,
                            clustering=_artifact(dsl.Dataset, tmp_path, "c"))
    assert not (tmp_path / "c").exists()


def test_malformed_clustering_names_artifact_and_column(tmp_path, clean_chain):
    good = pq.read_table(clean_chain["clusterings"][0].path)
    bad = tmp_path / "bad-clustering"
    pq.write_table(good.drop_columns(["cluster"]), bad)
    not_parquet = tmp_path / "garbage"
    not_parquet.write_bytes(b"not parquet at all")
    common = dict(activations=clean_chain["activations"], dataset=clean_chain["dataset"],
                  samples=_artifact(dsl.Dataset, tmp_path, "s"),
                  classes=_artifact(dsl.Dataset, tmp_path, "k"),
                  metrics=_artifact(dsl.Metrics, tmp_path, "m"),
                  report=_artifact(dsl.HTML, tmp_path, "r"),
                  scan=_artifact(dsl.Artifact, tmp_path, "j"), epochs=30)
    with pytest.raises(ValueError, match=r"input artifact 'clusterings'.*'cluster'"):
        analyze.python_func(clusterings=[dsl.Dataset(name="c", uri=str(bad))]
                            + clean_chain["clusterings"][1:], **common)
    with pytest.raises(ValueError, match=r"input artifact 'clusterings'.*not a readable Parquet"):
        analyze.python_func(clusterings=[dsl.Dataset(name="c", uri=str(not_parquet))], **common)
    with pytest.raises(ValueError, match=r"input artifact 'clusterings'.*missing \[9\]"):
        analyze.python_func(clusterings=clean_chain["clusterings"][:9], **common)
    assert not (tmp_path / "s").exists()


def test_malformed_dataset_uri_names_column(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"label": [0, 1], "pixels": [b"x", b"y"]}), bad)
    with pytest.raises(ValueError, match=r"input artifact 'dataset_uri'.*image"):
        train_proxy.python_func(dataset_uri=str(bad),
                                dataset=_artifact(dsl.Dataset, tmp_path, "d"),
                                model=_artifact(dsl.Model, tmp_path, "m"),
                                metrics=_artifact(dsl.Metrics, tmp_path, "x"), epochs=1)
    assert not (tmp_path / "m").exists()


def test_dataset_digest_is_the_sha256_of_the_bytes(tmp_path, digits_parquet):
    data = digits_parquet(None)
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    assert dataset_digest.python_func(dataset_uri=str(data)) == expected
    assert dataset_digest.python_func(dataset_uri=f"file://{data}") == expected
    with pytest.raises(ValueError, match=r"input artifact 'dataset_uri'.*does not exist"):
        dataset_digest.python_func(dataset_uri=str(tmp_path / "missing.parquet"))


def test_data_changed_during_the_run_fails_the_step(tmp_path, digits_parquet):
    """The staged copy must have the digest the run started with (no training on other data)."""
    data = digits_parquet(None)
    stale = hashlib.sha256(b"yesterday's bytes").hexdigest()
    with pytest.raises(ValueError, match=r"input artifact 'dataset'.*changed during the run"):
        train_proxy.python_func(dataset_uri=str(data),
                                dataset=_artifact(dsl.Dataset, tmp_path, "d"),
                                model=_artifact(dsl.Model, tmp_path, "m"),
                                metrics=_artifact(dsl.Metrics, tmp_path, "x"), epochs=1,
                                dataset_sha256=stale)
    assert not (tmp_path / "m").exists()  # nothing trained
    staged = _artifact(dsl.Dataset, tmp_path, "d")
    with pytest.raises(ValueError, match=r"input artifact 'dataset'.*changed during the run"):
        extract_activations.python_func(dataset=staged, model=_artifact(dsl.Model, tmp_path, "m"),
                                        activations=_artifact(dsl.Dataset, tmp_path, "a"),
                                        dataset_sha256=stale)


# ------------------------------------------------------------------------- the run's outcome


def _classes_artifact(tmp_path, verdicts):
    from acgate.io.schema import write_parquet

    table = pa.table({"label": list(range(len(verdicts))), "n_samples": [100] * len(verdicts),
                      "verdict": list(verdicts), "reason": [""] * len(verdicts)})
    classes = _artifact(dsl.Dataset, tmp_path, "classes")
    write_parquet(table, classes.path, "classes")
    return classes


def test_verdict_step_fails_a_poisoned_run_saying_what_to_do(tmp_path):
    from acgate.errors import PoisonedDataError
    from components.verdict.component import verdict

    classes = _classes_artifact(tmp_path, ["clean", "poisoned", "clean", "poisoned"])
    repaired = _artifact(dsl.Dataset, tmp_path, "cleaned_dataset")
    details = {"scan_verdict": "poisoned", "classes": classes, "repaired_dataset": repaired,
               "n_flagged": 57, "scan_run_id": "abc123", "rescan_verdict": "clean",
               "rescan_run_id": "def456", "model_name": "digits", "model_version": "4"}
    with pytest.raises(PoisonedDataError) as raised:
        verdict.python_func(**details)
    message = str(raised.value)
    for part in ("data poisoned", "57 rows flagged in classes 1, 3", "scan run abc123",
                 f"repaired data at {repaired.uri}", "rescan of the repaired data: clean",
                 "run def456", "model 'digits' version 4 tagged acgate.scan.verdict=poisoned",
                 "not promoted", "retrain on the repaired data, then rerun"):
        assert part in message, (part, message)
    # Opted out: the same account, as the step's output, and the step succeeds.
    assert verdict.python_func(**details, fail_on_poisoned=False) == message
    # Repaired data that the rescan still flags is not what to retrain on.
    with pytest.raises(PoisonedDataError) as raised:
        verdict.python_func(**{**details, "rescan_verdict": "poisoned", "rescan_n_flagged": 12})
    message = str(raised.value)
    assert "rescan of the repaired data: poisoned, 12 rows flagged (run def456)" in message
    assert "do not train on the repaired data either" in message
    assert "retrain on the repaired data" not in message
    # A partition (the incremental pipeline): append the repaired partition only when its
    # rescan against the baseline is clean; nothing is promoted either way.
    partition = {**details, "partition": True, "model_name": None, "model_version": None}
    with pytest.raises(PoisonedDataError) as raised:
        verdict.python_func(**partition)
    message = str(raised.value)
    for part in ("new partition poisoned: 57 rows flagged in classes 1, 3",
                 "rescan of the repaired partition against the baseline: clean (run def456)",
                 "nothing promoted", "append the repaired partition, not the one that came"):
        assert part in message, (part, message)
    with pytest.raises(PoisonedDataError) as raised:
        verdict.python_func(**{**partition, "rescan_verdict": "poisoned", "rescan_n_flagged": 3})
    assert "against the baseline: poisoned, 3 rows flagged" in str(raised.value)
    assert "append neither" in str(raised.value)
    with pytest.raises(PoisonedDataError) as raised:  # moved too far: scanned in full
        verdict.python_func(**{**partition, "rescan_mode": "full"})
    assert ("rescan of the repaired partition scanned in full: it moved too far from the "
            "baseline: clean") in str(raised.value)
    # A scan that could not judge a class is not clean either.
    incomplete = _classes_artifact(tmp_path, ["clean", "skipped"])
    with pytest.raises(PoisonedDataError, match="scan incomplete: class 1 could not be judged"):
        verdict.python_func(**{**details, "scan_verdict": "incomplete", "classes": incomplete})


def test_tag_verdict_step_tags_only_a_named_model(mlflow_store, register_version):
    from components.tag_verdict.component import tag_verdict

    uri, client = mlflow_store
    assert tag_verdict.python_func(run_id="", model_name=None) == "{}"
    version = register_version(client, "m")
    with pytest.raises(ValueError, match="no mlflow_tracking_uri given"):
        tag_verdict.python_func(run_id="abc", model_name="m", model_version=version,
                                mlflow_tracking_uri="")
    with pytest.raises(ValueError, match="reading scan run"):
        tag_verdict.python_func(run_id="0" * 32, model_name="m", model_version=version,
                                mlflow_tracking_uri=uri)


def test_components_take_the_datasets_own_columns(tmp_path, digits_parquet):
    """train_proxy -> extract -> cluster -> analyze on renamed columns with string labels and
    ids (2 epochs, size-silhouette: the columns are under test, not the detection)."""
    source = pq.read_table(digits_parquet(0.33))
    labels = source.column("label").to_numpy()
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    ids = [f"id-{i:04d}" for i in np.random.default_rng(3).permutation(len(labels))]
    path = tmp_path / "renamed.parquet"
    pq.write_table(pa.table({"kind": [names[v] for v in labels], "pic": source.column("image"),
                             "uid": ids}).replace_schema_metadata(source.schema.metadata), path)
    columns = {"label_column": "kind", "image_column": "pic", "id_column": "uid"}
    settings = {"seed": 0, "epochs": 2, "analysis": "size-silhouette", **columns}
    dataset, model, metrics = (_artifact(dsl.Dataset, tmp_path, "dataset"),
                               _artifact(dsl.Model, tmp_path, "model"),
                               _artifact(dsl.Metrics, tmp_path, "train-metrics"))
    with pytest.raises(ValueError, match=r"has no column 'label' \(--label-column\)"):
        train_proxy.python_func(dataset_uri=str(path), dataset=dataset, model=model,
                                metrics=metrics, seed=0, epochs=2)
    train_proxy.python_func(dataset_uri=str(path), dataset=dataset, model=model,
                            metrics=metrics, seed=0, epochs=2, **columns)
    activations = _artifact(dsl.Dataset, tmp_path, "activations")
    classes = extract_activations.python_func(dataset=dataset, model=model,
                                              activations=activations, **columns)
    assert classes == list(range(10))
    clusterings = []
    for label in classes:
        out = _artifact(dsl.Dataset, tmp_path, f"clustering-{label}")
        cluster.python_func(activations=activations, label=label, clustering=out, seed=0,
                            analysis="size-silhouette")
        clusterings.append(out)
    samples, table = (_artifact(dsl.Dataset, tmp_path, "samples"),
                      _artifact(dsl.Dataset, tmp_path, "classes"))
    analyze.python_func(activations=activations, dataset=dataset, clusterings=clusterings,
                        samples=samples, classes=table,
                        metrics=_artifact(dsl.Metrics, tmp_path, "metrics"),
                        report=_artifact(dsl.HTML, tmp_path, "report"),
                        scan=_artifact(dsl.Artifact, tmp_path, "scan"), **settings)
    frame = pd.read_parquet(samples.path)
    assert frame["uid"].tolist() == ids
    assert frame["label_name"].tolist() == [names[v] for v in labels]
    # Classes in the sorted order of the names: "eight" is 0, ..., "zero" is 9.
    assert frame["label"].tolist() == np.searchsorted(
        sorted(names), [names[v] for v in labels]).tolist()
    per_class = pd.read_parquet(table.path)
    assert per_class["class_name"].tolist() == sorted(names)
