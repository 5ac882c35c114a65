from pathlib import Path

import pytest

from acgate.io.atomic import atomic_directory, atomic_write_path


class Boom(RuntimeError):
    pass


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_path_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write_path(target) as temp:
        assert temp.parent == target.parent
        assert not target.exists()
        temp.write_text("new")
    assert target.read_text() == "new"
    assert _siblings(target.parent) == ["out.txt"]


def test_atomic_write_path_exception_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with atomic_write_path(target) as temp:
            temp.write_text("half")
            raise Boom()
    assert not target.exists()
    assert _siblings(tmp_path) == []


def test_atomic_write_path_exception_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom):
        with atomic_write_path(target) as temp:
            temp.write_text("half")
            raise Boom()
    assert target.read_text() == "old"
    assert _siblings(tmp_path) == ["out.txt"]


def test_atomic_write_path_requires_a_write(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_write_path(tmp_path / "out.txt"):
            pass
    assert _siblings(tmp_path) == []


def test_atomic_write_path_refuses_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="existing folder"):
        with atomic_write_path(tmp_path):
            pass


def test_atomic_directory_creates(tmp_path):
    out = tmp_path / "result"
    with atomic_directory(out) as temp:
        assert temp.is_dir() and temp != out and temp.parent == out.parent
        (temp / "a.txt").write_text("a")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "a"
    assert _siblings(tmp_path) == ["result"]


def test_atomic_directory_replaces_whole_folder(tmp_path):
    out = tmp_path / "result"
    out.mkdir()
    (out / "stale.txt").write_text("stale")
    with atomic_directory(out) as temp:
        (temp / "fresh.txt").write_text("fresh")
        assert (out / "stale.txt").exists()  # old result intact while writing
    assert _siblings(out) == ["fresh.txt"]
    assert _siblings(tmp_path) == ["result"]


def test_atomic_directory_exception_keeps_previous(tmp_path):
    out = tmp_path / "result"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_directory(out) as temp:
            (temp / "new.txt").write_text("new")
            raise Boom()
    assert _siblings(out) == ["old.txt"]
    assert _siblings(tmp_path) == ["result"]


def test_atomic_directory_exception_creates_nothing(tmp_path):
    out = tmp_path / "result"
    with pytest.raises(Boom):
        with atomic_directory(out) as temp:
            (temp / "new.txt").write_text("new")
            raise Boom()
    assert _siblings(tmp_path) == []


def test_atomic_directory_refuses_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        with atomic_directory(target):
            pass
    assert target.read_text() == "x"


# ------------------------------------------------------------- leftovers of a killed writer


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid  # reaped: no process has this pid now (reuse within the test is rare)


def _stale(folder: Path, name: str, tag: str, pid: int, host: str | None = None) -> Path:
    from acgate.io import atomic

    return folder / f".{name}.{tag}-{pid}@{host or atomic._HOST}-0123456789ab"


def test_a_dead_writers_temporary_folder_is_removed_by_the_next_writer(tmp_path):
    stale = _stale(tmp_path, "scan", "tmp", _dead_pid())
    stale.mkdir()
    (stale / "half.parquet").write_bytes(b"half")
    with atomic_directory(tmp_path / "scan") as temp:
        (temp / "done.txt").write_text("ok")
    assert _siblings(tmp_path) == ["scan"]


def test_a_dead_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    _stale(tmp_path, "out.txt", "tmp", _dead_pid()).write_text("half")
    with atomic_write_path(tmp_path / "out.txt") as temp:
        temp.write_text("new")
    assert _siblings(tmp_path) == ["out.txt"]


def test_a_previous_result_moved_aside_by_a_killed_writer_is_restored(tmp_path):
    aside = _stale(tmp_path, "scan", "old", _dead_pid())
    aside.mkdir()
    (aside / "report.json").write_text("{}")
    with pytest.raises(Boom):
        with atomic_directory(tmp_path / "scan"):
            raise Boom()
    assert (tmp_path / "scan" / "report.json").read_text() == "{}"
    assert _siblings(tmp_path) == ["scan"]


def test_live_or_foreign_writers_files_are_left_alone(tmp_path):
    import os

    mine = _stale(tmp_path, "scan", "tmp", os.getpid())  # this (live) process
    other_host = _stale(tmp_path, "scan", "tmp", _dead_pid(), host="another-node")
    other_name = _stale(tmp_path, "scans", "tmp", _dead_pid())
    for folder in (mine, other_host, other_name):
        folder.mkdir()
    with atomic_directory(tmp_path / "scan") as temp:
        (temp / "done.txt").write_text("ok")
    assert set(_siblings(tmp_path)) == {"scan", mine.name, other_host.name, other_name.name}
