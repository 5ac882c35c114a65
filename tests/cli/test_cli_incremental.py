"""``acgate scan PARTITION --baseline SCAN``: a new partition judged without retraining (issue 22).

Real data and real training: the scikit-learn digits split (stratified, seed 3) into accepted
data (90%) and a held-out partition (10%, 180 images); the accepted data's full ``acgate scan``
is the baseline; the partition arrives clean, poisoned all-to-one (BadNets patch, every other
class -> class 3, 5% of the partition), or shifted (inverted images: only a full scan can judge
them). Split seed 3: digits' small classes raise a false alarm in the accepted data's own scan on
seeds 0, 1, 2 and 4 (``bench/RESULTS.md`` "incremental"), and such a baseline is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acgate.core import precision_recall_f1
from acgate.errors import EXIT_BAD_INPUT, EXIT_POISON

SEED = 3  # of the split (tests/conftest.py digits_partitions)
TARGET = 3


@pytest.fixture(scope="module")
def split(digits_partitions):
    return digits_partitions


@pytest.fixture(scope="module")
def baseline(split, run_cli):
    out = split["folder"] / "baseline"
    run = run_cli(["scan", split["accepted"], "--out", out, "--no-mlflow", "--no-report",
                   "--seed", str(SEED)])
    assert run.code == 0, run.stdout + run.stderr  # the accepted data scans clean
    return out


def _incremental(run_cli, split, baseline, kind, *extra):
    out = split["folder"] / f"scan-{kind}-{len(extra)}"
    run = run_cli(["scan", split[kind], "--baseline", baseline, "--out", out, "--no-mlflow",
                   "--json", *extra])
    return run, json.loads(run.stdout) if run.stdout.strip().startswith("{") else None, out


def test_a_clean_partition_passes_without_retraining(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "clean")
    assert run.code == 0, run.stderr
    assert summary["mode"] == "incremental" and summary["verdict"] == "clean"
    scan = json.loads((out / "scan.json").read_text())
    assert scan["mode"] == "incremental"
    assert scan["baseline"]["folder"] == str(Path(baseline).resolve())
    assert "train_proxy" not in summary["seconds"]
    # No proxy of its own: the baseline's judged the rows (kept beside them for acgate repair).
    assert (out / "model.pt").read_bytes() == (Path(baseline) / "model.pt").read_bytes()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"<th>baseline scan</th><td>{Path(baseline).resolve()}</td>" in page
    assert "<th>mode</th><td>incremental</td>" in page
    assert "The baseline scan&#x27;s proxy" in page or "The baseline scan's proxy" in page


def test_poison_only_in_the_partition_is_found(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "poisoned")
    assert run.code == EXIT_POISON, run.stderr
    assert summary["mode"] == "incremental"
    assert summary["poisoned_classes"] == [TARGET]
    samples = pd.read_parquet(out / "samples.parquet")
    metrics = precision_recall_f1(samples["is_poison"].to_numpy(), split["truth"])
    assert metrics["f1"] >= 0.9, metrics


def test_a_partition_that_moved_too_far_is_scanned_in_full(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "inverted")
    assert summary is not None, run.stderr
    assert run.code == summary["exit_code"] and run.code in (0, EXIT_POISON)
    assert summary["mode"] == "full"
    assert "farther from the baseline" in summary["shift_reason"]
    assert (out / "model.pt").is_file()  # a proxy trained on the partition itself
    scan = json.loads((out / "scan.json").read_text())
    assert scan["shift_reason"] == summary["shift_reason"]
    # The fallback names its baseline as an incremental scan does.
    accepted = json.loads((Path(baseline) / "scan.json").read_text())
    assert scan["baseline"] == {"folder": str(Path(baseline).resolve()),
                                "dataset": accepted["dataset"],
                                "dataset_sha256": accepted["dataset_sha256"]}


def test_a_full_fallback_names_the_data_as_given_not_its_staged_copy(split, baseline, tmp_path):
    # The pipeline's step scans a staged copy of the partition; the fallback full scan must
    # record and report the URI it was given, as the incremental scan does.
    from acgate.scan import ScanConfig, run_incremental_scan

    uri = "s3://acgate-data/night-42.parquet"
    outcome = run_incremental_scan(split["inverted"], tmp_path / "out", baseline,
                                   ScanConfig(seed=SEED), dataset_uri=uri)
    assert outcome.mode == "full" and outcome.shift_reason
    assert json.loads((tmp_path / "out" / "scan.json").read_text())["dataset"] == uri
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f"acgate scan of {uri}" in page
    assert Path(split["inverted"]).name not in page


def test_without_fallback_the_shifted_incremental_verdict_is_kept(run_cli, split, baseline):
    run, summary, out = _incremental(run_cli, split, baseline, "inverted", "--no-fallback")
    assert summary["mode"] == "incremental"
    assert "farther from the baseline" in summary["shift_reason"]
    assert json.loads((out / "scan.json").read_text())["shifted"] is True


def test_a_partition_the_baseline_proxy_cannot_read_is_refused(run_cli, split, baseline):
    out = split["folder"] / "refused-shape"
    run = run_cli(["scan", split["9x9"], "--baseline", baseline, "--out", out, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "[1, 9, 9]" in run.stderr and "[1, 8, 8]" in run.stderr
    assert not out.exists()


def test_an_incremental_scan_is_no_baseline(run_cli, split, baseline):
    first, _, scanned = _incremental(run_cli, split, baseline, "clean", "--no-report")
    assert first.code == 0, first.stderr
    out = split["folder"] / "refused-3"
    run = run_cli(["scan", split["clean"], "--baseline", scanned, "--out", out, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "give the full scan of the accepted data" in run.stderr


def test_a_baseline_that_was_not_accepted_is_refused(run_cli, split, poisoned_cli_scan):
    out = split["folder"] / "refused"
    run = run_cli(["scan", split["clean"], "--baseline", poisoned_cli_scan.out, "--out", out,
                   "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "verdict 'poisoned'" in run.stderr and "accepted (clean) baseline" in run.stderr
    assert not out.exists()


def test_a_folder_that_is_no_scan_is_refused(run_cli, split):
    out = split["folder"] / "refused-2"
    run = run_cli(["scan", split["clean"], "--baseline", split["folder"], "--out", out,
                   "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "is not an acgate scan folder (no scan.json)" in run.stderr
    assert not out.exists()


def test_no_fallback_needs_a_baseline(run_cli, split):
    run = run_cli(["scan", split["clean"], "--out", split["folder"] / "x", "--no-mlflow",
                   "--no-fallback"])
    assert run.code == EXIT_BAD_INPUT
    assert "--no-fallback needs --baseline" in run.stderr


def test_the_incremental_scan_is_an_mlflow_run_like_a_full_one(run_cli, split, baseline):
    import mlflow

    out = split["folder"] / "tracked"
    uri = f"sqlite:///{split['folder'] / 'mlflow.db'}"
    run = run_cli(["scan", split["poisoned"], "--baseline", baseline, "--out", out,
                   "--tracking-uri", uri, "--experiment", "incremental"])
    assert run.code == EXIT_POISON, run.stderr
    assert "mode: incremental" in run.stdout
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("incremental")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.data.params["analysis"] == "incremental"
    assert logged.data.params["scan.mode"] == "incremental"
    assert logged.data.params["scan.baseline"] == str(Path(baseline).resolve())
    assert "proxy_train_accuracy" not in logged.data.metrics  # the baseline's, not this run's
    assert logged.data.tags["acgate.verdict"] == "poisoned"


# --------------------------------------------------------- the pipeline's published baseline


@pytest.fixture(scope="module")
def published(split, baseline):
    """The baseline folder :func:`publish_baseline_stage` writes from the baseline scan."""
    from acgate.stages import publish_baseline_stage

    out = split["folder"] / "published"
    written = publish_baseline_stage(baseline / "scan.json", baseline / "samples.parquet",
                                     baseline / "activations.parquet", baseline, out)
    return out, written


def test_a_published_baseline_is_small_and_gives_the_same_reference(baseline, published):
    from acgate.stages import read_baseline

    folder, written = published
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "model.json", "model.pt", "reference.parquet", "scan.json"]
    whole, packed = read_baseline(baseline), read_baseline(folder)
    # Digits' classes are under the reference's 2,000 rows: every kept row is in it.
    assert written["reference_rows"] == len(packed.reference.labels) <= written["rows"]
    assert np.array_equal(whole.reference.labels, packed.reference.labels)
    assert np.array_equal(whole.reference.activations, packed.reference.activations)
    assert whole.reference.far == packed.reference.far
    assert whole.reference.natural == packed.reference.natural


def test_a_published_baseline_judges_as_the_scan_folder_does(run_cli, split, baseline,
                                                             published):
    whole, _, whole_out = _incremental(run_cli, split, baseline, "poisoned", "--no-report")
    run, summary, out = _incremental(run_cli, split, published[0], "poisoned")
    assert run.code == whole.code == EXIT_POISON, run.stderr
    assert summary["mode"] == "incremental"
    assert np.array_equal(pd.read_parquet(out / "samples.parquet")["is_poison"],
                          pd.read_parquet(whole_out / "samples.parquet")["is_poison"])
    scan = json.loads((out / "scan.json").read_text())
    assert scan["baseline"]["folder"] == str(published[0])


def test_a_baseline_is_published_from_an_activation_dataset_one_class_at_a_time(
        split, baseline, published, tmp_path):
    """The pipeline's activations: class-partitioned parts of three shards."""
    from acgate.io.activations import ActivationTable, read_activations
    from acgate.io.shards import collect_activation_shards, write_activation_shard
    from acgate.stages import publish_baseline_stage

    table = read_activations(baseline / "activations.parquet")
    bounds = np.linspace(0, len(table), 4).astype(int)
    shards = []
    for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        part = ActivationTable(indices=table.indices[start:stop], labels=table.labels[start:stop],
                               predictions=table.predictions[start:stop],
                               activations=table.activations[start:stop],
                               metadata=table.metadata)
        folder = tmp_path / f"shard-{shard}"
        write_activation_shard(part, folder, shard=shard, rows=(int(start), int(stop)),
                               n_dataset_rows=len(table))
        shards.append(folder)
    collect_activation_shards(shards, tmp_path / "collected", n_rows=len(table))
    out = tmp_path / "from-dataset"
    publish_baseline_stage(baseline / "scan.json", baseline / "samples.parquet",
                           tmp_path / "collected", baseline, out)
    assert (out / "reference.parquet").read_bytes() == (
        published[0] / "reference.parquet").read_bytes()


def test_a_published_baseline_is_checked_and_never_written_over_a_users_folder(
        split, baseline, published, tmp_path):
    import shutil

    from acgate.stages import publish_baseline_stage, read_baseline

    # Another scan's reference beside this scan.json: refused by its recorded digest.
    mixed = tmp_path / "mixed"
    shutil.copytree(published[0], mixed)
    with (mixed / "reference.parquet").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match="not this scan's reference"):
        read_baseline(mixed)
    # A text proxy needs its vocabulary: a baseline without it is refused, not misread.
    text = tmp_path / "text"
    shutil.copytree(published[0], text)
    info = json.loads((text / "scan.json").read_text())
    (text / "scan.json").write_text(json.dumps({**info, "modality": "text"}))
    with pytest.raises(ValueError, match=r"missing \['vocab.json'\]"):
        read_baseline(text, source="runs:/abc/baseline")
    # A folder of the user's files is never written into.
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files acgate did not write|not written by"):
        publish_baseline_stage(baseline / "scan.json", baseline / "samples.parquet",
                               baseline / "activations.parquet", baseline, users)
    assert sorted(p.name for p in users.iterdir()) == ["notes.txt"]


def test_a_relative_baseline_is_recorded_as_its_folder(run_cli, split, baseline,
                                                       monkeypatch):
    monkeypatch.chdir(Path(baseline).parent)
    out = split["folder"] / "relative"
    run = run_cli(["scan", split["clean"], "--baseline", Path(baseline).name, "--out", out,
                   "--no-mlflow", "--no-report"])
    assert run.code == 0, run.stderr
    recorded = json.loads((out / "scan.json").read_text())["baseline"]["folder"]
    assert recorded == str(Path(baseline).resolve())


def test_a_poisoned_scan_is_never_published(split, poisoned_cli_scan):
    from acgate.stages import publish_baseline_stage

    scan = poisoned_cli_scan.out
    out = split["folder"] / "never"
    with pytest.raises(ValueError, match="verdict 'poisoned'"):
        publish_baseline_stage(scan / "scan.json", scan / "samples.parquet",
                               scan / "activations.parquet", scan, out)
    assert not out.exists()


def test_a_baseline_logged_to_mlflow_is_used_by_its_runs_uri(run_cli, split, published):
    import mlflow

    from acgate.mlflow.baseline import log_baseline

    uri = f"sqlite:///{split['folder'] / 'baseline-mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("baselines")
    scan_run = client.create_run(experiment).info.run_id
    runs_uri = log_baseline(scan_run, published[0], tracking_uri=uri)
    assert runs_uri == f"runs:/{scan_run}/baseline"
    out = split["folder"] / "from-mlflow"
    run = run_cli(["scan", split["poisoned"], "--baseline", runs_uri, "--out", out,
                   "--tracking-uri", uri, "--experiment", "incremental-runs", "--json"])
    assert run.code == EXIT_POISON, run.stderr
    assert json.loads(run.stdout)["mode"] == "incremental"
    assert json.loads((out / "scan.json").read_text())["baseline"]["folder"] == runs_uri
    missing = run_cli(["scan", split["poisoned"], "--baseline", f"runs:/{scan_run}/nothing",
                       "--out", split["folder"] / "refused-runs", "--tracking-uri", uri])
    assert missing.code == EXIT_BAD_INPUT
    assert "has no artifacts under 'nothing'" in missing.stderr
    assert not (split["folder"] / "refused-runs").exists()


def test_a_registered_models_alias_names_the_baseline_of_the_scan_that_cleared_it(
        run_cli, split, published):
    # The nightly incremental run names models:/<model>@champion once; each time the gate
    # promotes a version, the baseline follows: the scan run the gate checked for that version.
    import mlflow

    from acgate.mlflow.baseline import log_baseline
    from acgate.mlflow.gate import GATE_CHECKED_RUN_TAG, GATE_OUTCOME_TAG

    uri = f"sqlite:///{split['folder'] / 'alias-mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    scan_run = client.create_run(client.create_experiment("scans")).info.run_id
    runs_uri = log_baseline(scan_run, published[0], tracking_uri=uri)
    client.create_registered_model("proxy-model")
    # (a plain folder as the versions' source: a runs:/ source is resolved through MLflow's
    # default store, which would write mlflow.db into the working folder)
    promoted, refused, unpublished = (
        client.create_model_version("proxy-model", str(published[0]), run_id=scan_run)
        for _ in range(3))
    # A clean scan run that logged no baseline (as an acgate scan run).
    bare_run = client.create_run(client.get_run(scan_run).info.experiment_id).info.run_id
    # The tags the gate writes on each outcome (acgate.mlflow.gate), the alias it moves.
    for version, outcome, checked in ((promoted, "promoted", scan_run),
                                      (refused, "refused", scan_run),
                                      (unpublished, "promoted", bare_run)):
        client.set_model_version_tag("proxy-model", version.version, GATE_OUTCOME_TAG, outcome)
        client.set_model_version_tag("proxy-model", version.version, GATE_CHECKED_RUN_TAG,
                                     checked)
    client.set_registered_model_alias("proxy-model", "champion", promoted.version)

    out = split["folder"] / "from-alias"
    run = run_cli(["scan", split["poisoned"], "--baseline", "models:/proxy-model@champion",
                   "--out", out, "--tracking-uri", uri, "--json"])
    assert run.code == EXIT_POISON, run.stderr
    recorded = json.loads((out / "scan.json").read_text())["baseline"]
    assert recorded["folder"] == "models:/proxy-model@champion"
    assert recorded["resolved"] == runs_uri
    # the version the alias named then (the alias may move; the record must not)
    assert (recorded["model"], recorded["model_version"]) == ("proxy-model",
                                                              str(promoted.version))
    logged = client.get_run(json.loads(run.stdout)["mlflow_run_id"]).data.params
    assert logged["scan.baseline"] == "models:/proxy-model@champion"
    assert logged["scan.baseline_resolved"] == runs_uri
    assert (logged["scan.baseline_model"], logged["scan.baseline_model_version"]) == (
        "proxy-model", str(promoted.version))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"<th>baseline resolved to</th><td>{runs_uri}</td>" in page
    assert (f"<th>baseline&#x27;s model</th><td>proxy-model version {promoted.version}</td>"
            in page)
    assert recorded["dataset_sha256"] == json.loads(
        (Path(published[0]) / "scan.json").read_text())["dataset_sha256"]

    # A version the gate refused, one whose scan run has no baseline, an alias nobody set, no
    # tracking URI, a malformed alias: refused, nothing written.
    for baseline, extra, message in (
            (f"models:/proxy-model/{refused.version}", ["--tracking-uri", uri],
             "was not promoted by acgate gate"),
            (f"models:/proxy-model/{unpublished.version}", ["--tracking-uri", uri],
             f"cleared by scan run {bare_run}, which holds no baseline"),
            ("models:/proxy-model@nightly", ["--tracking-uri", uri],
             "'models:/proxy-model@nightly' is not in the tracking store"),
            ("models:/proxy-model@champion", ["--no-mlflow"], "give the tracking URI"),
            ("models:/proxy-model@champ ion", ["--tracking-uri", uri],
             "an alias is letters, digits")):
        target = split["folder"] / "refused-alias"
        run = run_cli(["scan", split["poisoned"], "--baseline", baseline, "--out", target,
                       *extra])
        assert run.code == EXIT_BAD_INPUT, (baseline, run.stderr)
        assert message in run.stderr, run.stderr
        assert not target.exists()
