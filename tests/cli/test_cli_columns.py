"""Issue 20, "Inputs": the dataset's own column names, string labels and an id column.

A dataset whose columns are not ``label`` / ``image`` / ``text`` is scanned with
``--label-column``, ``--image-column``, ``--text-column`` and ``--id-column``; string labels are
mapped to classes in sorted order and the mapping is recorded; the ids reach every per-row
output; bad columns are refused naming the user's column and its option, with nothing written.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acgate.cli import EXIT_BAD_INPUT, EXIT_POISON, main

#: Class names that sort in digit order, so class c is still digit c and the scan must flag
#: exactly the rows the scan of the same data with integer labels flags.
NAMES = [f"class-{d}" for d in range(10)]


def renamed_digits(source: Path, out: Path, *, ids: list | None = None) -> tuple[Path, list]:
    """The digits file with its columns renamed (``digit``, ``pixels``, ``uid``) and labels
    written as strings; returns the path and the ids (shuffled, so not the row numbers)."""
    table = pq.read_table(source)
    labels = table.column("label").to_numpy()
    if ids is None:
        ids = [f"img-{v:05d}" for v in np.random.default_rng(7).permutation(len(labels))]
    renamed = pa.table({
        "uid": pa.array(ids),
        "digit": pa.array([NAMES[v] for v in labels]),
        "pixels": table.column("image"),
        "is_poison": table.column("is_poison"),
    }).replace_schema_metadata(table.schema.metadata)  # acgate.image_shape, the recipe
    pq.write_table(renamed, out)
    return out, ids


def cli(argv: list) -> SimpleNamespace:
    """``acgate.cli.main(argv)`` in-process (a module-scoped fixture cannot take ``run_cli``)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return SimpleNamespace(code=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


COLUMN_FLAGS = ["--label-column", "digit", "--image-column", "pixels", "--id-column", "uid"]


@pytest.fixture(scope="module")
def renamed_scan(digits_parquet, tmp_path_factory):
    folder = tmp_path_factory.mktemp("columns")
    path, ids = renamed_digits(digits_parquet(0.33), folder / "renamed.parquet")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run = cli(["scan", path, "--out", folder / "scan", "--seed", "0", "--tracking-uri",
               uri, "--experiment", "columns", *COLUMN_FLAGS])
    return run, folder / "scan", ids, uri, path


def test_renamed_columns_and_string_labels_scan_like_the_original(renamed_scan,
                                                                  poisoned_cli_scan):
    run, out, ids, *_ = renamed_scan
    assert run.code == EXIT_POISON, run.stderr
    samples = pd.read_parquet(out / "samples.parquet")
    assert samples["index"].tolist() == list(range(len(ids)))
    assert samples["uid"].tolist() == ids  # the ids, in the input's row order
    assert samples["label_name"].tolist() == [NAMES[c] for c in samples["label"]]
    original = pd.read_parquet(poisoned_cli_scan.out / "samples.parquet")
    # Same data, same seed: the mapped labels are the digits, so the same rows are flagged.
    assert samples["is_poison"].tolist() == original["is_poison"].tolist()
    assert "uid" not in original and "label_name" not in original  # int labels: unchanged
    assert "classes: 0 = 'class-0', 1 = 'class-1'," in run.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<h3>Class 3 (class-3) <span" in html  # the report names the classes too


def test_flagged_rows_are_reported_by_id_and_class_name(renamed_scan):
    _, out, ids, *_ = renamed_scan
    samples = pd.read_parquet(out / "samples.parquet")
    flagged = pd.read_parquet(out / "flagged.parquet")
    assert len(flagged) > 0
    assert list(flagged.columns[:3]) == ["index", "uid", "label"]
    assert flagged["uid"].tolist() == [ids[i] for i in flagged["index"]]
    assert set(flagged["uid"]) == set(samples.loc[samples["is_poison"], "uid"])
    assert flagged["label_name"].tolist() == [NAMES[c] for c in flagged["label"]]
    # A row the redraw added that the retrain kept at home names no source: no name either.
    named = flagged["suspected_source"].notna()
    assert named.sum() > 0 and (~named).sum() > 0
    assert flagged.loc[named, "suspected_source_name"].tolist() == [
        NAMES[int(c)] for c in flagged.loc[named, "suspected_source"]]
    assert flagged.loc[~named, "suspected_source_name"].isna().all()


def test_the_label_mapping_is_in_scan_json_classes_and_mlflow(renamed_scan):
    import mlflow

    _, out, _, uri, _ = renamed_scan
    info = json.loads((out / "scan.json").read_text(encoding="utf-8"))
    assert info["label_names"] == NAMES
    assert {key: info["config"][key] for key in ("label_column", "image_column", "id_column")} \
        == {"label_column": "digit", "image_column": "pixels", "id_column": "uid"}
    classes = pd.read_parquet(out / "classes.parquet")
    assert classes["class_name"].tolist() == [NAMES[c] for c in classes["label"]]
    poisoned = classes[classes["verdict"] == "poisoned"]
    assert len(poisoned)
    assert poisoned["suspected_source_name"].tolist() == [
        NAMES[int(c)] for c in poisoned["suspected_source"]]
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert json.loads(run.data.params["label_names"]) == NAMES
    assert run.data.params["scan.label_column"] == "digit"
    assert run.data.params["scan.id_column"] == "uid"


@pytest.mark.parametrize("strategy", ["relabel", "remove"])
def test_repair_keeps_the_ids_names_and_string_labels(renamed_scan, tmp_path, run_cli, strategy):
    _, out, ids, _, path = renamed_scan
    run = run_cli(["repair", path, "--samples", out / "samples.parquet", "--out",
                   tmp_path / "fixed", "--strategy", strategy, "--epochs", "1",
                   "--model", out / "model.pt", *COLUMN_FLAGS])
    assert run.code == 0, run.stderr
    cleaned = pq.read_table(tmp_path / "fixed" / "cleaned.parquet")
    assert cleaned.column_names[:3] == ["pixels", "digit", "uid"]
    samples = pd.read_parquet(out / "samples.parquet")
    rows = cleaned.column("repair_input_row").to_numpy()
    assert cleaned.column("uid").to_pylist() == [ids[r] for r in rows]
    assert cleaned.column("repair_input_label").to_pylist() == [
        NAMES[samples["label"][r]] for r in rows]
    flagged = samples["is_poison"].to_numpy()
    if strategy == "remove":
        assert sorted(rows.tolist()) == np.flatnonzero(~flagged).tolist()
    else:  # the flagged rows now carry their suspected source, by name
        new = dict(zip(cleaned.column("uid").to_pylist(), cleaned.column("digit").to_pylist()))
        for row in np.flatnonzero(flagged)[:20]:
            source = samples["suspected_source"][row]
            if not pd.isna(source):
                assert new[ids[row]] == NAMES[int(source)]


def test_sorted_order_maps_string_labels(tmp_path):
    from acgate.io.datasets import read_image_dataset, write_image_dataset

    image = pa.array([[0.5] * 4] * 4, pa.list_(pa.float32(), 4))
    path = tmp_path / "animals.parquet"
    pq.write_table(pa.table({"kind": ["dog", "cat", "dog", "bird"], "img": image,
                             "key": [30, 10, 20, 40]}).replace_schema_metadata(
        {"acgate.image_shape": "[1, 2, 2]"}), path)
    dataset = read_image_dataset(path, label_column="kind", image_column="img", id_column="key")
    assert dataset.labels.tolist() == [2, 1, 2, 0]
    assert dataset.label_names == ("bird", "cat", "dog")
    assert dataset.ids.tolist() == [30, 10, 20, 40]
    # Written back under the same names and labels: reads back the same.
    copy = read_image_dataset(write_image_dataset(dataset, tmp_path / "copy.parquet"),
                              label_column="kind", image_column="img", id_column="key")
    assert pq.read_table(tmp_path / "copy.parquet").column("kind").to_pylist() == [
        "dog", "cat", "dog", "bird"]
    assert copy.labels.tolist() == [2, 1, 2, 0] and copy.ids.tolist() == [30, 10, 20, 40]


# ----------------------------------------------------------------------------- bad columns


def scan_fails(run_cli, path: Path, out: Path, *flags: str) -> str:
    run = run_cli(["scan", path, "--out", out, "--no-mlflow", *flags])
    assert run.code == EXIT_BAD_INPUT, run.stdout + run.stderr
    assert not out.exists()  # refused before anything was written
    return run.stderr


def test_a_missing_column_is_named_with_its_option(digits_parquet, tmp_path, run_cli):
    path, _ = renamed_digits(digits_parquet(0.33), tmp_path / "data.parquet")
    stderr = scan_fails(run_cli, path, tmp_path / "out", "--label-column", "target",
                        "--image-column", "pixels")
    assert (f"dataset {path} has no column 'target' (--label-column); its columns are: 'uid', "
            "'digit', 'pixels', 'is_poison'") in stderr
    stderr = scan_fails(run_cli, path, tmp_path / "out", *COLUMN_FLAGS[:4], "--id-column", "key")
    assert "has no column 'key' (--id-column)" in stderr
    # The default names, when the file has other ones: the option to set is named.
    stderr = scan_fails(run_cli, path, tmp_path / "out", "--image-column", "pixels")
    assert "has no column 'label' (--label-column)" in stderr


@pytest.mark.parametrize(("ids", "cli_message", "reader_message"), [
    (lambda n: ["a"] * 2 + [f"r{i}" for i in range(n - 2)],
     r"expect_column_values_to_be_unique on column 'uid'.*\['a', 'a'\] at rows \[0, 1\]",
     r"column 'uid' \(--id-column\) must be unique, but id 'a' is in rows 0 and 1"),
    (lambda n: [None] + [f"r{i}" for i in range(n - 1)],
     r"expect_column_values_to_not_be_null on column 'uid'.* at rows \[0\]",
     r"column 'uid' \(--id-column\) has a missing id \(None\) in row 0"),
])
def test_ids_must_be_unique_and_present(digits_parquet, tmp_path, run_cli, ids, cli_message,
                                        reader_message):
    from acgate.io.datasets import read_image_dataset

    n_rows = pq.read_metadata(digits_parquet(0.33)).num_rows
    path, _ = renamed_digits(digits_parquet(0.33), tmp_path / "data.parquet", ids=ids(n_rows))
    stderr = scan_fails(run_cli, path, tmp_path / "out", *COLUMN_FLAGS)
    assert re.search(cli_message, stderr), stderr  # the dataset suite names column and rows
    with pytest.raises(ValueError, match=reader_message):
        read_image_dataset(path, label_column="digit", image_column="pixels", id_column="uid")


def test_an_id_column_named_like_an_output_column_is_refused(digits_parquet, tmp_path, run_cli):
    path, _ = renamed_digits(digits_parquet(0.33), tmp_path / "data.parquet")
    stderr = scan_fails(run_cli, path, tmp_path / "out", *COLUMN_FLAGS[:4], "--id-column",
                        "index")
    assert "id_column 'index' (--id-column) is the name of a column acgate writes" in stderr
    stderr = scan_fails(run_cli, path, tmp_path / "out", *COLUMN_FLAGS[:4], "--id-column",
                        "digit")
    assert "label_column and id_column are both 'digit'" in stderr


def test_a_label_column_of_lists_is_refused(tmp_path, run_cli):
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"y": pa.array([[0], [1]] * 10),
                             "text": ["a film"] * 20}), path)
    stderr = scan_fails(run_cli, path, tmp_path / "out", "--label-column", "y")
    assert "'y'" in stderr and "list" in stderr


def test_a_string_class_of_one_row_names_its_label(tmp_path, run_cli):
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"sentiment": ["good"] * 10 + ["bad"] * 10 + ["meh"],
                             "review": [f"review number {i}" for i in range(21)]}), path)
    stderr = scan_fails(run_cli, path, tmp_path / "out", "--label-column", "sentiment",
                        "--text-column", "review")
    assert "column 'sentiment'" in stderr and "original label(s) ['meh']" in stderr


# ----------------------------------------------------------------------------- text


def test_text_dataset_with_renamed_columns(tmp_path, run_cli):
    from acgate.io.loaders import load_rotten_tomatoes

    reviews = load_rotten_tomatoes()
    rows = np.sort(np.random.default_rng(0).choice(len(reviews), 200, replace=False))
    ids = (1000 + np.random.default_rng(1).permutation(len(rows))).tolist()
    path = tmp_path / "reviews.parquet"
    pq.write_table(pa.table({
        "review": [reviews.texts[i] for i in rows],
        "sentiment": [("negative", "positive")[reviews.labels[i]] for i in rows],
        "review_id": pa.array(ids, pa.int64())}), path)
    run = run_cli(["scan", path, "--out", tmp_path / "scan", "--no-mlflow", "--no-report",
                   "--text-column", "review", "--label-column", "sentiment",
                   "--id-column", "review_id", "--epochs", "2",
                   "--analysis", "size-silhouette"])
    assert run.code in (0, 3), run.stderr
    samples = pd.read_parquet(tmp_path / "scan" / "samples.parquet")
    assert samples["review_id"].tolist() == ids
    assert samples["label_name"].tolist() == [
        ("negative", "positive")[reviews.labels[i]] for i in rows]
    info = json.loads((tmp_path / "scan" / "scan.json").read_text(encoding="utf-8"))
    assert info["modality"] == "text" and info["label_names"] == ["negative", "positive"]
