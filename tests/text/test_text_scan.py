"""The text path end to end on the real Rotten Tomatoes reviews: poison, scan, bad inputs.

Every scan trains a real Kim-style text CNN (one torch thread, see tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acgate.cli import EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_POISON, main
from acgate.io.datasets import TextDataset, read_text_dataset, write_text_dataset
from acgate.io.loaders import load_rotten_tomatoes
from acgate.text import load_vocabulary

SIGNATURE = "-travelerthehorse"


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue(), stderr.getvalue()


def f1_of(samples_path: Path, truth: np.ndarray) -> float:
    flagged = pd.read_parquet(samples_path).sort_values("index")["is_poison"].to_numpy()
    tp = int((flagged & truth).sum())
    return 2 * tp / max(int(flagged.sum()) + int(truth.sum()), 1)


@pytest.fixture(scope="module")
def reviews() -> TextDataset:
    return load_rotten_tomatoes()


@pytest.fixture(scope="module")
def subset_file(reviews, tmp_path_factory) -> Path:
    """A seeded 1,500-review subset of the real corpus, as a text dataset file."""
    rows = np.sort(np.random.default_rng(0).choice(len(reviews), 1500, replace=False))
    subset = TextDataset([reviews.texts[i] for i in rows], reviews.labels[rows],
                         name="rotten_tomatoes-1500")
    return write_text_dataset(subset, tmp_path_factory.mktemp("rt") / "rt-1500.parquet")


@pytest.fixture(scope="module")
def poisoned_scan(subset_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rt-poisoned")
    poisoned = folder / "poisoned.parquet"
    code, stdout, stderr = run_cli(["poison", subset_file, "--out", poisoned, "--rate", "0.1"])
    assert code == EXIT_CLEAN, stderr
    code, stdout, stderr = run_cli(["scan", poisoned, "--out", folder / "scan", "--no-mlflow"])
    return code, stdout, stderr, poisoned, folder / "scan"


def test_poison_text_cli_writes_ground_truth(poisoned_scan, subset_file):
    *_, poisoned_path, _ = poisoned_scan
    clean = read_text_dataset(subset_file)
    poisoned = read_text_dataset(poisoned_path)
    truth = poisoned.columns["is_poison"]
    n_negative = int((clean.labels == 0).sum())
    assert int(truth.sum()) == round(0.1 * n_negative / 0.9)  # 10% of the target class
    assert poisoned.texts[:len(clean)] == clean.texts
    for row in np.flatnonzero(truth):
        origin = int(poisoned.columns["origin_index"][row])
        assert poisoned.texts[row] == f"{clean.texts[origin]} {SIGNATURE}"
        assert poisoned.labels[row] == 0 and poisoned.columns["source_label"][row] == 1
        assert clean.labels[origin] == 1
    assert poisoned.metadata["poison"]["trigger"]["signature"] == SIGNATURE


def test_real_reviews_subset_poison_is_found(poisoned_scan):
    code, stdout, stderr, poisoned_path, out = poisoned_scan
    assert code == EXIT_POISON, stderr
    truth = read_text_dataset(poisoned_path).columns["is_poison"]
    assert f1_of(out / "samples.parquet", truth) >= 0.9
    report = json.loads((out / "report.json").read_text())
    verdicts = {c["label"]: c for c in report["classes"]}
    assert verdicts[0]["verdict"] == "poisoned" and verdicts[0]["suspected_source"] == 1
    assert verdicts[1]["verdict"] == "clean"
    scan = json.loads((out / "scan.json").read_text())
    assert scan["text"]["proxy"] == "textcnn"
    vocabulary = load_vocabulary(out / "vocab.json")
    assert vocabulary.size == scan["text"]["vocab_size"]
    assert vocabulary.token_id(SIGNATURE) > 1  # learnt from the (poisoned) training texts
    assert SIGNATURE in (out / "report.html").read_text()  # flagged texts are shown


def test_real_reviews_subset_clean_run_flags_nothing(subset_file, tmp_path):
    code, stdout, stderr = run_cli(["scan", subset_file, "--out", tmp_path / "scan",
                                    "--no-mlflow", "--no-report"])
    assert code == EXIT_CLEAN, stdout + stderr
    assert not pd.read_parquet(tmp_path / "scan" / "samples.parquet")["is_poison"].any()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_full_rotten_tomatoes_ten_percent(reviews, tmp_path, seed):
    """The issue's acceptance test: all 4,866 reviews, 10% signature poison, and a clean run."""
    from acgate.io.poison import poison_text_dataset
    from acgate.scan import ScanConfig, run_scan

    poisoned = poison_text_dataset(reviews, rate=0.1, source=1, target=0, seed=seed)
    path = write_text_dataset(poisoned, tmp_path / "rt-poisoned.parquet")
    outcome = run_scan(path, tmp_path / "poisoned", ScanConfig(seed=seed), report=False)
    truth = poisoned.columns["is_poison"]
    flagged = outcome.result.is_poison
    f1 = 2 * int((flagged & truth).sum()) / (int(flagged.sum()) + int(truth.sum()))
    assert f1 >= 0.9
    clean_path = write_text_dataset(reviews, tmp_path / "rt.parquet")
    clean = run_scan(clean_path, tmp_path / "clean", ScanConfig(seed=seed), report=False)
    assert not clean.result.is_poison.any()


# ----------------------------------------------------------------------------- bad input


def write_table(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_empty_text_is_refused(tmp_path):
    path = write_table(tmp_path / "empty.parquet",
                       {"text": ["a fine film", "", "dull"], "label": [1, 0, 0]})
    code, _, stderr = run_cli(["scan", path, "--out", tmp_path / "out", "--no-mlflow"])
    assert code == EXIT_BAD_INPUT
    assert "column 'text'" in stderr and "rows [1]" in stderr
    assert not (tmp_path / "out").exists()


def test_text_column_without_rows_is_refused(tmp_path):
    path = write_table(tmp_path / "norows.parquet",
                       {"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())})
    code, _, stderr = run_cli(["scan", path, "--out", tmp_path / "out", "--no-mlflow"])
    assert code == EXIT_BAD_INPUT
    assert "norows.parquet" in stderr
    assert not (tmp_path / "out").exists()


def test_non_string_texts_are_refused(tmp_path):
    path = write_table(tmp_path / "numbers.parquet", {"text": [1, 2, 3, 4], "label": [1, 0, 0, 1]})
    code, _, stderr = run_cli(["scan", path, "--out", tmp_path / "out", "--no-mlflow"])
    assert code == EXIT_BAD_INPUT
    assert "'text'" in stderr and "numbers.parquet" in stderr
    code, _, stderr = run_cli(["poison", path, "--out", tmp_path / "p.parquet"])
    assert code == EXIT_BAD_INPUT
    assert not (tmp_path / "p.parquet").exists()


def test_image_and_text_columns_need_modality(tmp_path):
    path = write_table(tmp_path / "both.parquet", {
        "image": pa.array([[0.0] * 4] * 3, pa.list_(pa.float32(), 4)),
        "text": ["a", "b", "c"], "label": [0, 1, 0]})
    code, _, stderr = run_cli(["scan", path, "--out", tmp_path / "out", "--no-mlflow"])
    assert code == EXIT_BAD_INPUT
    assert "both an 'image' and a 'text' column" in stderr and "--modality" in stderr


def test_poison_option_mismatches(subset_file, tmp_path):
    code, _, stderr = run_cli(["poison", "digits", "--out", tmp_path / "d.parquet",
                               "--signature", "cf"])
    assert code == EXIT_BAD_INPUT and "--signature" in stderr
    code, _, stderr = run_cli(["poison", subset_file, "--out", tmp_path / "t.parquet",
                               "--pairs", "1:0"])
    assert code == EXIT_BAD_INPUT and "--source" in stderr
    code, _, stderr = run_cli(["poison", subset_file, "--out", tmp_path / "t.parquet",
                               "--source", "1", "--target", "1"])
    assert code == EXIT_BAD_INPUT and "differ" in stderr
    code, stdout, _ = run_cli(["poison", subset_file, "--out", tmp_path / "t.parquet",
                               "--source", "0", "--target", "1", "--signature", "cf",
                               "--position", "start", "--rate", "0.2"])
    assert code == EXIT_CLEAN and "'cf'" in stdout
    poisoned = read_text_dataset(tmp_path / "t.parquet")
    rows = np.flatnonzero(poisoned.columns["is_poison"])
    assert all(poisoned.texts[r].startswith("cf ") and poisoned.labels[r] == 1 for r in rows)
