"""``acgate diff SCAN_A SCAN_B``: what changed between two real scan folders (issue 20).

One real scan of the clean digits (the session's ``clean_cli_scan``) and copies of it whose
files are rewritten with acgate's own Parquet writer, so every folder stays a valid scan folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from acgate.diff import diff_scans
from acgate.errors import EXIT_BAD_INPUT, EXIT_CHANGED, EXIT_CLEAN
from acgate.io.results import read_classes, read_samples
from acgate.io.schema import decode_metadata, open_parquet, raw_metadata, write_parquet

#: Rows the edited copy flags on top of the clean scan's flags, and the classes they lie in.
NEW_FLAGS = (5, 17, 40)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_samples(folder: Path, samples) -> None:
    """Rewrite ``samples.parquet`` and ``flagged.parquet`` (kept consistent) from ``samples``."""
    path = folder / "samples.parquet"
    metadata = decode_metadata(path, raw_metadata(open_parquet(path).schema_arrow))
    samples = samples.reset_index(drop=True)
    write_parquet(pa.Table.from_pandas(samples, preserve_index=False), path, "samples",
                  metadata=metadata)
    flagged = samples.loc[samples["is_poison"], ["index", "label", "suspected_source",
                                                 "poison_score"]].reset_index(drop=True)
    write_parquet(pa.Table.from_pandas(flagged, preserve_index=False),
                  folder / "flagged.parquet", "flagged")


def _edit_json(path: Path, **entries) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document.update(entries)
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.fixture(scope="module")
def base(clean_cli_scan) -> Path:
    assert clean_cli_scan.code == EXIT_CLEAN, clean_cli_scan.stderr
    return clean_cli_scan.out


@pytest.fixture(scope="module")
def flagged_copy(base, tmp_path_factory) -> tuple[Path, dict[int, int]]:
    """A copy of the clean scan that flags :data:`NEW_FLAGS` too and judges their first class
    poisoned (source 9): the scan a nightly run would diff against yesterday's clean one.

    Returns the folder and the class of each newly flagged row.
    """
    folder = tmp_path_factory.mktemp("diff-flagged") / "scan"
    shutil.copytree(base, folder)
    samples = read_samples(folder / "samples.parquet")
    rows = samples["index"].isin(NEW_FLAGS)
    assert not samples.loc[rows, "is_poison"].any()
    samples.loc[rows, "is_poison"] = True
    samples.loc[rows, "suspected_source"] = 9
    _write_samples(folder, samples)
    segments = dict(zip(samples.loc[rows, "index"], samples.loc[rows, "segment"]))
    classes = read_classes(folder / "classes.parquet")
    poisoned = segments[NEW_FLAGS[0]]
    classes.loc[classes["label"] == poisoned, "verdict"] = "poisoned"
    classes.loc[classes["label"] == poisoned, "suspected_source"] = 9
    write_parquet(pa.Table.from_pandas(classes, preserve_index=False),
                  folder / "classes.parquet", "classes")
    _edit_json(folder / "report.json", verdict="poisoned")
    _edit_json(folder / "scan.json", verdict="poisoned")
    return folder, {int(k): int(v) for k, v in segments.items()}


def test_a_scan_against_itself_is_no_change(run_cli, base):
    run = run_cli(["diff", base, base])
    assert run.code == EXIT_CLEAN, run.stderr
    assert run.stdout.startswith("no change: verdict CLEAN"), run.stdout
    assert run.stderr == ""
    document = json.loads(run_cli(["diff", base, base, "--json"]).stdout)
    assert document["changed"] is False and document["exit_code"] == EXIT_CLEAN
    assert document["same_dataset"] is True and document["changed_classes"] == []
    assert document["notes"] == []


def _flagged(folder: Path) -> list[int]:
    samples = read_samples(folder / "samples.parquet")
    return sorted(samples.loc[samples["is_poison"], "index"].tolist())


def test_newly_flagged_rows_and_their_class_are_reported(run_cli, base, flagged_copy):
    folder, segments = flagged_copy
    run = run_cli(["diff", base, folder])
    assert run.code == EXIT_CHANGED, run.stderr
    poisoned = segments[NEW_FLAGS[0]]
    lines = run.stdout.splitlines()
    assert lines[0].split()[:2] == ["class", "verdict"]
    row = next(line for line in lines if line.split()[0] == str(poisoned))
    assert "clean -> poisoned" in row and "+1" in row
    n = len(_flagged(base))
    summary = next(line for line in lines if line.startswith("verdict "))
    assert summary.startswith(f"verdict CLEAN -> POISONED; flagged {n} -> {n + 3} (+3 / -0 "
                              "rows)"), summary
    assert f"{len(set(segments.values()))} of 10 classes changed" in summary
    assert "note:" not in run.stdout  # the same dataset, the same rows


def test_json_matches_the_library_and_the_rows(run_cli, base, flagged_copy):
    folder, segments = flagged_copy
    run = run_cli(["diff", base, folder, "--json"])
    assert run.code == EXIT_CHANGED, run.stderr
    document = json.loads(run.stdout)
    assert document == {**diff_scans(base, folder).to_dict(), "exit_code": EXIT_CHANGED}
    assert document["rows"]["flagged_only_b"] == list(NEW_FLAGS)
    assert document["rows"]["flagged_only_a"] == []
    assert document["rows"]["flagged_both"] == _flagged(base)
    assert document["verdict_changed"] is True and document["same_dataset"] is True
    assert document["changed_classes"] == sorted(set(segments.values()))
    by_label = {c["label"]: c for c in document["classes"]}
    for label in set(segments.values()):
        added = sum(1 for segment in segments.values() if segment == label)
        assert by_label[label]["n_added"] == added
        assert by_label[label]["n_flagged_b"] == by_label[label]["n_flagged_a"] + added
        assert by_label[label]["n_removed"] == 0
    assert by_label[segments[NEW_FLAGS[0]]]["suspected_source_b"] == 9
    assert by_label[segments[NEW_FLAGS[0]]]["verdict_b"] == "poisoned"


def test_the_other_direction_removes_the_rows(base, flagged_copy):
    folder, _ = flagged_copy
    diff = diff_scans(folder, base)
    assert diff.flagged_only_a == NEW_FLAGS and diff.flagged_only_b == ()
    assert (diff.a.verdict, diff.b.verdict) == ("poisoned", "clean")
    assert sum(c.n_removed for c in diff.classes) == len(NEW_FLAGS)


def test_other_data_of_another_length_is_said_and_its_extra_rows_counted_apart(
        run_cli, flagged_copy, tmp_path):
    """Scan B looked at other data (another SHA-256) with 10 rows fewer, one of them flagged."""
    old, _ = flagged_copy
    new = tmp_path / "shorter"
    shutil.copytree(old, new)
    samples = read_samples(new / "samples.parquet")
    dropped = [NEW_FLAGS[-1], *range(len(samples) - 9, len(samples))]
    keep = ~samples["index"].isin(dropped)
    flagged = _flagged(old)
    unmatched = sorted(set(flagged) & set(dropped))
    _write_samples(new, samples[keep])
    _edit_json(new / "scan.json", dataset_sha256="f" * 64)
    run = run_cli(["diff", old, new, "--json"])
    assert run.code == EXIT_CHANGED, run.stderr
    document = json.loads(run.stdout)
    assert document["same_dataset"] is False
    assert document["rows"]["n_rows_only_a"] == 10 and document["rows"]["n_rows_only_b"] == 0
    assert NEW_FLAGS[-1] in unmatched
    assert document["rows"]["flagged_unmatched_a"] == unmatched
    assert document["rows"]["flagged_only_a"] == []  # not compared: B has no such row
    assert document["rows"]["flagged_both"] == sorted(set(flagged) - set(dropped))
    assert sum(c["n_unmatched"] for c in document["classes"]) == len(unmatched)
    assert sum(c["n_added"] + c["n_removed"] for c in document["classes"]) == 0
    text = run_cli(["diff", old, new]).stdout
    assert "note: the data changed" in text
    assert f"10 rows only in A ({len(unmatched)} flagged)" in text
    assert "one scan only" in text.splitlines()[0]
    assert f"(+0 / -0 rows, {len(unmatched)} flagged rows in one scan only)" in text


def test_a_detect_folder_has_no_dataset_identity(run_cli, base, tmp_path):
    detected = tmp_path / "detect"
    run = run_cli(["detect", base / "activations.parquet", "--out", detected, "--analysis",
                   "size-silhouette"])
    assert run.code in (0, 3, 5), run.stderr
    assert not (detected / "scan.json").exists()
    run = run_cli(["diff", base, detected, "--json"])
    assert run.code in (EXIT_CLEAN, EXIT_CHANGED), run.stderr
    document = json.loads(run.stdout)
    assert document["same_dataset"] is None and document["b"]["dataset_sha256"] is None
    assert any("scan B" in note and "unknown" in note for note in document["notes"])


@pytest.mark.parametrize("case", ["missing", "file", "empty", "not-parquet", "mixed",
                                  "bad-json", "bad-sha"])
def test_bad_input_exits_2_names_the_path_and_writes_nothing(run_cli, base, tmp_path, case):
    bad = tmp_path / "bad"
    expected = str(bad)
    if case == "file":
        bad.write_text("not a folder")
    elif case == "empty":
        bad.mkdir()
    elif case != "missing":
        shutil.copytree(base, bad)
        if case == "not-parquet":
            (bad / "classes.parquet").write_text("garbage")
            expected = str(bad / "classes.parquet")
        elif case == "mixed":  # flagged.parquet of another scan
            samples = read_samples(bad / "samples.parquet")
            samples.loc[samples["index"] == 3, "is_poison"] = True
            _write_samples(bad, samples)
            shutil.copy(base / "flagged.parquet", bad / "flagged.parquet")
            expected = str(bad / "flagged.parquet")
        elif case == "bad-json":
            (bad / "scan.json").write_text("{")
            expected = str(bad / "scan.json")
        else:
            _edit_json(bad / "scan.json", dataset_sha256=12)
            expected = str(bad / "scan.json")
    before = _digest(tmp_path), _digest(base)
    for argv in (["diff", base, bad], ["diff", bad, base, "--json"]):
        run = run_cli(argv)
        assert run.code == EXIT_BAD_INPUT, (run.stdout, run.stderr)
        assert run.stderr.startswith("acgate diff: error: ") and expected in run.stderr
        assert run.stdout == ""
    assert (_digest(tmp_path), _digest(base)) == before


def test_library_errors_are_value_errors_quoting_the_folder(tmp_path):
    with pytest.raises(ValueError, match=r"scan A '.*nowhere' does not exist"):
        diff_scans(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ValueError, match=r"scan A '.*cli' is not an acgate scan folder: it has "
                                         r"no samples\.parquet"):
        diff_scans(Path(__file__).parent, tmp_path)


def test_repeated_row_ids_are_refused(base, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(base, bad)
    samples = read_samples(bad / "samples.parquet")
    samples["index"] = np.where(samples["index"] == 1, 0, samples["index"])
    _write_samples(bad, samples)
    with pytest.raises(ValueError, match=r"samples\.parquet: column 'index' repeats row ids "
                                         r"\[0\]"):
        diff_scans(base, bad)
