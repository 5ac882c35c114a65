"""run_repair on real, poisoned digits: the backdoor goes, clean accuracy stays."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from acgate.io.datasets import read_image_dataset
from acgate.io.output import MARKER_FILE
from acgate.repair import CLEANED_FILE, MODEL_FILE, REPAIR_FILE, run_repair
from acgate.torch.byo import load_model


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repaired(scanned, tmp_path_factory):
    """Both strategies run once on the same scan; the input's hash taken before and after."""
    before = sha256(scanned.dataset_path)
    out = tmp_path_factory.mktemp("repaired")
    outcomes = {
        strategy: run_repair(scanned.dataset_path, scanned.samples_path, scanned.model_path,
                             out / strategy, strategy=strategy, seed=0,
                             test_dataset_path=scanned.test_path)
        for strategy in ("relabel", "remove")
    }
    return outcomes, before, sha256(scanned.dataset_path)


@pytest.mark.parametrize("strategy", ["relabel", "remove"])
def test_repair_removes_the_backdoor_and_keeps_clean_accuracy(repaired, strategy):
    outcome = repaired[0][strategy]
    backdoor = outcome.report["backdoor"]
    assert backdoor["measured"] is True
    before, after = backdoor["before"], backdoor["after"]
    assert before["attack_success_rate"] > 0.5  # the attack worked on the poisoned proxy
    assert after["attack_success_rate"] <= before["attack_success_rate"] / 2
    assert after["clean_accuracy"] >= before["clean_accuracy"] - 0.02
    assert after["n_triggered"] == before["n_triggered"] > 0
    assert outcome.report["epochs"] >= 1 and outcome.report["seconds"] > 0


def test_repair_never_modifies_the_input_file(repaired):
    _, before, after = repaired
    assert before == after


@pytest.mark.parametrize("strategy", ["relabel", "remove"])
def test_repair_writes_cleaned_dataset_model_and_report(repaired, scanned, strategy):
    outcome = repaired[0][strategy]
    folder = outcome.cleaned_dataset_path.parent
    expected = [CLEANED_FILE, MODEL_FILE, "model.json", REPAIR_FILE, "repair.html", MARKER_FILE]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert json.loads((folder / REPAIR_FILE).read_text()) == json.loads(
        json.dumps(outcome.report, default=str))
    cleaned = read_image_dataset(outcome.cleaned_dataset_path)
    flagged = np.asarray(scanned.result.is_poison, dtype=bool)
    source = np.asarray(scanned.result.suspected_source)
    rows = cleaned.columns["repair_input_row"]
    np.testing.assert_array_equal(cleaned.images, scanned.poisoned.images[rows])
    np.testing.assert_array_equal(cleaned.columns["repair_input_label"],
                                  scanned.poisoned.labels[rows])
    if strategy == "remove":
        np.testing.assert_array_equal(rows, np.flatnonzero(~flagged))
        np.testing.assert_array_equal(cleaned.labels, scanned.poisoned.labels[~flagged])
        assert outcome.report["n_removed"] == flagged.sum()
    else:
        relabel = flagged & (source >= 0)
        np.testing.assert_array_equal(rows, np.flatnonzero(~(flagged & ~relabel)))
        expected = np.where(relabel, source, scanned.poisoned.labels)[rows]
        np.testing.assert_array_equal(cleaned.labels, expected)
        assert outcome.report["n_relabelled"] == relabel.sum() > 0
    assert cleaned.metadata["repair"]["strategy"] == strategy
    model = load_model(outcome.model_path, module="acgate.torch.models:build_proxy",
                       module_kwargs={"name": "cnn", "input_shape": [1, 8, 8],
                                      "n_classes": 10})
    assert sum(p.numel() for p in model.parameters()) > 0


def test_relabel_fine_tunes_fewer_epochs_than_training_from_scratch(repaired):
    outcomes = repaired[0]
    assert outcomes["relabel"].report["epochs"] < outcomes["remove"].report["epochs"]
    assert outcomes["relabel"].report["converged"] is True


def test_repair_keeps_a_users_files_and_replaces_its_own_output_folder(scanned, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    kwargs = {"strategy": "relabel", "epochs": 1, "replay_fraction": 0.1}
    with pytest.raises(ValueError, match="not written by acgate"):
        run_repair(scanned.dataset_path, scanned.samples_path, scanned.model_path, out,
                   **kwargs)
    assert [p.name for p in out.iterdir()] == ["stale.txt"]
    run_repair(scanned.dataset_path, scanned.samples_path, scanned.model_path, out,
               overwrite=True, **kwargs)
    outputs = sorted([CLEANED_FILE, MODEL_FILE, "model.json", REPAIR_FILE, "repair.html",
                      MARKER_FILE])
    assert sorted(p.name for p in out.iterdir()) == sorted([*outputs, "stale.txt"])
    assert (out / "stale.txt").read_text() == "old"
    report = json.loads((out / REPAIR_FILE).read_text())
    assert report["epochs"] == 1 and report["backdoor"]["measured"] is False
    assert "test set" in report["backdoor"]["reason"]
    fresh = tmp_path / "fresh"
    for _ in range(2):  # acgate's own folder is replaced whole
        run_repair(scanned.dataset_path, scanned.samples_path, scanned.model_path, fresh,
                   **kwargs)
    assert sorted(p.name for p in fresh.iterdir()) == outputs


def test_repair_is_logged_to_mlflow_as_a_child_of_the_scan_and_has_an_html_page(
        repaired, scanned, tmp_path):
    import mlflow

    from acgate.mlflow import log_repair, log_scan

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scan_run = log_scan(scanned.result, tracking_uri=uri)
    outcome = repaired[0]["relabel"]
    page = (outcome.model_path.parent / "repair.html").read_text(encoding="utf-8")
    assert "attack success rate" in page and "relabel" in page
    run_id = log_repair(outcome.report, tracking_uri=uri, scan_run_id=scan_run,
                        artifacts_dir=outcome.model_path.parent)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == scan_run
    assert run.data.params["strategy"] == "relabel"
    backdoor = outcome.report["backdoor"]
    assert run.data.metrics["before/attack_success_rate"] == pytest.approx(
        backdoor["before"]["attack_success_rate"])
    assert run.data.metrics["after/attack_success_rate"] == pytest.approx(
        backdoor["after"]["attack_success_rate"])
    artifacts = {a.path for a in client.list_artifacts(run_id, "repair")}
    assert artifacts == {"repair/repair.json", "repair/repair.html"}
    with pytest.raises(ValueError, match="no-such-run"):
        log_repair(outcome.report, tracking_uri=uri, scan_run_id="no-such-run")
