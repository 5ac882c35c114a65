"""Output folders: nothing of the user's is ever deleted, one writer at a time."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from acgate.io.output import MARKER_FILE, check_output_folder, output_folder


def _write(folder: Path, **files: str) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_new_folder_gets_the_outputs_and_a_marker(tmp_path):
    out = tmp_path / "out"
    with output_folder(out, command="scan") as staged:
        _write(staged.staging, **{"a.json": "1"})
    assert (out / "a.json").read_text() == "1"
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["command"] == "scan" and marker["entries"] == ["a.json"]


def test_an_acgate_folder_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    with output_folder(out, command="scan") as staged:
        _write(staged.staging, **{"a.json": "1", "old.json": "x"})
    with output_folder(out, command="scan") as staged:
        _write(staged.staging, **{"a.json": "2"})
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "a.json"]
    assert (out / "a.json").read_text() == "2"


def test_a_foreign_folder_is_refused_and_untouched(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    _write(out, **{"train.parquet": "user data", "README": "mine"})
    with pytest.raises(ValueError, match=r"not empty and was not written by acgate.*--overwrite"):
        with output_folder(out, command="scan") as staged:
            _write(staged.staging, **{"a.json": "1"})
    assert _tree(out) == {"train.parquet": "user data", "README": "mine"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".data.tmp")] == []


def test_overwrite_replaces_only_acgates_outputs(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    _write(out, **{"notes.txt": "mine", "a.json": "stale"})
    with output_folder(out, command="scan", overwrite=True) as staged:
        _write(staged.staging, **{"a.json": "new", "b.json": "new"})
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "a.json").read_text() == "new" and (out / "b.json").read_text() == "new"
    # a second run keeps the user's file and drops the outputs the new run does not write
    with output_folder(out, command="scan", overwrite=True) as staged:
        _write(staged.staging, **{"a.json": "newer"})
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "a.json", "notes.txt"]


def test_a_user_file_added_to_an_acgate_folder_blocks_the_swap(tmp_path):
    out = tmp_path / "out"
    with output_folder(out, command="scan") as staged:
        _write(staged.staging, **{"a.json": "1"})
    _write(out, **{"my-notes.txt": "keep me"})
    with pytest.raises(ValueError, match="my-notes.txt"):
        with output_folder(out, command="scan"):
            pass
    assert (out / "my-notes.txt").read_text() == "keep me"


def test_a_failed_body_leaves_the_previous_result(tmp_path):
    out = tmp_path / "out"
    with output_folder(out, command="scan") as staged:
        _write(staged.staging, **{"a.json": "1"})
    before = _tree(out)
    with pytest.raises(RuntimeError):
        with output_folder(out, command="scan") as staged:
            _write(staged.staging, **{"a.json": "2"})
            raise RuntimeError("training failed")
    assert _tree(out) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("case", ["cwd", "parent-of-cwd", "sub/..", "input-inside", "input"])
def test_folders_that_would_swallow_inputs_or_the_working_folder_are_refused(
        tmp_path, monkeypatch, case):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    data = work / "data" / "train.parquet"
    data.parent.mkdir()
    data.write_text("user data")
    monkeypatch.chdir(work)
    out = {"cwd": Path("."), "parent-of-cwd": tmp_path, "sub/..": Path("sub/.."),
           "input-inside": data.parent, "input": data}[case]
    with pytest.raises(ValueError, match="--out"):
        check_output_folder(out, inputs=[data])
    assert data.read_text() == "user data"


def test_an_existing_file_is_refused(tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_output_folder(target)
    assert target.read_text() == "x"


def _hold(out: str, ready, release) -> None:
    with output_folder(out, command="scan") as staged:
        (staged.staging / "a.json").write_text("first")
        ready.set()
        release.wait(30)


def test_a_second_writer_of_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "out"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    first = context.Process(target=_hold, args=(str(out), ready, release))
    first.start()
    try:
        assert ready.wait(30)
        with pytest.raises(ValueError, match=rf"another acgate process \(pid {first.pid}"):
            with output_folder(out, command="scan") as staged:
                (staged.staging / "a.json").write_text("second")
    finally:
        release.set()
        first.join(30)
    assert first.exitcode == 0
    assert (out / "a.json").read_text() == "first"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
