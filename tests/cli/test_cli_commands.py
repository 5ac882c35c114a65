"""``acgate poison`` and the exit-2 paths: bad input names the problem and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acgate.cli import EXIT_BAD_INPUT, EXIT_CLEAN


def test_poison_writes_a_dataset(run_cli, tmp_path):
    from acgate.io.datasets import read_image_dataset

    out = tmp_path / "poisoned.parquet"
    run = run_cli(["poison", "digits", "--out", out, "--rate", "0.2", "--seed", "1"])
    assert run.code == EXIT_CLEAN, run.stderr
    assert out.is_file()
    dataset = read_image_dataset(out)
    n_poison = int(np.asarray(dataset.columns["is_poison"]).sum())
    assert n_poison > 0
    assert f"{len(dataset)} rows, {n_poison} poisoned" in run.stdout
    assert len(dataset) == 1797 + n_poison


def test_poison_via_subprocess(tmp_path):
    out = tmp_path / "sub.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "acgate.cli", "poison", "digits", "--out", str(out),
         "--rate", "0.1", "--pairs", "7:1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == EXIT_CLEAN, proc.stderr
    assert out.is_file()
    assert "poisoned" in proc.stdout
    labels = pq.read_table(out, columns=["label", "is_poison"]).to_pandas()
    assert set(labels.loc[labels["is_poison"], "label"]) == {1}


def test_subprocess_bad_input_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "acgate.cli", "scan", str(tmp_path / "nope.parquet"),
         "--out", str(tmp_path / "out"), "--no-mlflow"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert "nope.parquet does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def bad_files(digits_parquet, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    table = pq.read_table(digits_parquet(None))
    text = folder / "notes.parquet"
    text.write_text("label,image\n1,0 0 0\n")
    no_label = folder / "no-label.parquet"
    pq.write_table(table.drop(["label"]), no_label)
    labels = table.column("label").to_pylist()
    labels[3] = None
    labels[10] = None
    nulls = folder / "null-labels.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label",
                                    pa.array(labels, pa.int64())), nulls)
    return {"missing": folder / "missing.parquet", "text": text, "no-label": no_label,
            "nulls": nulls}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", r"missing\.parquet does not exist"),
        ("text", r"notes\.parquet is not a readable Parquet file"),
        ("no-label", r"dataset .*no-label\.parquet has no column 'label' \(--label-column\); "
                     r"its columns are: 'image'"),
        ("nulls", r"expect_column_values_to_not_be_null on column 'label': 2 of 1797 values "
                  r"are null at rows \[3, 10\]"),
    ],
)
def test_scan_bad_input_exits_2_and_writes_nothing(bad_files, kind, message, run_cli,
                                                   tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    run = run_cli(["scan", bad_files[kind], "--out", out, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert run.stderr.startswith("acgate scan: error:")
    assert re.search(message, run.stderr), run.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "text"])
def test_detect_bad_input_exits_2_and_writes_nothing(bad_files, kind, run_cli, tmp_path):
    out = tmp_path / "out"
    run = run_cli(["detect", bad_files[kind], "--out", out])
    assert run.code == EXIT_BAD_INPUT
    assert bad_files[kind].name in run.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_detect_on_a_dataset_file_names_the_schema_problem(digits_parquet, run_cli, tmp_path):
    run = run_cli(["detect", digits_parquet(None), "--out", tmp_path / "out"])
    assert run.code == EXIT_BAD_INPUT
    assert digits_parquet(None).name in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scan"], "the following arguments are required"),
        (["scan", "x.parquet", "--out", "o", "--reducer", "tsne"], "invalid choice: 'tsne'"),
        (["frobnicate"], "invalid choice"),
        (["poison", "digits", "--out", "p.parquet", "--rate", "1.5"], "rate"),
        (["poison", "digits", "--out", "p.parquet", "--pairs", "7-1"], "--pairs must look like"),
        (["scan", "x.parquet", "--out", "o", "--n-clusters", "stabel"],
         "must be a whole number >= 2, 'auto' or 'stable'"),
        (["scan", "x.parquet", "--out", "o", "--confusion-threshold", "x"], "invalid float"),
    ],
)
def test_usage_errors_exit_2(argv, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_cli(argv)
    assert run.code == EXIT_BAD_INPUT
    assert message in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_stable_mode_and_new_thresholds_reach_the_detector(run_cli, tmp_path):
    from acgate.io.activations import ActivationWriter

    rng = np.random.default_rng(0)
    activations = np.concatenate([rng.normal(c * 6.0, 1.0, size=(60, 8)) for c in range(3)])
    labels = np.repeat(np.arange(3), 60)
    path = tmp_path / "acts.parquet"
    writer = ActivationWriter(path, activations.shape[1])
    writer.open()
    writer.write_batch(np.arange(len(labels)), labels, labels, activations.astype(np.float32))
    writer.close()
    out = tmp_path / "det"
    run = run_cli(["detect", path, "--out", out, "--n-clusters", "stable",
                   "--confusion-threshold", "0.5", "--nested-source-share-threshold", "0.8"])
    assert run.code == EXIT_CLEAN, run.stderr
    import json

    params = json.loads((out / "report.json").read_text())["info"]["params"]
    assert params["n_clusters"] == "stable"
    assert params["confusion_threshold"] == 0.5
    assert params["nested_source_share_threshold"] == 0.8
    # detect writes the HTML report too: a card per class; --no-report skips it.
    page = (out / "report.html").read_text()
    assert page.count('<article class="card') == 3
    assert (out / "plots" / "flagged.png").is_file()
    bare = tmp_path / "bare"
    assert run_cli(["detect", path, "--out", bare, "--no-report"]).code == EXIT_CLEAN
    assert not (bare / "report.html").exists() and not (bare / "plots").exists()
